"""The queue engine's pre-queue, draw and capped admission, held to one contract on every store."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

from idp.clock import FrozenClock
from idp.config import Settings
from idp.events import lottery
from idp.queue.engine import DrawOutcome, ExpiryPolicy, PlaceState, QueueEngine
from tests.conftest import BACKENDS

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("backend_settings", BACKENDS, indirect=True)]

E = "concert"
T0 = 1_800_000_000
POLICY = ExpiryPolicy(enabled=True, period=100)


@pytest.fixture
def engine(backend_settings: Settings, clock: FrozenClock) -> Iterator[QueueEngine]:
    from idp.app import build_services

    svc = build_services(backend_settings, clock)
    yield svc.engine
    svc.close()


def test_a_pending_entry_has_a_request_id_and_no_position(engine: QueueEngine, clock: FrozenClock) -> None:
    clock.set(T0)
    pending = engine.enqueue_pending(E, lottery.entry_id)
    assert pending is not None
    assert pending.entry_id == lottery.entry_id(pending.request_id)
    assert pending.joined_at == T0
    assert engine.pending(E, pending.request_id) == pending
    assert engine.entry(E, pending.request_id) is None
    assert engine.status(E, pending.request_id, POLICY).state is PlaceState.UNKNOWN
    assert engine.counters(E).queue == 0
    state = engine.draw_state(E)
    assert (state.entrants, state.drawn_at) == (1, None)
    assert engine.pending(E, str(uuid.uuid4())) is None
    more = [engine.enqueue_pending(E, lottery.entry_id) for _ in range(1100)]
    listed = engine.pending_entries(E)
    # Listed without their request ids: the stores keep only hashes of those.
    expected = {(p.entry_id, p.joined_at) for p in (pending, *more) if p is not None}
    assert len(listed) == 1101 and {(p.entry_id, p.joined_at) for p in listed} == expected
    assert {p.request_id for p in listed} == {""}
    assert engine.pending_entries("other") == []


def test_the_draw_gives_positions_1_to_p_in_the_given_order_at_once(engine: QueueEngine, clock: FrozenClock) -> None:
    clock.set(T0)
    entries = [engine.enqueue_pending(E, lottery.entry_id) for _ in range(7)]
    ids = [e.request_id for e in entries if e is not None]
    order = list(reversed(ids))
    clock.set(T0 + 50)
    assert engine.draw(E, [lottery.entry_id(rid) for rid in order]) is DrawOutcome.DRAWN
    assert engine.pending_positions(E) == {lottery.entry_id(rid): i for i, rid in enumerate(order, start=1)}
    assert [engine.entry(E, rid).position for rid in order] == [1, 2, 3, 4, 5, 6, 7]  # type: ignore[union-attr]
    assert {engine.entry(E, rid).entry_time for rid in order} == {T0 + 50}  # type: ignore[union-attr]
    assert engine.counters(E).queue == 7
    state = engine.draw_state(E)
    assert (state.entrants, state.drawn_at, state.first_position) == (7, T0 + 50, 1)
    # Once only: a second draw (another process, another order) changes nothing.
    assert engine.draw(E, [lottery.entry_id(rid) for rid in ids]) is DrawOutcome.ALREADY_DRAWN
    assert [engine.entry(E, rid).position for rid in order] == [1, 2, 3, 4, 5, 6, 7]  # type: ignore[union-attr]
    # Later arrivals are FIFO from P+1; the pre-queue no longer takes entries.
    clock.set(T0 + 51)
    assert engine.enqueue_pending(E, lottery.entry_id) is None
    assert engine.enqueue(E).position == 8
    assert engine.enqueue(E).position == 9
    waiting = engine.status(E, order[0], POLICY)
    assert waiting.state is PlaceState.WAITING and waiting.entry.position == 1  # type: ignore[union-attr]


def test_a_draw_over_stale_entries_changes_nothing(engine: QueueEngine) -> None:
    first = engine.enqueue_pending(E, lottery.entry_id)
    second = engine.enqueue_pending(E, lottery.entry_id)
    assert first is not None and second is not None
    assert engine.draw(E, [first.entry_id]) is DrawOutcome.STALE
    assert engine.draw(E, [first.entry_id, lottery.entry_id(str(uuid.uuid4()))]) is DrawOutcome.STALE
    assert engine.draw(E, [first.entry_id, first.entry_id]) is DrawOutcome.STALE
    assert engine.draw_state(E).drawn_at is None
    assert engine.counters(E).queue == 0
    assert engine.pending_positions(E) == {first.entry_id: 0, second.entry_id: 0}
    assert engine.draw(E, [second.entry_id, first.entry_id]) is DrawOutcome.DRAWN
    assert engine.entry(E, second.request_id).position == 1  # type: ignore[union-attr]


def test_an_empty_pre_queue_draws_and_the_queue_starts_at_one(engine: QueueEngine) -> None:
    assert engine.draw(E, []) is DrawOutcome.DRAWN
    assert engine.draw_state(E).drawn_at is not None
    assert engine.enqueue(E).position == 1


def test_a_retried_pre_queue_join_keeps_its_entry_and_later_its_place(engine: QueueEngine) -> None:
    first = engine.enqueue_pending(E, lottery.entry_id, "retry-1")
    again = engine.enqueue_pending(E, lottery.entry_id, "retry-1")
    assert first == again
    assert engine.draw_state(E).entrants == 1
    assert first is not None
    assert engine.draw(E, [first.entry_id]) is DrawOutcome.DRAWN
    retried = engine.enqueue(E, "retry-1")
    assert (retried.request_id, retried.position) == (first.request_id, 1)


def test_two_processes_racing_the_draw_draw_once(engine: QueueEngine) -> None:
    entries = [engine.enqueue_pending(E, lottery.entry_id) for _ in range(30)]
    ids = [e.request_id for e in entries if e is not None]
    entry_ids = [lottery.entry_id(rid) for rid in ids]
    outcomes: list[DrawOutcome] = []
    barrier = threading.Barrier(4)

    def racer(order: list[str]) -> None:
        barrier.wait()
        outcomes.append(engine.draw(E, order))

    orders = [entry_ids, list(reversed(entry_ids)), entry_ids[1:] + entry_ids[:1], entry_ids[2:] + entry_ids[:2]]
    threads = [threading.Thread(target=racer, args=(order,)) for order in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o.value for o in outcomes) == [DrawOutcome.DRAWN.value] + [DrawOutcome.ALREADY_DRAWN.value] * 3
    positions = sorted(engine.entry(E, rid).position for rid in ids)  # type: ignore[union-attr]
    assert positions == list(range(1, 31))
    assert engine.counters(E).queue == 30


def test_admit_up_to_respects_the_cap_the_queue_and_the_budget(engine: QueueEngine, clock: FrozenClock) -> None:
    clock.set(T0)
    for _ in range(10):
        engine.enqueue(E)
    assert engine.admit_up_to(E, cap=3, by=5) == (3, 3)
    assert engine.admit_up_to(E, cap=3, by=5) == (3, 0)
    assert engine.admit_up_to(E, cap=100, by=2) == (5, 2)
    assert engine.admit_up_to(E, cap=100, by=100) == (10, 5)  # never past the queue
    assert engine.counters(E).serving == 10
    assert engine.admit_up_to(E, cap=100, by=0) == (10, 0)


def test_admit_up_to_applies_a_mark_once(engine: QueueEngine, clock: FrozenClock) -> None:
    clock.set(T0)
    first = engine.enqueue(E)
    for _ in range(9):
        engine.enqueue(E)
    assert engine.admit_up_to(E, cap=100, by=2, mark="target:1") == (2, 2)
    # A worker that crashed after the step and runs the same tick again admits nobody.
    assert engine.admit_up_to(E, cap=100, by=2, mark="target:1") == (2, 0)
    assert engine.admit_up_to(E, cap=100, by=2, mark="target:2") == (4, 2)
    clock.set(T0 + 5)
    admitted = engine.status(E, first.request_id, POLICY)
    assert admitted.state is PlaceState.ADMITTED and admitted.admitted_at == T0


def test_reset_forgets_the_pre_queue_and_the_draw(engine: QueueEngine) -> None:
    pending = engine.enqueue_pending(E, lottery.entry_id)
    assert pending is not None
    assert engine.draw(E, [pending.entry_id]) is DrawOutcome.DRAWN
    engine.reset(E)
    assert engine.draw_state(E).entrants == 0
    assert engine.draw_state(E).drawn_at is None
    assert engine.pending(E, pending.request_id) is None
    assert engine.enqueue_pending(E, lottery.entry_id) is not None
