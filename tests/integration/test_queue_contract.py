"""One contract for the queue engine: Redis (one server, a Cluster, behind Sentinel), SQL on PostgreSQL and SQLite."""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from idp.clock import FrozenClock
from idp.config import Settings
from idp.errors import ValidationError
from idp.events import lottery
from idp.queue.engine import INT64_MAX, CounterOverflowError, ExpiryPolicy, PlaceState, QueueEngine
from idp.queue.redis_store import RedisQueueStore
from idp.queue.sql_store import SqlQueueStore
from tests.conftest import QUEUE_BACKENDS

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("backend_settings", QUEUE_BACKENDS, indirect=True)]

E = "concert"
T0 = 1_800_000_000
POLICY = ExpiryPolicy(enabled=True, period=100, incr_serving_on_expiry=False)
AUTO = ExpiryPolicy(enabled=True, period=100, incr_serving_on_expiry=True)


@pytest.fixture
def engine(backend_settings: Settings, clock: FrozenClock) -> Iterator[QueueEngine]:
    from idp.app import build_services

    svc = build_services(backend_settings, clock)
    yield svc.engine
    svc.close()


def join(engine: QueueEngine, n: int) -> list[Any]:
    return [engine.enqueue(E) for _ in range(n)]


def test_positions_are_contiguous_from_one_in_arrival_order(engine: QueueEngine, clock: FrozenClock) -> None:
    entries = []
    for i in range(5):
        clock.set(T0 + i)
        entries.append(engine.enqueue(E))
    assert [e.position for e in entries] == [1, 2, 3, 4, 5]
    assert [e.entry_time for e in entries] == [T0 + i for i in range(5)]
    assert len({e.request_id for e in entries}) == 5
    for e in entries:
        assert engine.entry(E, e.request_id) == e
    assert engine.counters(E).queue == 5


def test_entry_time_never_goes_backwards(engine: QueueEngine, clock: FrozenClock) -> None:
    clock.set(T0 + 10)
    first = engine.enqueue(E)
    clock.set(T0 + 5)  # another web server with a clock a little behind
    second = engine.enqueue(E)
    assert second.entry_time == first.entry_time == T0 + 10
    assert engine.entry(E, second.request_id).entry_time == T0 + 10  # type: ignore[union-attr]


def test_events_are_independent(engine: QueueEngine) -> None:
    a = engine.enqueue("a")
    b = engine.enqueue("b")
    assert a.position == b.position == 1
    assert engine.entry("a", b.request_id) is None
    engine.increment_serving("a", 3)
    assert engine.counters("b").serving == 0


def test_unknown_request_id(engine: QueueEngine) -> None:
    assert engine.entry(E, str(uuid.uuid4())) is None
    assert engine.status(E, str(uuid.uuid4()), POLICY).state is PlaceState.UNKNOWN


@pytest.mark.parametrize(
    "bad", ["", "nope", "12345678-1234-1234-1234-1234567890123", "ABCDEF00-1234-1234-1234-123456789012\n"]
)
def test_malformed_request_id_is_refused(engine: QueueEngine, bad: str) -> None:
    with pytest.raises(ValidationError):
        engine.entry(E, bad)


def test_idempotency_key_returns_the_same_place(engine: QueueEngine) -> None:
    first = engine.enqueue(E, idempotency_key="retry-1")
    again = engine.enqueue(E, idempotency_key="retry-1")
    other = engine.enqueue(E, idempotency_key="retry-2")
    assert again == first
    assert other.position == 2
    assert engine.counters(E).queue == 2


def test_concurrent_joins_have_no_gaps(engine: QueueEngine) -> None:
    results: list[Any] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(20):
            # Joins with and without an idempotency key, at once (Redis sends keyless ones together).
            entry = engine.enqueue(E, idempotency_key=f"k-{n}-{i}" if i % 5 == 0 else None)
            with lock:
                results.append(entry)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(e.position for e in results) == list(range(1, 161))
    assert len({e.request_id for e in results}) == 160
    for e in results:  # every visitor holds the position it was told, under its own request id
        assert engine.entry(E, e.request_id) == e


def test_increment_serving_validates_and_counts(engine: QueueEngine) -> None:
    assert engine.increment_serving(E, 2) == 2
    assert engine.increment_serving(E, 3) == 5
    for bad in (0, -1, 1.5, True, "2", None, 2**63, 2**64):
        with pytest.raises(ValidationError):
            engine.increment_serving(E, bad)
    assert engine.counters(E).serving == 5


def test_increment_serving_refuses_int64_overflow(engine: QueueEngine) -> None:
    engine.increment_serving(E, INT64_MAX - 10)
    with pytest.raises(CounterOverflowError):
        engine.increment_serving(E, 11)


