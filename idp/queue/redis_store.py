"""The Redis queue store: every operation is one Lua script on one event's keys (one cluster slot).

Memory per waiting visitor is one hash field (a 16-byte keyed hash of the request id, never the request id:
see :mod:`idp.queue.at_rest`) with an integer position, plus one bit in the claimed bitmap; entry times are
kept once per second of arrivals, not per visitor.

Redis is fast but may lose what it acknowledged (persistence off, a restart from an older snapshot, a
flush, a failover). So every event's Redis state carries the identity its database ledger knows
(:mod:`idp.queue.ledger`), every script checks it first, and positions are handed out only within a block
the ledger reserved beforehand. A state that lost its identity is detected by the next operation, which
answers 503 (``queue_store_lost``); the event then continues above every position ever reserved, under a
new generation that request ids carry, so a place lost with the store answers 410 ``place_lost``.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

import redis
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError, ResponseError
from sqlalchemy.exc import SQLAlchemyError

from idp.crypto import LookupKey
from idp.errors import UnavailableError
from idp.queue import at_rest, keys, resp
from idp.queue.coalesce import CoalesceInterrupted, Coalescer
from idp.queue.engine import (
    REQUEST_ID_RE,
    CounterOverflowError,
    Counters,
    DrawOutcome,
    DrawState,
    Entry,
    ExpiryPolicy,
    Pending,
    PlaceLostError,
    PlaceState,
    PlaceStatus,
    StoreLostError,
    SweepResult,
)
from idp.queue.ledger import LOST, OK, Ledger, LedgerRow, new_epoch
from idp.queue.redis_client import SOCKET_TIMEOUT, connect
from idp.storage.outage import OUTAGE_CANDIDATES, unavailable_error

log = logging.getLogger("idp.queue")

# Marks of automatic increments are remembered this long (a restarted worker retries within minutes).
MARK_RETENTION_SECONDS = 7 * 86400
_COUNTER_FIELDS = ("queue", "serving", "tokens", "expired", "completed", "abandoned", "max_expired", "lost")
_SCRIPTS = (
    "enqueue",
    "enqueue_many",
    "entry",
    "increment",
    "increment_once",
    "status",
    "sweep",
    "install",
    "extend",
    "enqueue_pending",
    "draw",
    "admit_up_to",
    "inspect",
)
_REASONS = {
    "missing": "its state is missing (an empty or flushed store)",
    "epoch": "its state is not the one the database knows (older than the last recovery, or foreign)",
    "restart": "the server restarted or was replaced since it was checked (its data may be older)",
    "requested": "recovery was requested",
}
# How often the offset between this host's clock and the Redis server's is measured.
CLOCK_OFFSET_SECONDS = 60.0

T = TypeVar("T")


def _script_source(name: str) -> str:
    folder = resources.files("idp.queue") / "scripts"
    common = (folder / "common.lua").read_text(encoding="utf-8")
    return common + "\n" + (folder / f"{name}.lua").read_text(encoding="utf-8")


def _unavailable(func: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(func)
    def wrapper(self: RedisQueueStore, *args: Any, **kwargs: Any) -> T:
        try:
            return func(self, *args, **kwargs)
        except OUTAGE_CANDIDATES as exc:
            unavailable = unavailable_error(exc, self.retry_after)
            if unavailable is None:
                raise
            raise unavailable from exc

    return wrapper


@dataclass(frozen=True, slots=True)
class _Join:
    """One join without an idempotency key, waiting to go to Redis (maybe with others)."""

    request_id: str
    now: int
    deadline: int


def tagged_request_id(request_id: str, generation: int) -> str:
    """The request id with the event's store generation in its first four bytes (the rest stays random)."""
    if 0 <= generation <= 0xFFFFFFFF and REQUEST_ID_RE.match(request_id):
        return f"{generation:08x}{request_id[8:]}"  # canonical already: replace the first eight hex digits
    raw = uuid.UUID(request_id).bytes
    return str(uuid.UUID(bytes=generation.to_bytes(4, "big") + raw[4:]))


def generation_of(request_id: str) -> int:
    return int.from_bytes(uuid.UUID(request_id).bytes[:4], "big")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int:
    return 0 if value is None else int(value)


def _lost_reason(exc: ResponseError) -> str | None:
    words = str(exc).split()
    if len(words) >= 2 and words[0] == "IDPLOST":
        return words[1]
    return None


