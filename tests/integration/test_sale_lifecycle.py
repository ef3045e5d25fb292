"""A sale's lifecycle with an injected clock: not open -> pre-queue -> draw -> open -> closed; room modes."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from idp.clock import FrozenClock
from idp.events import lottery
from idp.queue.waiting_room import WaitingRoom
from tests.admin_support import bearer, make_key
from tests.conftest import all_backends
from tests.openapi_check import ValidatingClient

pytestmark = pytest.mark.integration

T0 = 1_800_000_000
PRE = T0 + 100
OPENS = T0 + 200
CLOSES = T0 + 900


@pytest.fixture
def api(client: Any) -> ValidatingClient:
    return ValidatingClient(client)


@pytest.fixture
def sale(services: Any, clock: FrozenClock) -> Any:
    clock.set(T0)
    return services.events.create(
        {"event_id": "sale", "prequeue_opens_at": PRE, "opens_at": OPENS, "closes_at": CLOSES}
    )


def join(api: ValidatingClient) -> Any:
    return api.post("/api/assign_queue_num", json={"event_id": "sale"})


def queue_num(api: ValidatingClient, request_id: str) -> Any:
    return api.get("/api/queue_num", query_string={"event_id": "sale", "request_id": request_id})


@all_backends
def test_every_transition_of_a_sale(api: ValidatingClient, sale: Any, clock: FrozenClock) -> None:
    # Not open: 409 with the seconds to the pre-queue's opening.
    answer = join(api)
    assert answer.status_code == 409
    assert answer.json["error"] == "event_not_open"
    assert answer.headers["Retry-After"] == "100"
    committed = api.get("/api/lottery", query_string={"event_id": "sale"}).json
    assert committed["commitment"] and "seed" not in committed and committed["entrants"] == 0
    assert committed["draw_time"] == OPENS

    # Pre-queue: joins are entries with a request id and no place yet.
    entries = []
    for i in range(12):
        clock.set(PRE + i)
        answer = join(api)
        assert answer.status_code == 200, answer.json
        assert answer.json["status"] == "pending" and "queue_number" not in answer.json
        assert answer.json["entry_id"] == hashlib.sha256(answer.json["api_request_id"].encode()).hexdigest()
        entries.append(answer.json)
    pending = queue_num(api, entries[0]["api_request_id"])
    assert pending.status_code == 202
    assert pending.json["opens_at"] == OPENS and pending.json["status"] == "pending"
    expiry = api.get(
        "/api/queue_pos_expiry", query_string={"event_id": "sale", "request_id": entries[0]["api_request_id"]}
    )
    assert expiry.status_code == 202
    token = api.post("/api/generate_token", json={"event_id": "sale", "request_id": entries[0]["api_request_id"]})
    assert token.status_code == 202
    before = api.get("/api/lottery", query_string={"event_id": "sale"}).json
    assert before["entrants"] == 12 and before["commitment"] == committed["commitment"] and not before["drawn"]

    # The opening: the first request after it draws; every entry has its place at once.
    clock.set(OPENS)
    positions = [queue_num(api, e["api_request_id"]).json["queue_number"] for e in entries]
    assert sorted(positions) == list(range(1, 13))
    published = api.get("/api/lottery", query_string={"event_id": "sale"}).json
    assert published["drawn"] and published["drawn_at"] == OPENS
    assert hashlib.sha256(published["seed"].encode()).hexdigest() == committed["commitment"]
    assert published["entries"] == lottery.draw_order(published["seed"], [e["entry_id"] for e in entries])
    by_entry = {e["entry_id"]: p for e, p in zip(entries, positions, strict=True)}
    assert [by_entry[e] for e in published["entries"]] == list(range(1, 13))
    assert lottery.verify(published).ok

    # Open: later arrivals are FIFO after the drawn places.
    clock.set(OPENS + 1)
    assert [join(api).json["queue_number"] for _ in range(3)] == [13, 14, 15]

    # Closed: joins are refused, places stay readable.
    clock.set(CLOSES)
    answer = join(api)
    assert answer.status_code == 410 and answer.json["error"] == "event_closed"
    assert queue_num(api, entries[0]["api_request_id"]).status_code == 200


def test_no_pre_queue_means_closed_until_opening(api: ValidatingClient, services: Any, clock: FrozenClock) -> None:
    clock.set(T0)
    services.events.create({"event_id": "sale", "opens_at": OPENS})
    answer = join(api)
    assert answer.status_code == 409 and answer.headers["Retry-After"] == "200"
    clock.set(OPENS)
    assert join(api).json["queue_number"] == 1


def test_a_pre_queue_opened_in_the_past_is_open_at_once(
    api: ValidatingClient, services: Any, clock: FrozenClock
) -> None:
    clock.set(T0)
    services.events.create({"event_id": "sale", "prequeue_opens_at": T0 - 50, "opens_at": OPENS})
    assert join(api).json["status"] == "pending"


def test_the_draw_happens_once_when_processes_race(services: Any, sale: Any, clock: FrozenClock) -> None:
    clock.set(PRE)
    room: WaitingRoom = services.room
    ids = [room.enter("sale")[1].request_id for _ in range(25)]
    clock.set(OPENS + 1)
    # Two more "processes": rooms of their own over the same stores, no shared memory.
    others = [WaitingRoom(services.events, services.engine, 0) for _ in range(3)]
    import threading

    barrier = threading.Barrier(len(others))
    results: list[bool] = []

    def race(other: WaitingRoom) -> None:
        barrier.wait()
        results.append(other.ensure_drawn(services.events.get("sale")))

    threads = [threading.Thread(target=race, args=(o,)) for o in others]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True, True, True]
    positions = sorted(room.place("sale", rid).position for rid in ids)  # type: ignore[union-attr]
    assert positions == list(range(1, 26))
    assert services.engine.counters("sale").queue == 25


def test_the_commitment_cannot_be_changed(api: ValidatingClient, services: Any, sale: Any, clock: FrozenClock) -> None:
    first = lottery.load(services.db, "sale")
    assert first is not None
    headers = bearer(make_key(services, "admin"))
    answer = api.patch("/admin/api/events/sale", json={"opens_at": OPENS + 60}, headers=headers)
    assert answer.status_code == 200, answer.json
    assert answer.json["opens_at"] == OPENS + 60
    assert lottery.load(services.db, "sale") == first
    # The seed is not an event field: it cannot be set through the API.
    answer = api.patch("/admin/api/events/sale", json={"seed": "0" * 64}, headers=headers)
    assert answer.status_code == 400


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prequeue_opens_at": PRE}, "needs opens_at"),
        ({"prequeue_opens_at": OPENS, "opens_at": PRE}, "before opens_at"),
        ({"opens_at": CLOSES, "closes_at": OPENS}, "before closes_at"),
        ({"opens_at": "soon"}, "integer"),
        ({"mode": "random"}, "mode must be"),
        ({"max_active": -1}, "integer"),
        ({"max_per_minute": 1.5}, "integer"),
    ],
)
def test_bad_schedules_and_modes_are_400(
    api: ValidatingClient, services: Any, fields: dict[str, Any], message: str
) -> None:
    headers = bearer(make_key(services, "admin"))
    answer = api.post("/admin/api/events", json={"event_id": "sale", **fields}, headers=headers)
    assert answer.status_code == 400
    assert message in answer.json["message"]


def test_a_closed_room_answers_409_room_closed(api: ValidatingClient, services: Any) -> None:
    services.events.create({"event_id": "sale", "mode": "closed"})
    answer = join(api)
    assert answer.status_code == 409 and answer.json["error"] == "room_closed"


def test_reset_commits_a_new_seed(services: Any, sale: Any, clock: FrozenClock) -> None:
    clock.set(OPENS)
    services.room.ensure_drawn(services.events.get("sale"))
    revealed = lottery.load(services.db, "sale")
    services.room.reset("sale")
    renewed = lottery.load(services.db, "sale")
    assert revealed is not None and renewed is not None and renewed.seed != revealed.seed


def test_a_parked_sign_in_gets_its_place_at_the_draw(client: Any, services: Any, sale: Any, clock: FrozenClock) -> None:
    import re
    from urllib.parse import parse_qs, urlencode, urlsplit

    services.clients.create({"client_id": "shop", "event_id": "sale", "redirect_uris": ["https://rp.example/cb"]})
    clock.set(PRE + 5)
    others = [services.room.enter("sale")[1].request_id for _ in range(4)]
    query = urlencode(
        {
            "response_type": "code",
            "client_id": "shop",
            "redirect_uri": "https://rp.example/cb",
            "scope": "openid",
            "state": "st",
        }
    )
    parked = client.get(f"/authorize?{query}")
    assert parked.status_code == 303
    wait_url = parked.headers["Location"]
    page = client.get(wait_url).get_data(as_text=True)
    assert "You are in the draw" in page and 'id="wr-position"' not in page
    assert services.room.draw_state("sale")[1].entrants == 5

    clock.set(OPENS + 1)
    page = client.get(wait_url).get_data(as_text=True)
    position = int(re.search(r'id="wr-position"[^>]*>([0-9]+)<', page).group(1))  # type: ignore[union-attr]
    drawn = sorted([position] + [services.room.place("sale", rid).position for rid in others])
    assert drawn == [1, 2, 3, 4, 5]

    services.room.increment_serving("sale", 5)
    finished = client.get(wait_url)
    assert finished.status_code in (302, 303)
    location = urlsplit(finished.headers["Location"])
    assert location.netloc == "rp.example" and parse_qs(location.query)["state"] == ["st"]


def test_authorize_before_the_opening_and_after_the_close_shows_the_sale_pages(
    client: Any, services: Any, sale: Any, clock: FrozenClock
) -> None:
    from urllib.parse import urlencode

    services.clients.create({"client_id": "shop", "event_id": "sale", "redirect_uris": ["https://rp.example/cb"]})
    query = urlencode(
        {"response_type": "code", "client_id": "shop", "redirect_uri": "https://rp.example/cb", "scope": "openid"}
    )
    clock.set(T0)
    early = client.get(f"/authorize?{query}", headers={"Accept-Language": "ja"})
    page = early.get_data(as_text=True)
    assert early.status_code == 409
    assert "待合室はまだ開いていません。" in page and 'id="wr-countdown"' in page and "1:40" in page
    assert '<meta http-equiv="refresh" content="60">' in page  # inside <noscript>: no-JS browsers reload
    clock.set(CLOSES)
    late = client.get(f"/authorize?{query}")
    assert late.status_code == 410 and "The sale is over." in late.get_data(as_text=True)


@all_backends
def test_two_workers_racing_the_draw_draw_once(services: Any, sale: Any, clock: FrozenClock) -> None:
    import threading

    from tests.worker_support import AlwaysLease, make_worker

    clock.set(PRE)
    ids = [services.room.enter("sale")[1].request_id for _ in range(40)]
    clock.set(OPENS)
    # Two workers acting at once (as after a lease glitch), each with its own process state.
    workers = [make_worker(services, lease=AlwaysLease()) for _ in range(2)]
    for worker in workers:
        worker.room_view = WaitingRoom(services.events, services.engine, 0)
        worker.services = type("View", (), {"room": worker.room_view, "events": services.events})()
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def run(worker: Any) -> None:
        barrier.wait()
        results.append(worker.run_draws(OPENS))

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [{"sale": True}, {"sale": True}]
    assert sorted(services.engine.entry("sale", rid).position for rid in ids) == list(range(1, 41))
    assert services.engine.counters("sale").queue == 40
    assert services.engine.draw_state("sale").drawn_at == OPENS