def test_counters_are_exact_up_to_int64_max(engine: QueueEngine) -> None:
    a = engine.enqueue(E)
    assert engine.increment_serving(E, INT64_MAX - 2) == INT64_MAX - 2
    assert engine.increment_serving(E, 1) == INT64_MAX - 1
    assert engine.increment_serving_once(E, 1, "last") == (INT64_MAX, True)
    assert engine.increment_serving_once(E, 1, "last") == (INT64_MAX, False)
    assert engine.counters(E).serving == INT64_MAX
    assert engine.status(E, a.request_id, POLICY).serving == INT64_MAX
    assert engine.claim(E, a.request_id, POLICY).serving == INT64_MAX
    with pytest.raises(CounterOverflowError):
        engine.increment_serving(E, 1)
    assert engine.counters(E).serving == INT64_MAX


def test_status_waiting_admitted_claimed(engine: QueueEngine, clock: FrozenClock) -> None:
    clock.set(T0)
    a, b = join(engine, 2)
    st = engine.status(E, a.request_id, POLICY)
    assert st.state is PlaceState.WAITING and st.entry == a and st.serving == 0
    clock.set(T0 + 10)
    engine.increment_serving(E, 1)
    st = engine.status(E, a.request_id, POLICY)
    assert st.state is PlaceState.ADMITTED
    assert st.admitted_at == T0 + 10
    assert st.expires_in == 100
    assert engine.status(E, b.request_id, POLICY).state is PlaceState.WAITING
    claimed = engine.claim(E, a.request_id, POLICY)
    assert claimed.state is PlaceState.CLAIMED and claimed.first_claim
    again = engine.claim(E, a.request_id, POLICY)
    assert again.state is PlaceState.CLAIMED and not again.first_claim
    assert engine.counters(E).tokens == 1
    assert engine.claim(E, b.request_id, POLICY).state is PlaceState.WAITING
    assert engine.counters(E).tokens == 1


def test_expiry_boundary(engine: QueueEngine, clock: FrozenClock) -> None:
    """Admitted at T: claimable at T+period-1 and T+period, not at T+period+1."""
    clock.set(T0)
    a, b, c = join(engine, 3)
    clock.set(T0 + 50)
    engine.increment_serving(E, 3)  # admitted at T = T0+50 (after entry)
    clock.set(T0 + 50 + 99)
    assert engine.status(E, a.request_id, POLICY).expires_in == 1
    assert engine.claim(E, a.request_id, POLICY).state is PlaceState.CLAIMED
    clock.set(T0 + 50 + 100)
    assert engine.status(E, b.request_id, POLICY).expires_in == 0
    clock.set(T0 + 50 + 101)
    assert engine.status(E, b.request_id, POLICY).state is PlaceState.EXPIRED
    assert engine.claim(E, c.request_id, POLICY).state is PlaceState.EXPIRED
    # A place that claimed in time keeps its token after the window.
    assert engine.claim(E, a.request_id, POLICY).state is PlaceState.CLAIMED
    assert engine.counters(E).tokens == 1


def test_entry_after_admission_counts_from_entry(engine: QueueEngine, clock: FrozenClock) -> None:
    clock.set(T0)
    engine.increment_serving(E, 5)  # counter ahead of the queue
    clock.set(T0 + 500)
    a = engine.enqueue(E)
    st = engine.status(E, a.request_id, POLICY)
    assert st.state is PlaceState.ADMITTED and st.admitted_at == T0 + 500 and st.expires_in == 100


def test_expiry_disabled_never_expires(engine: QueueEngine, clock: FrozenClock) -> None:
    off = ExpiryPolicy(enabled=False, period=100)
    clock.set(T0)
    a = engine.enqueue(E)
    engine.increment_serving(E, 1)
    clock.set(T0 + 10_000)
    st = engine.status(E, a.request_id, off)
    assert st.state is PlaceState.ADMITTED and st.expires_in is None
    assert engine.claim(E, a.request_id, off).state is PlaceState.CLAIMED


def test_sweep_without_auto_increment_records_expiry_only(engine: QueueEngine, clock: FrozenClock) -> None:
    clock.set(T0)
    entries = join(engine, 5)
    engine.increment_serving(E, 5)
    engine.claim(E, entries[0].request_id, POLICY)
    clock.set(T0 + 101)
    result = engine.sweep(E, POLICY)
    assert (result.expired_unclaimed, result.max_expired, result.serving) == (4, 5, 5)
    counters = engine.counters(E)
    assert counters.expired == 4 and counters.serving == 5
    assert counters.waiting == 5 - 1 - 4