@dataclass(frozen=True)
class _Known:
    """What this process believes the ledger says about an event ('' epoch: no ledger row)."""

    epoch: str = ""
    generation: int = 0


@dataclass(frozen=True)
class _Found:
    """An event's Redis state as found, for recovery."""

    epoch: str | None
    run: str | None
    server_run: str
    queue_raw: str | None
    limit: int
    serving: int
    tokens: int
    lost: int
    gaps: str
    max_expired: int

    @property
    def queue(self) -> int:
        return _int(self.queue_raw)


class _NoState(Exception):
    """A read found no state for an event the ledger does not know: nothing was ever queued."""


# Scripts whose answer acknowledges a change to a visitor or an operator: with ``wait_replicas`` each
# waits for the replicas. Bookkeeping the database already covers (install, extend) does not: failing
# it after the primary applied it would leave Redis and the database disagreeing.
_ACKNOWLEDGED_SCRIPTS = frozenset(
    {"enqueue", "enqueue_many", "increment", "increment_once", "enqueue_pending", "draw", "admit_up_to"}
)


class RedisQueueStore:
    """The queue on Redis: one server, a Redis Cluster, or a primary behind Sentinel.

    ``wait_replicas`` > 0 acknowledges a change only once that many replicas hold it. Redis replicates
    asynchronously: a join the primary answered may be lost when a replica is promoted. ``WAIT`` on the
    join's own connection closes that gap: the join answers 503 (safe to retry) unless ``wait_replicas``
    replicas confirmed it within ``wait_timeout_ms``; Sentinel promotes the replica with the most data.
    """

    def __init__(
        self,
        client: redis.Redis | RedisCluster,
        ledger: Ledger,
        lookup: LookupKey,
        retry_after: int = 5,
        *,
        block_size: int = 500,
        auto_recover: bool = True,
        join_deadline_ms: int = 1500,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 500,
        join_batch: int = 64,
    ) -> None:
        if wait_replicas and isinstance(client, RedisCluster):
            raise ValueError("waiting for replicas needs a single primary (redis:// or redis+sentinel://)")
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.client = client
        self.ledger = ledger
        self.lookup = lookup
        self.retry_after = retry_after
        self.block_size = block_size
        self.auto_recover = auto_recover
        self.join_deadline_ms = join_deadline_ms
        self._scripts = {name: client.register_script(_script_source(name)) for name in _SCRIPTS}
        # One server: scripts go out through a lean RESP path (idp.queue.resp); Cluster and Sentinel
        # clients keep redis-py's command path, which follows redirects and failovers.
        self._lean = resp.ScriptCaller(client) if resp.supported(client) else None
        self._known: dict[str, _Known] = {}
        self._offset: tuple[float, float] | None = None  # (measured at, redis ms - local ms)
        # Joins without an idempotency key that arrive while a join of the same event is in flight go
        # together in the next call (idp.queue.coalesce): one round trip and one identity check for many.
        self._joins: Coalescer[_Join, Entry] = Coalescer(self._enqueue_batch, max_batch=join_batch, gather=True)

    @staticmethod
    def client_for(url: str) -> Any:
        """The client ``url`` names: ``redis://``, ``redis+cluster://`` or ``redis+sentinel://``."""
        return connect(url)

    @classmethod
    def from_url(
        cls,
        url: str,
        ledger: Ledger,
        lookup: LookupKey,
        retry_after: int = 5,
        *,
        block_size: int = 500,
        auto_recover: bool = True,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 500,
        join_batch: int = 64,
    ) -> RedisQueueStore:
        """A store on a single Redis, a Redis Cluster or a Sentinel-managed primary (``idp.queue.redis_client``)."""
        timeout = SOCKET_TIMEOUT
        client = cls.client_for(url)
        # A join executed after its client gave up (a paused server) must not leave a place behind:
        # it is refused once this much of the client's timeout has passed.
        deadline_ms = int(timeout * 1000) - 500
        return cls(
            client,
            ledger,
            lookup,
            retry_after=retry_after,
            block_size=block_size,
            auto_recover=auto_recover,
            join_deadline_ms=deadline_ms,
            wait_replicas=wait_replicas,
            wait_timeout_ms=wait_timeout_ms,
            join_batch=join_batch,
        )

    # -- plumbing --------------------------------------------------------------------------------

    def _run(self, name: str, script_keys: Sequence[str], args: Sequence[Any]) -> Any:
        # EVALSHA straight through execute_command: the Script wrapper costs a join noticeable
        # CPU. NOSCRIPT means the script did not run, so loading it and calling again is safe.
        script = self._scripts[name]
        if self.wait_replicas and name in _ACKNOWLEDGED_SCRIPTS:
            return self._run_replicated(script, script_keys, args)
        try:
            if self._lean is not None:
                return self._lean.evalsha(script.sha, script_keys, args)
            return self.client.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", script.sha, len(script_keys), *script_keys, *args
            )
        except NoScriptError:
            return script(keys=list(script_keys), args=list(args))

    def _run_replicated(self, script: Any, script_keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a script, then WAIT on the same connection until enough replicas hold its writes."""
        for _ in range(2):
            pipe = self.client.pipeline(transaction=False)
            pipe.execute_command("EVALSHA", script.sha, len(script_keys), *script_keys, *args)
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
            try:
                result, replicas = pipe.execute()
            except NoScriptError:
                self.client.script_load(script.script)  # nothing ran; load it and send again
                continue
            except ResponseError as exc:
                # The pipeline prefixes the script's own error ("Command # 1 (...) caused error: ").
                raise type(exc)(str(exc).rpartition("caused error: ")[2]) from exc
            if int(replicas) < self.wait_replicas:
                raise UnavailableError("The queue store could not replicate the change.", retry_after=self.retry_after)
            return result
        raise UnavailableError("The queue store could not load its scripts.", retry_after=self.retry_after)

    def _known_for(self, event_id: str) -> _Known:
        known = self._known.get(event_id)
        if known is None:
            row = self.ledger.get(event_id)
            known = _Known() if row is None else _Known(row.epoch, row.generation)
            self._known[event_id] = known
        return known

    def _call(
        self,
        name: str,
        event_id: str,
        args: Callable[[_Known], Sequence[Any]],
        *,
        create: bool,
        extra_keys: Sequence[str] = (),
    ) -> Any:
        """Run a script with the identity check; handle a failed check and try again.

        ``create``: an event the ledger does not know yet gets its identity (writes); reads raise _NoState.
        """
        script_keys = (*keys.event_keys(event_id), *extra_keys) if extra_keys else keys.event_keys(event_id)
        for _attempt in range(4):
            known = self._known_for(event_id)
            try:
                return self._run(name, script_keys, [known.epoch, *args(known)])
            except ResponseError as exc:
                reason = _lost_reason(exc)
                if reason is None:
                    raise
                self._on_failed_check(event_id, known, reason, create)
        raise StoreLostError(retry_after=self.retry_after)

    def _on_failed_check(self, event_id: str, known: _Known, reason: str, create: bool) -> None:
        row = self.ledger.get(event_id)
        if row is not None and row.epoch != known.epoch:
            self._known[event_id] = _Known(row.epoch, row.generation)  # another process moved on; retry
            return
        if row is None and reason == "missing" and not create:
            if not self.client.hexists(keys.counters(event_id), "queue"):
                raise _NoState
            # Queue data from before the ledger existed: adopt it (below), so its places stay readable.
        self.recover(event_id, reason=reason)

    def _deadline_ms(self) -> int:
        """A moment on the Redis server's clock after which this join's client has given up."""
        now = time.time()
        if self._offset is None or now - self._offset[0] > CLOCK_OFFSET_SECONDS:
            before = time.time()
            seconds, micros = self.client.time()
            after = time.time()
            local_ms = (before + after) * 500.0
            self._offset = (after, seconds * 1000.0 + micros / 1000.0 - local_ms)
        return int(time.time() * 1000.0 + self._offset[1]) + self.join_deadline_ms

    def _reserve(self, event_id: str, known: _Known, now: int) -> None:
        """Reserve the next block of positions in the ledger, then let Redis use it."""
        found = self.client.hmget(keys.counters(event_id), ["queue", "limit"])
        target = max(_int(found[0]), _int(found[1])) + self.block_size
        reserved = self.ledger.reserve(event_id, known.epoch, target, now)
        if reserved is None:
            self._known.pop(event_id, None)  # the epoch moved on; the next attempt re-reads it
            return
        self._call("extend", event_id, lambda _k: [reserved], create=True)

    # -- request ids at rest (idp.queue.at_rest) ---------------------------------------------------

    def _lookup(self, request_id: str) -> list[bytes]:
        """Script arguments that find a place: the request id's hash, and its raw bytes for older entries."""
        return [at_rest.redis_tag(self.lookup, request_id), at_rest.raw_bytes(request_id)]

    def _joined(self, event_id: str, request_id: str, idempotency_key: str) -> tuple[bytes, bytes]:
        """A new join's hash, and what the idempotency hash keeps for it (b"" without a key)."""
        tag = at_rest.redis_tag(self.lookup, request_id)
        if not idempotency_key:
            return tag, b""
        return tag, tag + at_rest.seal(self.lookup, event_id, idempotency_key, tag, request_id)

    def _kept_request_id(self, event_id: str, idempotency_key: str, kept: bytes) -> str:
        """The request id an idempotency record holds (16 raw bytes when an earlier release wrote it)."""
        if len(kept) == 16:
            return str(uuid.UUID(bytes=kept))
        return at_rest.unseal(self.lookup, event_id, idempotency_key, kept[:16], kept[16:32])

    # -- operations ------------------------------------------------------------------------------

    @_unavailable
    def enqueue(self, event_id: str, request_id: str, now: int, idempotency_key: str | None) -> Entry:
        if not idempotency_key:
            deadline = self._deadline_ms() if self.join_deadline_ms > 0 else 0
            try:
                return self._joins.submit(event_id, _Join(request_id, now, deadline))
            except CoalesceInterrupted as exc:
                # The call carrying this join was cut off in the process that ran it (its greenlet or
                # thread was stopped): like a call whose answer never came, the join may or may not stand.
                raise UnavailableError(
                    "The queue store call was interrupted; the join may not have been made.",
                    retry_after=self.retry_after,
                ) from exc
        ikey = idempotency_key
        for _attempt in range(4):
            deadline = self._deadline_ms() if self.join_deadline_ms > 0 else 0
            made: list[str] = []

            def args(known: _Known, deadline: int = deadline, made: list[str] = made) -> list[Any]:
                rid = tagged_request_id(request_id, known.generation)
                made.append(rid)
                tag, kept = self._joined(event_id, rid, ikey)
                return [tag, now, ikey, deadline, kept]

            try:
                found, kept, pos, entry_time = self._call("enqueue", event_id, args, create=True)
            except ResponseError as exc:
                message = str(exc)
                if message.startswith("IDPBLOCK"):
                    self._reserve(event_id, self._known_for(event_id), now)
                    continue
                if message.startswith("IDPLATE"):
                    raise UnavailableError(
                        "The queue store answered too late; the join was not made.", retry_after=self.retry_after
                    ) from exc
                raise
            rid = self._kept_request_id(event_id, ikey, bytes(kept)) if int(found) else made[-1]
            return Entry(rid, int(pos), int(entry_time))
        raise UnavailableError("The queue store could not reserve positions.", retry_after=self.retry_after)

    def _enqueue_batch(self, event_id: str, joins: Sequence[_Join]) -> list[Entry | BaseException]:
        """Joins without an idempotency key, in one call (enqueue_many.lua): an outcome for each, in order."""
        outcomes: list[Entry | BaseException | None] = [None] * len(joins)
        todo = list(range(len(joins)))
        # A call may cross several reserved blocks (more joins than a block holds): a round that placed or
        # settled a join does not count against the attempts, only one that got nowhere does.
        attempts = 0
        while attempts < 4:
            made: dict[int, str] = {}

            def args(known: _Known, todo: list[int] = todo, made: dict[int, str] = made) -> list[Any]:
                out: list[Any] = [len(todo)]
                for i in todo:
                    rid = tagged_request_id(joins[i].request_id, known.generation)
                    made[i] = rid
                    out += (at_rest.redis_tag(self.lookup, rid), joins[i].now, joins[i].deadline)
                return out

            try:
                flat = self._call("enqueue_many", event_id, args, create=True)
            except Exception as exc:
                if len(todo) == len(joins):
                    raise  # nothing made yet: the call's failure is every join's
                # Joins before these have their places, acknowledged when this returns: a failure from here
                # on is the outcome of the joins still to make, never theirs (a 503 for a place that stands).
                for i in todo:
                    outcomes[i] = exc
                break
            blocked: list[int] = []
            for k, i in enumerate(todo):
                status, pos, entry_time = int(flat[3 * k]), int(flat[3 * k + 1]), int(flat[3 * k + 2])
                if status == 0:
                    outcomes[i] = Entry(made[i], pos, entry_time)
                elif status == 1:
                    outcomes[i] = UnavailableError(
                        "The queue store answered too late; the join was not made.", retry_after=self.retry_after
                    )
                else:
                    blocked.append(i)
            if not blocked:
                break
            attempts = attempts + 1 if len(blocked) == len(todo) else 0
            try:
                self._reserve(event_id, self._known_for(event_id), max(joins[i].now for i in blocked))
            except Exception as exc:
                if len(blocked) == len(joins):
                    raise  # as above: the blocked joins fail, the ones placed stand
                for i in blocked:
                    outcomes[i] = exc
                break
            todo = blocked
        else:
            for i in todo:
                outcomes[i] = UnavailableError(
                    "The queue store could not reserve positions.", retry_after=self.retry_after
                )
        return [o if o is not None else RuntimeError("a join had no outcome") for o in outcomes]

    @_unavailable
    def check(self, event_id: str) -> None:
        """Raise unless the event's Redis state is the one the database knows (StoreLostError, 503)."""
        try:
            self._call("entry", event_id, lambda _k: [bytes(16), b""], create=False)
        except _NoState:
            return

    def _lost_or_none(self, event_id: str, request_id: str) -> None:
        """Raise PlaceLostError for a request id of an earlier store generation that is nowhere now."""
        generation = generation_of(request_id)
        if 0 < generation < self._known_for(event_id).generation and self._pending_value(event_id, request_id) is None:
            raise PlaceLostError()

    @_unavailable
    def entry(self, event_id: str, request_id: str) -> Entry | None:
        lookup = self._lookup(request_id)
        try:
            found = self._call("entry", event_id, lambda _k: lookup, create=False)
        except _NoState:
            return None
        if not found:
            self._lost_or_none(event_id, request_id)
            return None
        return Entry(request_id, int(found[0]), int(found[1]))

    @_unavailable
    def counters(self, event_id: str) -> Counters:
        for _attempt in range(2):
            values = self.client.hmget(keys.counters(event_id), [*_COUNTER_FIELDS, "epoch"])
            epoch = _text(values[-1])
            known = self._known_for(event_id)
            if epoch == known.epoch or (epoch is None and known.epoch == "" and values[0] is None):
                return Counters(*(_int(v) for v in values[:-1]))
            try:  # a cheap checked script settles it: refreshes what we know, or detects a loss
                self._call("entry", event_id, lambda _k: [bytes(16), b""], create=False)
            except _NoState:
                return Counters()
        raise StoreLostError(retry_after=self.retry_after)

    def _note_serving(self, event_id: str, serving: int) -> None:
        try:
            self.ledger.note_serving(event_id, serving)
        except (UnavailableError, SQLAlchemyError):
            log.warning("could not record the serving counter in the database", extra={"event_id": event_id})

    @_unavailable
    def increment_serving(self, event_id: str, by: int, now: int) -> int:
        try:
            serving = int(self._call("increment", event_id, lambda _k: [by, now], create=True))
        except ResponseError as exc:
            if "overflow" in str(exc):
                raise CounterOverflowError() from exc
            raise
        self._note_serving(event_id, serving)
        return serving

    @_unavailable
    def increment_serving_once(self, event_id: str, by: int, now: int, mark: str) -> tuple[int, bool]:
        try:
            serving, applied = self._call(
                "increment_once",
                event_id,
                lambda _k: [by, now, mark, MARK_RETENTION_SECONDS],
                create=True,
                extra_keys=[keys.serving_marks(event_id)],
            )
        except ResponseError as exc:
            if "overflow" in str(exc):
                raise CounterOverflowError() from exc
            raise
        if int(applied):
            self._note_serving(event_id, int(serving))
        return int(serving), bool(int(applied))

    @_unavailable
    def status(self, event_id: str, request_id: str, now: int, policy: ExpiryPolicy, claim: bool) -> PlaceStatus:
        lookup = self._lookup(request_id)
        try:
            state, pos, entry_time, serving, admitted, expires_in, first = self._call(
                "status",
                event_id,
                lambda _k: [*lookup, now, 1 if policy.enabled else 0, policy.period, 1 if claim else 0],
                create=False,
            )
        except _NoState:
            return PlaceStatus(PlaceState.UNKNOWN)
        place_state = PlaceState(int(state))
        if place_state is PlaceState.UNKNOWN:
            self._lost_or_none(event_id, request_id)
            return PlaceStatus(PlaceState.UNKNOWN)
        return PlaceStatus(
            state=place_state,
            entry=Entry(request_id, int(pos), int(entry_time)),
            serving=int(serving),
            admitted_at=None if int(admitted) < 0 else int(admitted),
            expires_in=None if int(expires_in) < 0 else int(expires_in),
            first_claim=bool(int(first)),
        )

    @_unavailable
    def sweep(self, event_id: str, now: int, policy: ExpiryPolicy) -> SweepResult:
        try:
            unclaimed, max_expired, serving, previous = self._call(
                "sweep",
                event_id,
                lambda _k: [now, policy.period, 1 if policy.incr_serving_on_expiry else 0],
                create=False,
            )
        except _NoState:
            return SweepResult(0, 0, 0, 0)
        result = SweepResult(int(unclaimed), int(max_expired), int(serving), int(previous))
        if result.serving != result.previous_serving:
            self._note_serving(event_id, result.serving)
        return result

    @_unavailable
    def record_session(self, event_id: str, outcome: int) -> None:
        self.client.hincrby(keys.counters(event_id), "completed" if outcome == 1 else "abandoned", 1)

    @_unavailable
    def reset(self, event_id: str) -> None:
        self.ledger.delete(event_id)
        self._known.pop(event_id, None)
        # UNLINK frees the (possibly huge) structures in the background; the event starts over at once.
        self.client.unlink(*keys.event_keys(event_id), keys.pending(event_id))

    @_unavailable
    def ping(self) -> None:
        self.client.ping()

    def close(self) -> None:
        """Close this store's connections to Redis."""
        if self._lean is not None:
            self._lean.close()
        self.client.close()

    # -- the pre-queue and automatic admission ---------------------------------------------------
    #
    # Pre-queue request ids carry the store generation as joins' do, so an entry lost with the store
    # answers 410 place_lost. The pending hash keeps the request id's hash (field) and the public entry id
    # with the join time (value); the draw orders entries by their entry ids.

    @staticmethod
    def _pending(request_id: str, value: bytes | str) -> Pending:
        text = value.decode() if isinstance(value, bytes) else value
        entry_id, _, joined_at = text.partition(":")
        return Pending(request_id, entry_id, int(joined_at or 0))

    @_unavailable
    def enqueue_pending(
        self,
        event_id: str,
        request_id: str,
        entry_id_of: Callable[[str], str],
        now: int,
        idempotency_key: str | None,
    ) -> Pending | None:
        ikey = idempotency_key or ""
        made: list[str] = []

        def args(known: _Known) -> list[Any]:
            rid = tagged_request_id(request_id, known.generation)
            made.append(rid)
            tag, kept = self._joined(event_id, rid, ikey)
            return [tag, entry_id_of(rid), now, ikey, kept]

        result = self._call("enqueue_pending", event_id, args, create=True, extra_keys=[keys.pending(event_id)])
        kind = int(result[0])
        if kind == 0:
            return None
        rid = made[-1] if kind == 1 else self._kept_request_id(event_id, ikey, bytes(result[1]))
        return self._pending(rid, result[2])

    def _pending_value(self, event_id: str, request_id: str) -> bytes | str | None:
        values: list[bytes | str | None] = self.client.hmget(keys.pending(event_id), self._lookup(request_id))
        return next((v for v in values if v is not None), None)

    @_unavailable
    def pending(self, event_id: str, request_id: str) -> Pending | None:
        value = self._pending_value(event_id, request_id)
        return None if value is None else self._pending(request_id, value)

    def _pending_fields(self, event_id: str) -> dict[str, bytes]:
        """Entry id -> the entry's field in the pending hash."""
        return {
            self._pending("", value).entry_id: bytes(field)
            for field, value in self.client.hscan_iter(keys.pending(event_id), count=1000)
        }

    @_unavailable
    def pending_entries(self, event_id: str) -> list[Pending]:
        return [
            self._pending("", value) for _field, value in self.client.hscan_iter(keys.pending(event_id), count=1000)
        ]

    @_unavailable
    def pending_positions(self, event_id: str) -> dict[str, int]:
        fields = list(self._pending_fields(event_id).items())
        positions: dict[str, int] = {}
        for low in range(0, len(fields), 1000):
            chunk = fields[low : low + 1000]
            values = self.client.hmget(keys.places(event_id), [field for _entry, field in chunk])
            positions.update((entry, _int(value)) for (entry, _field), value in zip(chunk, values, strict=True))
        return positions

    @_unavailable
    def draw_state(self, event_id: str) -> DrawState:
        pipe = self.client.pipeline(transaction=False)
        pipe.hlen(keys.pending(event_id))
        pipe.hmget(keys.counters(event_id), ["drawn_at", "draw_first"])
        entrants, (drawn_at, first) = pipe.execute()
        return DrawState(int(entrants), None if drawn_at is None else int(drawn_at), _int(first))

    @_unavailable
    def draw(self, event_id: str, ordered_entry_ids: list[str], now: int) -> DrawOutcome:
        fields = self._pending_fields(event_id)
        if len(set(ordered_entry_ids)) != len(ordered_entry_ids) or any(e not in fields for e in ordered_entry_ids):
            return DrawOutcome.STALE
        members = [fields[entry] for entry in ordered_entry_ids]
        for _attempt in range(4):
            result = self._call(
                "draw",
                event_id,
                lambda _k: [now, len(members), *members],
                create=True,
                extra_keys=[keys.pending(event_id)],
            )
            if int(result[0]) != 4:
                return DrawOutcome(int(result[0]))
            # The drawn positions must be reserved in the database first, as joins' positions are.
            known = self._known_for(event_id)
            reserved = self.ledger.reserve(event_id, known.epoch, int(result[1]) + self.block_size, now)
            if reserved is None:
                self._known.pop(event_id, None)
                continue
            self._extend(event_id, reserved)
        raise UnavailableError("The queue store could not reserve positions.", retry_after=self.retry_after)

    def _extend(self, event_id: str, limit: int) -> None:
        self._call("extend", event_id, lambda _k: [limit], create=True)

    @_unavailable
    def admit_up_to(self, event_id: str, cap: int, by: int, now: int, mark: str) -> tuple[int, int]:
        serving, admitted = self._call(
            "admit_up_to",
            event_id,
            lambda _k: [cap, by, now, mark, MARK_RETENTION_SECONDS],
            create=True,
            extra_keys=[keys.serving_marks(event_id)],
        )
        if int(admitted):
            self._note_serving(event_id, int(serving))
        return int(serving), int(admitted)

    # -- loss detection and recovery -------------------------------------------------------------

    def _inspect(self, event_id: str) -> _Found:
        v = self._run("inspect", keys.event_keys(event_id), [])
        server_run = str(_text(v[9]))
        return _Found(
            epoch=_text(v[0]),
            run=_text(v[1]),
            server_run=server_run,
            queue_raw=_text(v[2]),
            limit=_int(v[3]),
            serving=_int(v[4]),
            tokens=_int(v[5]),
            lost=_int(v[6]),
            gaps=_text(v[7]) or "",
            max_expired=_int(v[8]),
        )

    def _install(self, event_id: str, found: _Found, epoch: str, top: int, serving: int, gaps: str, **kw: Any) -> bool:
        args = [
            found.epoch or "",
            found.queue_raw or "",
            epoch,
            top,
            serving,
            gaps,
            int(time.time()),
            kw.get("tokens", found.tokens),
            kw.get("lost", found.lost),
            "1" if kw.get("clear") else "0",
        ]
        return bool(int(self._run("install", keys.event_keys(event_id), args)))

    @_unavailable
    def recover(self, event_id: str, *, reason: str = "requested", manual: bool = False) -> str:
        """Make the event's Redis state safe to use again; return "initialized", "current" or "recovered".

        Automatic (``manual`` false) after a failed identity check: a first use is initialized; a loss of
        the current state (missing, or a server restart) is recovered when ``auto_recover`` is on, and the
        operation that found it still answers 503 (StoreLostError); anything else marks the event lost
        until ``idp queue recover EVENT`` (``manual``), which recovers whatever it finds.
        """
        now = int(time.time())
        with self.ledger.locked(event_id) as (session, row):
            found = self._inspect(event_id)
            if row is None:
                # First use, or data from before the ledger existed: adopt what is there.
                top = max(found.queue, found.limit)
                epoch = new_epoch()
                created = self.ledger.create(session, event_id, epoch, top, found.serving, now)
                if created.epoch != epoch:
                    # Another process made the row first (PostgreSQL cannot lock a row not there yet: the
                    # insert waited for its commit) and installed its identity: use that one, install none.
                    self._known[event_id] = _Known(created.epoch, created.generation)
                    return "current"
                if not self._install(event_id, found, epoch, top, found.serving, found.gaps):
                    raise StoreLostError(retry_after=self.retry_after)
                self._known[event_id] = _Known(epoch, 1)
                return "initialized"
            if found.epoch == row.epoch and found.run == found.server_run:
                self._known[event_id] = _Known(row.epoch, row.generation)
                return "current"
            foreign = found.epoch is not None and found.epoch != row.epoch
            if not manual and (row.status == LOST or not self.auto_recover or foreign):
                if row.status != LOST:
                    row.status = LOST
                    row.losses += 1
                    row.last_loss_at = now
                    row.last_loss_reason = reason
                    row.updated_at = now
                    log.error(
                        "queue store lost data: %s; the event refuses joins until `idp queue recover %s`",
                        _REASONS.get(reason, reason),
                        event_id,
                        extra={"event_id": event_id, "reason": reason},
                    )
                raise StoreLostError(retry_after=self.retry_after)
            recovered = self._recover_locked(session, row, found, event_id, reason, foreign, now)
        log.error(
            "queue store lost data: %s; recovered: positions %d to %d skipped (%d kept), generation %d",
            _REASONS.get(reason, reason),
            recovered.kept + 1,
            recovered.top,
            recovered.kept,
            recovered.generation,
            extra={"event_id": event_id, "reason": reason},
        )
        if manual:
            return "recovered"
        raise StoreLostError(retry_after=self.retry_after)

    def _recover_locked(
        self, session: Any, row: Any, found: _Found, event_id: str, reason: str, foreign: bool, now: int
    ) -> _Recovered:
        kept = found.queue if found.epoch is not None and not foreign else 0
        top = max(row.reserved, found.queue, found.limit)
        facts = self.ledger.tokens(session, event_id, kept + 1, top)
        serving = max(found.serving if kept else 0, row.serving, facts.max_position)
        tokens = max(found.tokens if kept else 0, facts.count)
        lost_now = (top - kept) - facts.in_range if top > kept else 0
        gaps = [g for g in (found.gaps if kept else "").split(";") if g]
        if top > kept:
            gaps.append(f"{kept + 1}-{top}")
        epoch = new_epoch()
        lost_total = (found.lost if kept else 0) + lost_now
        if not self._install(
            event_id, found, epoch, top, serving, ";".join(gaps), tokens=tokens, lost=lost_total, clear=foreign
        ):
            raise StoreLostError(retry_after=self.retry_after)
        if kept:
            self._repair_claims(session, event_id, found.max_expired + 1, kept)
        was_counted = row.status == LOST
        row.epoch = epoch
        row.generation += 1
        row.reserved = top
        row.serving = max(row.serving, serving)
        row.status = OK
        if not was_counted:
            row.losses += 1
        row.lost_positions += max(0, top - kept)
        row.last_loss_at = now
        row.last_loss_reason = reason if not was_counted else row.last_loss_reason
        row.updated_at = now
        self._known[event_id] = _Known(epoch, row.generation)
        return _Recovered(kept, top, row.generation)

    def _repair_claims(self, session: Any, event_id: str, low: int, high: int) -> None:
        """Mark kept positions that hold a token record as claimed (a rolled-back store forgot some)."""
        pipe = self.client.pipeline(transaction=False)
        pending = 0
        for position in self.ledger.token_positions(session, event_id, low, high):
            pipe.setbit(keys.claimed(event_id), position, 1)
            pending += 1
            if pending >= 1000:
                pipe.execute()
                pending = 0
        if pending:
            pipe.execute()

    # -- reporting -------------------------------------------------------------------------------

    def ledger_row(self, event_id: str) -> LedgerRow | None:
        return self.ledger.get(event_id)


@dataclass(frozen=True)
class _Recovered:
    kept: int
    top: int
    generation: int
