"""QueueEngine over a fake store: it validates before the store is touched and hands it the clock's time."""

from __future__ import annotations

from typing import Any

import pytest

from idp.clock import FrozenClock
from idp.errors import ValidationError
from idp.queue.engine import (
    Counters,
    Entry,
    ExpiryPolicy,
    PlaceState,
    PlaceStatus,
    QueueEngine,
    SweepResult,
    validate_request_id,
)

pytestmark = pytest.mark.unit

RID = "0f8fad5b-d9cb-469f-a165-70867728950e"
POLICY = ExpiryPolicy(enabled=True, period=900, incr_serving_on_expiry=True)


class FakeStore:
    """Records each call; answers with simple fixed values."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.positions = 0

    def enqueue(self, event_id: str, request_id: str, now: int, idempotency_key: str | None) -> Entry:
        self.calls.append(("enqueue", (event_id, request_id, now, idempotency_key)))
        self.positions += 1
        return Entry(request_id, self.positions, now)

    def entry(self, event_id: str, request_id: str) -> Entry | None:
        self.calls.append(("entry", (event_id, request_id)))
        return None

    def counters(self, event_id: str) -> Counters:
        self.calls.append(("counters", (event_id,)))
        return Counters(queue=self.positions)

    def increment_serving(self, event_id: str, by: int, now: int) -> int:
        self.calls.append(("increment_serving", (event_id, by, now)))
        return by

    def status(self, event_id: str, request_id: str, now: int, policy: ExpiryPolicy, claim: bool) -> PlaceStatus:
        self.calls.append(("status", (event_id, request_id, now, policy, claim)))
        return PlaceStatus(PlaceState.WAITING)

    def sweep(self, event_id: str, now: int, policy: ExpiryPolicy) -> SweepResult:
        self.calls.append(("sweep", (event_id, now, policy)))
        return SweepResult(0, 0, 0, 0)

    def record_session(self, event_id: str, outcome: int) -> None:
        self.calls.append(("record_session", (event_id, outcome)))

    def reset(self, event_id: str) -> None:
        self.calls.append(("reset", (event_id,)))

    def ping(self) -> None:
        self.calls.append(("ping", ()))


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def engine(store: FakeStore) -> QueueEngine:
    return QueueEngine(store, FrozenClock(1_800_000_000.75))


def test_enqueue_makes_a_fresh_uuid_request_id_and_passes_whole_seconds(engine, store):
    first = engine.enqueue("sale")
    second = engine.enqueue("sale", "retry-key")
    assert validate_request_id(first.request_id) == first.request_id
    assert first.request_id != second.request_id
    assert store.calls[0] == ("enqueue", ("sale", first.request_id, 1_800_000_000, None))
    assert store.calls[1][1][3] == "retry-key"
    assert isinstance(store.calls[0][1][2], int)


def test_an_empty_idempotency_key_means_none(engine, store):
    engine.enqueue("sale", "")
    assert store.calls[0][1][3] is None


@pytest.mark.parametrize(
    "call",
    [
        lambda e: e.enqueue("sale", "bad key"),
        lambda e: e.entry("sale", "not-a-uuid"),
        lambda e: e.status("sale", RID.upper(), POLICY),
        lambda e: e.claim("sale", 42, POLICY),
        lambda e: e.increment_serving("sale", 0),
        lambda e: e.increment_serving("sale", 1.0),
        lambda e: e.increment_serving("sale", True),
        lambda e: e.increment_serving("sale", 2**63),
        lambda e: e.record_session("sale", 0),
        lambda e: e.record_session("sale", 2),
    ],
)
def test_bad_input_never_reaches_the_store(engine, store, call):
    with pytest.raises(ValidationError):
        call(engine)
    assert store.calls == []


def test_status_and_claim_differ_only_in_the_claim_flag(engine, store):
    engine.status("sale", RID, POLICY)
    engine.claim("sale", RID, POLICY)
    assert store.calls == [
        ("status", ("sale", RID, 1_800_000_000, POLICY, False)),
        ("status", ("sale", RID, 1_800_000_000, POLICY, True)),
    ]


def test_increment_sweep_and_sessions_are_passed_through_with_the_time(engine, store):
    assert engine.increment_serving("sale", 2**63 - 1) == 2**63 - 1
    engine.sweep("sale", POLICY)
    engine.record_session("sale", 1)
    engine.record_session("sale", -1)
    engine.reset("sale")
    assert store.calls == [
        ("increment_serving", ("sale", 2**63 - 1, 1_800_000_000)),
        ("sweep", ("sale", 1_800_000_000, POLICY)),
        ("record_session", ("sale", 1)),
        ("record_session", ("sale", -1)),
        ("reset", ("sale",)),
    ]


def test_the_engine_follows_the_clock(store):
    clock = FrozenClock(100)
    engine = QueueEngine(store, clock)
    engine.enqueue("sale")
    clock.advance(901)
    engine.sweep("sale", POLICY)
    assert store.calls[0][1][2] == 100
    assert store.calls[1][1][1] == 1001