def test_sweep_advances_serving_by_unclaimed_windows(engine: QueueEngine, clock: FrozenClock) -> None:
    """The AWS example: windows (0,10] with 8 claimed and (10,25] with 11 claimed -> +2 and +4."""
    clock.set(T0)
    entries = join(engine, 30)
    engine.increment_serving(E, 10)
    for e in entries[:8]:
        assert engine.claim(E, e.request_id, AUTO).first_claim
    clock.set(T0 + 50)
    engine.increment_serving(E, 15)
    for e in entries[10:21]:
        assert engine.claim(E, e.request_id, AUTO).first_claim
    clock.set(T0 + 120)  # first window expired, second not
    first = engine.sweep(E, AUTO)
    assert (first.expired_unclaimed, first.max_expired, first.serving) == (2, 10, 27)
    clock.set(T0 + 151)
    second = engine.sweep(E, AUTO)
    assert (second.expired_unclaimed, second.max_expired, second.serving) == (4, 25, 31)
    counters = engine.counters(E)
    assert counters.expired == 6
    assert counters.waiting == 30 - 19 - 6
    # Nothing left to do: a repeated sweep is a no-op.
    clock.set(T0 + 152)
    third = engine.sweep(E, AUTO)
    assert third.expired_unclaimed == 0 and third.max_expired == 25


def test_sweep_positions_admitted_by_the_sweep_expire_later(engine: QueueEngine, clock: FrozenClock) -> None:
    clock.set(T0)
    join(engine, 6)
    engine.increment_serving(E, 2)
    clock.set(T0 + 101)
    assert engine.sweep(E, AUTO).serving == 4  # positions 3 and 4 admitted now
    clock.set(T0 + 150)
    assert engine.sweep(E, AUTO).expired_unclaimed == 0
    clock.set(T0 + 202)
    result = engine.sweep(E, AUTO)
    assert (result.expired_unclaimed, result.max_expired, result.serving) == (2, 4, 6)


def test_sweep_never_stalls_when_serving_is_ahead_of_the_queue(engine: QueueEngine, clock: FrozenClock) -> None:
    clock.set(T0)
    join(engine, 3)
    engine.increment_serving(E, 10)
    clock.set(T0 + 101)
    result = engine.sweep(E, AUTO)
    assert (result.expired_unclaimed, result.max_expired) == (3, 3)
    clock.set(T0 + 200)
    late = engine.enqueue(E)  # position 4 arrives, already admitted
    clock.set(T0 + 301)
    result = engine.sweep(E, AUTO)
    assert result.max_expired == 4
    assert engine.status(E, late.request_id, AUTO).state is PlaceState.EXPIRED


def test_sweep_partial_window_continues_next_time(engine: QueueEngine, clock: FrozenClock) -> None:
    for i in range(10):
        clock.set(T0 + i * 10)
        engine.enqueue(E)
    engine.increment_serving(E, 10)  # issued at T0+90, but entries before still count from issue time
    clock.set(T0 + 191)
    result = engine.sweep(E, POLICY)
    assert result.max_expired == 10
    assert engine.counters(E).expired == 10


def test_session_counters(engine: QueueEngine) -> None:
    engine.record_session(E, 1)
    engine.record_session(E, -1)
    engine.record_session(E, -1)
    counters = engine.counters(E)
    assert (counters.completed, counters.abandoned) == (1, 2)
    with pytest.raises(ValidationError):
        engine.record_session(E, 0)


def test_reset_starts_over(engine: QueueEngine, clock: FrozenClock) -> None:
    clock.set(T0)
    old = join(engine, 3)
    engine.increment_serving(E, 2)
    engine.claim(E, old[0].request_id, POLICY)
    engine.record_session(E, 1)
    engine.reset(E)
    assert engine.counters(E) == type(engine.counters(E))()
    assert engine.entry(E, old[0].request_id) is None
    assert engine.enqueue(E).position == 1


def test_counters_of_an_untouched_event_are_zero(engine: QueueEngine) -> None:
    counters = engine.counters("never-used")
    assert (counters.queue, counters.serving, counters.waiting, counters.tokens) == (0, 0, 0, 0)


# -- request ids at rest -------------------------------------------------------------------------


def forms_of(request_id: str) -> list[bytes]:
    """Every way a dump could show a request id: text, hex, raw bytes (and its random tail), base64."""
    raw = uuid.UUID(request_id).bytes
    text = request_id.encode()
    forms = [text, text.upper(), raw.hex().encode(), raw.hex().upper().encode(), raw, raw[4:]]
    for value in (raw, text):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            forms.append(encode(value).rstrip(b"="))
    return forms


def leaks(dump: list[bytes], request_ids: list[str]) -> list[str]:
    blob = b"\x00".join(dump)
    return [rid for rid in request_ids if any(form in blob for form in forms_of(rid))]


