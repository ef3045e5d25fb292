"""Room modes and the targets the worker holds (max_active, max_per_minute), with an injected clock."""

from __future__ import annotations

from typing import Any

import pytest

from idp.clock import FrozenClock
from idp.events.admission import rate_budget
from idp.queue.engine import PlaceState
from tests.conftest import all_backends
from tests.worker_support import AlwaysLease, health_server, make_worker

pytestmark = pytest.mark.integration

T0 = 1_800_000_040


def serving(services: Any, event_id: str = "sale") -> int:
    return int(services.room.counters(event_id, fresh=True).serving)


def joins(services: Any, n: int) -> list[str]:
    return [services.room.join("sale")[1].request_id for _ in range(n)]


def state(services: Any, request_id: str) -> PlaceState:
    return services.room.status("sale", request_id)[1].state  # type: ignore[no-any-return]


@pytest.mark.unit
def test_the_rate_budget_spreads_a_minute_evenly_and_catches_up_at_most_ten_seconds() -> None:
    assert [rate_budget(120, s, s - 1) for s in range(60)] == [2] * 60
    assert sum(rate_budget(7, s, s - 1) for s in range(600)) == 70
    assert sum(rate_budget(1, s, s - 1) for s in range(60)) == 1
    assert rate_budget(120, 1000, 990) == 20
    assert rate_budget(120, 1000, 900) == 20  # a long stall does not release a burst
    assert rate_budget(120, 1000, 1000) == 2  # no previous tick: this second's share
    assert rate_budget(0, 1000, 999) == 0


@all_backends
def test_max_active_admits_up_to_the_target_and_refills_when_a_session_finishes(
    services: Any, clock: FrozenClock
) -> None:
    clock.set(T0)
    services.events.create({"event_id": "sale", "max_active": 3})
    ids = joins(services, 6)
    worker = make_worker(services)
    worker.tick()
    assert serving(services) == 3
    clock.advance(1)
    worker.tick()
    assert serving(services) == 3, "admitted places not yet claimed count as active"
    for rid in ids[:3]:
        services.tokens.issue("sale", rid)
    clock.advance(1)
    worker.tick()
    assert serving(services) == 3, "sessions with tokens count as active"
    services.tokens.update_session("sale", ids[0], 1)
    clock.advance(1)
    worker.tick()
    assert serving(services) == 4
    assert state(services, ids[3]) is PlaceState.ADMITTED


def test_a_tick_retried_after_a_crash_admits_nobody_twice(services: Any, clock: FrozenClock) -> None:
    clock.set(T0)
    services.events.create({"event_id": "sale", "max_per_minute": 120})
    joins(services, 50)
    make_worker(services, lease=AlwaysLease()).tick()
    assert serving(services) == 2
    # The worker crashed after its step; a new one (and a second one at once) runs the same second again.
    make_worker(services, lease=AlwaysLease()).tick()
    make_worker(services, lease=AlwaysLease()).tick()
    assert serving(services) == 2
    clock.advance(1)
    make_worker(services, lease=AlwaysLease()).tick()
    assert serving(services) == 4


@all_backends
def test_max_per_minute_admits_evenly_while_people_wait(services: Any, clock: FrozenClock) -> None:
    clock.set(T0)
    services.events.create({"event_id": "sale", "max_per_minute": 120})
    joins(services, 500)
    worker = make_worker(services)
    for _ in range(30):
        worker.tick()
        clock.advance(1)
    assert serving(services) == 60


def test_the_claim_window_ends_and_the_place_stops_counting(services: Any, clock: FrozenClock) -> None:
    clock.set(T0)
    services.events.create({"event_id": "sale", "max_active": 2, "queue_position_expiry_period": 30})
    joins(services, 5)
    worker = make_worker(services)
    worker.tick()
    assert serving(services) == 2
    clock.advance(31)
    worker.tick()
    assert serving(services) == 4, "two admitted places expired unclaimed: two more are admitted"


def test_targets_pause_while_the_health_check_fails(services: Any, clock: FrozenClock) -> None:
    clock.set(T0)
    services.events.create({"event_id": "sale", "max_per_minute": 600})
    joins(services, 100)
    with health_server() as health:
        services.inlets.update("sale", {"periodic": {"health_url": health.url}})
        worker = make_worker(services)
        health.status = 503
        worker.tick()
        clock.advance(1)
        worker.tick()
        assert serving(services) == 0
        health.status = 200
        clock.advance(1)
        worker.tick()
        assert serving(services) == 10, "one second's share; the unhealthy seconds are not made up"
    services.inlets.set_paused("sale", True)
    clock.advance(1)
    worker.tick()
    assert serving(services) == 10


@all_backends
def test_when_busy_passes_visitors_through_under_max_active_and_queues_above(services: Any, clock: FrozenClock) -> None:
    clock.set(T0)
    services.events.create({"event_id": "sale", "mode": "when_busy", "max_active": 3})
    ids = joins(services, 4)
    assert [state(services, rid) for rid in ids] == [PlaceState.ADMITTED] * 3 + [PlaceState.WAITING]
    services.tokens.issue("sale", ids[0])
    services.tokens.update_session("sale", ids[0], 1)
    clock.advance(1)
    make_worker(services).tick()
    assert state(services, ids[3]) is PlaceState.ADMITTED
    fifth = joins(services, 1)[0]
    assert state(services, fifth) is PlaceState.WAITING


def test_passthrough_admits_everyone_at_once(services: Any, clock: FrozenClock) -> None:
    clock.set(T0)
    services.events.create({"event_id": "sale"})
    waiting = joins(services, 3)
    services.events.update("sale", {"mode": "passthrough"})
    services.room.events.get_fresh("sale")
    ids = joins(services, 3)
    assert {state(services, rid) for rid in waiting + ids} == {PlaceState.ADMITTED}


def test_closed_mode_admits_nobody(services: Any, clock: FrozenClock) -> None:
    clock.set(T0)
    services.events.create({"event_id": "sale", "max_per_minute": 600})
    joins(services, 5)
    services.events.update("sale", {"mode": "closed"})
    make_worker(services).tick()
    assert serving(services) == 0


@all_backends
def test_an_idle_session_stops_counting_and_verify_renews_it(client: Any, services: Any, clock: FrozenClock) -> None:
    clock.set(T0)
    services.events.create({"event_id": "sale", "max_active": 1, "session_idle_seconds": 60})
    first, second = joins(services, 2)
    worker = make_worker(services, lease=AlwaysLease())
    worker.tick()
    token = services.tokens.issue("sale", first)["access_token"]
    headers = {"Authorization": f"Bearer {token}"}

    clock.set(T0 + 50)
    assert client.get("/verify?event_id=sale", headers=headers).status_code == 200  # renewed at T0+50
    clock.set(T0 + 100)
    worker.tick()
    assert serving(services) == 1, "seen 50 s ago: still active"
    assert client.get("/verify?event_id=sale", headers=headers).status_code == 200  # renewed at T0+100

    clock.set(T0 + 161)
    worker.tick()
    assert serving(services) == 2, "idle for 61 s: the session ended and frees its capacity"
    assert state(services, second) is PlaceState.ADMITTED
    refused = client.get("/verify?event_id=sale", headers=headers)
    assert refused.status_code == 401 and "idle" in refused.get_json()["message"]
