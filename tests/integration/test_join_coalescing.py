"""Joins of one event that arrive together go to Redis in one call (IDP_QUEUE_JOIN_BATCH), on every topology.

Each join still gets a place of its own, in order of arrival, findable under its own request id; a call
that crosses the end of the positions the database reserved reserves more and goes on; a join past its
deadline in a call gets no place while the others do.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from idp.clock import FrozenClock
from idp.config import Settings
from idp.errors import UnavailableError
from idp.queue.engine import Entry, new_request_id
from idp.queue.redis_store import RedisQueueStore, _Join
from idp.services import Services

pytestmark = pytest.mark.integration
# Every Redis topology; waiting for replicas only where there is a single primary to wait on.
TOPOLOGIES = pytest.mark.parametrize("backend_settings", ["redis", "redis-cluster", "redis-sentinel"], indirect=True)
SINGLE_PRIMARY = pytest.mark.parametrize("backend_settings", ["redis", "redis-sentinel"], indirect=True)

E = "drop"


@pytest.fixture
def services(backend_settings: Settings, clock: FrozenClock) -> Iterator[Services]:
    from idp.app import build_services

    svc = build_services(dataclasses.replace(backend_settings, queue_block_size=3), clock)
    yield svc
    svc.close()


class HeldFirstCall:
    """Installed as a coalescer's runner: holds its first call until released, then runs it as it would;
    later calls go to ``later`` (as they would, by default). ``calls`` is the size of each call."""

    def __init__(self, coalescer: Any, later: Any = None) -> None:
        self.real = coalescer._run
        self.later = later or self.real
        self.calls: list[int] = []
        self.entered, self.release = threading.Event(), threading.Event()
        coalescer._run = self

    def __call__(self, key: str, joins: Sequence[_Join]) -> Sequence[Entry | BaseException]:
        self.calls.append(len(joins))
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(30)
            return self.real(key, joins)
        return self.later(key, joins)


def join_behind_a_held_call(held: HeldFirstCall, coalescer: Any, key: str, join: Any, behind: int) -> None:
    """``join(0)`` makes the held call; ``join(1..behind)`` queue behind it one at a time (the arrival order
    is known); then the call is released and every join finishes."""
    threads = [threading.Thread(target=join, args=(0,))]
    threads[0].start()
    assert held.entered.wait(30)
    for n in range(1, behind + 1):
        threads.append(threading.Thread(target=join, args=(n,)))
        threads[-1].start()
        deadline = time.monotonic() + 30
        while len(coalescer._queues.get(key) or []) < n:
            assert time.monotonic() < deadline
            time.sleep(0.001)
    held.release.set()
    for t in threads:
        t.join(30)
        assert not t.is_alive()


@TOPOLOGIES
def test_joins_that_wait_for_a_call_go_in_the_next_one_each_with_its_own_place(services: Services) -> None:
    store = services.store
    assert isinstance(store, RedisQueueStore)
    coalescer = store._joins
    held = HeldFirstCall(coalescer)
    entries: dict[int, Entry] = {}

    def join(n: int) -> None:
        entries[n] = services.engine.enqueue(E)

    join_behind_a_held_call(held, coalescer, E, join, 10)
    assert held.calls == [1, 10]
    # Positions in order of arrival, across three reservations of 3 positions within the second call.
    assert [entries[n].position for n in range(11)] == list(range(1, 12))
    assert len({e.request_id for e in entries.values()}) == 11
    for e in entries.values():
        assert services.engine.entry(E, e.request_id) == e
    assert services.engine.counters(E).queue == 11


@TOPOLOGIES
def test_a_join_past_its_deadline_gets_no_place_and_the_others_do(services: Services, clock: FrozenClock) -> None:
    store = services.store
    assert isinstance(store, RedisQueueStore)
    now = int(clock.now())
    services.engine.enqueue(E)  # the event's identity and first reservation
    ids = [new_request_id() for _ in range(3)]
    late = 1  # 1 ms after the epoch on the Redis server's clock: long past
    outcomes = store._enqueue_batch(E, [_Join(ids[0], now, 0), _Join(ids[1], now, late), _Join(ids[2], now, 0)])
    assert isinstance(outcomes[0], Entry) and outcomes[0].position == 2
    assert isinstance(outcomes[1], UnavailableError)
    assert isinstance(outcomes[2], Entry) and outcomes[2].position == 3
    assert services.engine.counters(E).queue == 3
    for outcome in (outcomes[0], outcomes[2]):
        assert isinstance(outcome, Entry)
        assert services.engine.entry(E, outcome.request_id) == outcome


@TOPOLOGIES
def test_one_join_at_a_time_when_the_batch_is_one(backend_settings: Settings, clock: FrozenClock) -> None:
    from idp.app import build_services

    svc: Any = build_services(dataclasses.replace(backend_settings, queue_join_batch=1), clock)
    try:
        assert svc.store._joins.max_batch == 1
        assert [svc.engine.enqueue(E).position for _ in range(3)] == [1, 2, 3]
    finally:
        svc.close()


@TOPOLOGIES
def test_a_reservation_that_fails_mid_call_fails_only_the_joins_still_without_a_place(
    services: Services, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    store = services.store
    assert isinstance(store, RedisQueueStore)
    now = int(clock.now())
    services.engine.enqueue(E)  # positions 1..3 reserved, 1 used
    ids = [new_request_id() for _ in range(4)]

    def ledger_down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("UPDATE", {}, ConnectionError("the database went away"))

    monkeypatch.setattr(store.ledger, "reserve", ledger_down)
    outcomes = store._enqueue_batch(E, [_Join(rid, now, 0) for rid in ids])
    # Two joins took positions 2 and 3 before the block ran out: those places stand and are theirs.
    assert [o.position for o in outcomes[:2] if isinstance(o, Entry)] == [2, 3]
    for outcome in outcomes[:2]:
        assert isinstance(outcome, Entry) and services.engine.entry(E, outcome.request_id) == outcome
    # The two still without a place fail (an outage: 503 in their requests), and nothing was stored for them.
    assert all(isinstance(o, OperationalError) for o in outcomes[2:])
    assert services.engine.counters(E).queue == 3


@TOPOLOGIES
def test_a_join_whose_call_was_cut_off_in_another_caller_answers_503(services: Services) -> None:
    store = services.store
    assert isinstance(store, RedisQueueStore)
    coalescer = store._joins

    def cut_off(key: str, joins: Sequence[_Join]) -> Sequence[Entry | BaseException]:
        raise KeyboardInterrupt  # the caller running the second call is stopped in it

    held = HeldFirstCall(coalescer, cut_off)
    outcomes: dict[int, object] = {}

    def join(n: int) -> None:
        try:
            outcomes[n] = services.engine.enqueue(E)
        except BaseException as exc:  # noqa: BLE001 - the outcome under test
            outcomes[n] = exc

    join_behind_a_held_call(held, coalescer, E, join, 2)
    assert isinstance(outcomes[0], Entry)
    led, waited = (outcomes[1], outcomes[2])
    assert isinstance(led, KeyboardInterrupt)  # only the caller that was stopped sees the interruption
    assert isinstance(waited, UnavailableError) and waited.retry_after > 0  # 503 with Retry-After


@TOPOLOGIES
def test_a_call_with_more_joins_than_a_few_blocks_reserves_until_every_join_has_a_place(
    services: Services, clock: FrozenClock
) -> None:
    store = services.store
    assert isinstance(store, RedisQueueStore)
    now = int(clock.now())
    services.engine.enqueue(E)  # positions 1..3 reserved, 1 used
    joins = [_Join(new_request_id(), now, 0) for _ in range(20)]  # seven blocks of 3 and more
    outcomes = store._enqueue_batch(E, joins)
    assert [o.position if isinstance(o, Entry) else o for o in outcomes] == list(range(2, 22))
    assert services.engine.counters(E).queue == 21


@TOPOLOGIES
def test_a_store_lost_between_the_rounds_of_a_call_fails_only_the_joins_without_a_place(
    services: Services, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from idp.queue import keys
    from idp.queue.engine import PlaceLostError, StoreLostError
    from idp.queue.redis_store import generation_of

    store = services.store
    assert isinstance(store, RedisQueueStore)
    now = int(clock.now())
    before = services.engine.enqueue(E)  # positions 1..3 reserved, 1 used
    generation = generation_of(before.request_id)
    real_reserve = store._reserve
    lost = []

    def lose_then_reserve(*args: Any) -> None:
        if not lost:  # the store is lost between the call's rounds (after two joins took 2 and 3)
            lost.append(True)
            store.client.delete(*keys.event_keys(E))
        real_reserve(*args)

    monkeypatch.setattr(store, "_reserve", lose_then_reserve)
    outcomes = store._enqueue_batch(E, [_Join(new_request_id(), now, 0) for _ in range(5)])
    assert lost
    first = [o for o in outcomes[:2] if isinstance(o, Entry)]
    assert [e.position for e in first] == [2, 3]  # placed before the loss: answered as made
    assert all(generation_of(e.request_id) == generation for e in first)
    # The joins that found the loss get the 503 of a lost store (it recovers meanwhile), no place.
    assert all(isinstance(o, StoreLostError) for o in outcomes[2:])
    for e in first:  # lost with the store: told so, never given to anyone else
        with pytest.raises(PlaceLostError):
            services.engine.entry(E, e.request_id)
    again = store._enqueue_batch(E, [_Join(new_request_id(), now, 0) for _ in range(3)])
    entries = [o for o in again if isinstance(o, Entry)]
    assert len(entries) == 3
    assert all(generation_of(e.request_id) > generation and e.position > 3 for e in entries)
    for e in entries:
        assert services.engine.entry(E, e.request_id) == e


@TOPOLOGIES
def test_a_call_sent_under_an_identity_another_process_recovered_is_made_again_under_the_new_generation(
    services: Services, clock: FrozenClock
) -> None:
    from idp.queue import keys
    from idp.queue.engine import StoreLostError
    from idp.queue.redis_store import generation_of

    store = services.store
    assert isinstance(store, RedisQueueStore)
    now = int(clock.now())
    before = services.engine.enqueue(E)
    stale = store._known[E]
    store.client.delete(*keys.event_keys(E))
    with pytest.raises(StoreLostError):  # the join that finds the loss recovers the store and answers 503
        services.engine.enqueue(E)
    store._known[E] = stale  # as in a process that has not heard of the recovery
    outcomes = store._enqueue_batch(E, [_Join(new_request_id(), now, 0) for _ in range(4)])
    entries = [o for o in outcomes if isinstance(o, Entry)]
    assert len(entries) == 4
    assert all(generation_of(e.request_id) > generation_of(before.request_id) for e in entries)
    assert len({e.position for e in entries}) == 4 and all(e.position > before.position for e in entries)
    for e in entries:
        assert services.engine.entry(E, e.request_id) == e


@pytest.mark.parametrize(
    "failure",
    [RedisConnectionError("Connection reset by peer"), KeyboardInterrupt()],
    ids=["outage", "interrupted-caller"],
)
@TOPOLOGIES
def test_every_join_of_a_call_that_failed_is_answered_503_with_retry_after(app: Any, failure: BaseException) -> None:
    svc = app.extensions["idp"]
    svc.events.create({"event_id": "sale", "name": "Big sale"})
    store = svc.store
    assert isinstance(store, RedisQueueStore)
    coalescer = store._joins

    def failing(key: str, joins: Sequence[_Join]) -> Sequence[Entry | BaseException]:
        raise failure

    held = HeldFirstCall(coalescer, failing)
    answers: dict[int, Any] = {}

    def join(n: int) -> None:
        try:
            answers[n] = app.test_client().post("/api/assign_queue_num", json={"event_id": "sale"})
        except BaseException as exc:  # noqa: BLE001 - the caller that was stopped
            answers[n] = exc

    join_behind_a_held_call(held, coalescer, "sale", join, 3)
    assert answers[0].status_code == 200
    # The caller that was stopped ends with its interruption; every other join is answered.
    waited = [answers[n] for n in (1, 2, 3) if not (n == 1 and isinstance(failure, KeyboardInterrupt))]
    for answer in waited:
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == str(svc.settings.retry_after_seconds)
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.get_json()["error"] == "service_unavailable"
    assert held.calls == [1, 3]


@SINGLE_PRIMARY
def test_a_change_not_replicated_in_a_later_round_fails_only_that_rounds_joins(
    services: Services, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = services.store
    assert isinstance(store, RedisQueueStore)
    now = int(clock.now())
    services.engine.enqueue(E)  # positions 1..3 reserved, 1 used
    real_reserve = store._reserve

    def reserve_then_lose_the_replicas(*args: Any) -> None:
        real_reserve(*args)
        monkeypatch.setattr(store, "wait_replicas", 5)  # more replicas than there are: WAIT falls short
        monkeypatch.setattr(store, "wait_timeout_ms", 10)

    monkeypatch.setattr(store, "_reserve", reserve_then_lose_the_replicas)
    outcomes = store._enqueue_batch(E, [_Join(new_request_id(), now, 0) for _ in range(4)])
    assert [o.position for o in outcomes[:2] if isinstance(o, Entry)] == [2, 3]  # acknowledged, and replicated
    assert all(isinstance(o, UnavailableError) for o in outcomes[2:])  # 503: their change is not replicated