def redis_dump(store: RedisQueueStore) -> list[bytes]:
    """Every Redis key of the event and everything in it, as bytes."""
    client = store.client
    out: list[bytes] = []
    names = list(client.scan_iter(match=f"idp:q:{{{E}}}:*", count=1000))
    assert names, "the event has no Redis keys to look at"
    for name in names:
        kind = client.type(name)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        out.append(name if isinstance(name, bytes) else name.encode())
        if kind == "hash":
            for field, value in client.hgetall(name).items():
                out += [field, value]
        elif kind == "zset":
            out += [member for member, _score in client.zrange(name, 0, -1, withscores=True)]
        elif kind == "string":
            out.append(client.get(name))
        else:
            raise AssertionError(f"unexpected Redis type {kind} for {name!r}")
    return out


def sql_dump(db: Any) -> list[bytes]:
    """Every row of every table of the database, as bytes."""
    from sqlalchemy import MetaData, select

    metadata = MetaData()
    out: list[bytes] = []
    with db.engine.connect() as connection:
        metadata.reflect(bind=connection)
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                out += [value if isinstance(value, bytes) else str(value).encode() for value in row]
    return out


def test_no_request_id_is_kept_readable_at_rest(engine: QueueEngine, clock: FrozenClock) -> None:
    clock.set(T0)
    pending = [engine.enqueue_pending(E, lottery.entry_id, f"pre-{i}") for i in range(3)]
    pending += [engine.enqueue_pending(E, lottery.entry_id) for _ in range(2)]
    request_ids = [p.request_id for p in pending if p is not None]
    assert len(request_ids) == 5
    order = sorted(lottery.entry_id(rid) for rid in request_ids)
    assert engine.draw(E, order).name == "DRAWN"
    joined = [engine.enqueue(E, f"join-{i}") for i in range(3)] + join(engine, 3)
    request_ids += [e.request_id for e in joined]
    # Retried joins still answer the original request ids, kept only sealed.
    assert [engine.enqueue(E, f"join-{i}").request_id for i in range(3)] == request_ids[5:8]
    again = engine.enqueue(E, "pre-0")
    assert (again.request_id, again.position) == (request_ids[0], order.index(lottery.entry_id(request_ids[0])) + 1)
    engine.increment_serving(E, 4)
    engine.claim(E, request_ids[0], POLICY)
    engine.sweep(E, POLICY)
    for rid in request_ids:
        assert engine.entry(E, rid) is not None

    # The search finds a request id in each of its forms (it can fail).
    rid, raw = request_ids[0], uuid.UUID(request_ids[0]).bytes
    for planted in (rid.encode(), raw.hex().encode(), raw, raw[4:], base64.b64encode(raw)):
        assert leaks([b"x" + planted + b"y"], [rid]) == [rid]

    store = engine.store
    if isinstance(store, RedisQueueStore):
        dump = redis_dump(store) + sql_dump(store.ledger.db)
    else:
        assert isinstance(store, SqlQueueStore)
        dump = sql_dump(store.db)
    assert leaks(dump, request_ids) == []


def test_places_an_earlier_release_kept_raw_are_found_and_a_kept_hash_is_no_request_id(
    engine: QueueEngine, clock: FrozenClock
) -> None:
    from sqlalchemy import update

    from idp.queue import at_rest, keys
    from idp.storage.models import QueueEntry

    clock.set(T0)
    hashed, old = engine.enqueue(E), engine.enqueue(E, "old-key")
    store = engine.store
    # Rewrite the second place as an earlier release wrote it: the request id itself.
    if isinstance(store, RedisQueueStore):
        tag = at_rest.redis_tag(store.lookup, old.request_id)
        raw = uuid.UUID(old.request_id).bytes
        assert store.client.hdel(keys.places(E), tag) == 1
        store.client.hset(keys.places(E), raw, old.position)
        store.client.hset(keys.idempotency(E), "old-key", raw)
        kept_hash = str(uuid.UUID(bytes=at_rest.redis_tag(store.lookup, hashed.request_id)))
    else:
        assert isinstance(store, SqlQueueStore)
        with store.db.session() as session:
            session.execute(
                update(QueueEntry)
                .where(QueueEntry.request_id == at_rest.sql_tag(store.lookup, old.request_id))
                .values(request_id=old.request_id, request_seal=None)
            )
        kept_hash = str(uuid.UUID(hex=at_rest.sql_tag(store.lookup, hashed.request_id)))
    assert engine.entry(E, old.request_id) == old
    assert engine.enqueue(E, "old-key") == old
    engine.increment_serving(E, 2)
    assert engine.claim(E, old.request_id, POLICY).first_claim
    # A hash copied out of a dump, used as a request id, finds nothing.
    assert engine.entry(E, kept_hash) is None
    assert engine.status(E, kept_hash, POLICY).state is PlaceState.UNKNOWN
    assert engine.entry(E, hashed.request_id) == hashed
