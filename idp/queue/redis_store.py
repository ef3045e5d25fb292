"""The Redis queue store: every operation is one Lua script on one event's keys (one cluster slot).

Memory per waiting visitor is one hash field (the 16-byte request id) with an integer position, plus one
bit in the claimed bitmap; entry times are kept once per second of arrivals, not per visitor.
"""

from __future__ import annotations

import functools
import uuid
from importlib import resources
from typing import Any

import redis
from redis.exceptions import NoScriptError, ResponseError

from idp.queue import keys
from idp.queue.engine import (
    CounterOverflowError,
    Counters,
    DrawOutcome,
    DrawState,
    Entry,
    ExpiryPolicy,
    Pending,
    PlaceState,
    PlaceStatus,
    SweepResult,
)
from idp.storage.outage import OUTAGE_CANDIDATES, unavailable_error

# Marks of automatic increments are remembered this long (a restarted worker retries within minutes).
MARK_RETENTION_SECONDS = 7 * 86400
_COUNTER_FIELDS = ("queue", "serving", "tokens", "expired", "completed", "abandoned", "max_expired")


def _script_source(name: str) -> str:
    folder = resources.files("idp.queue") / "scripts"
    common = (folder / "common.lua").read_text(encoding="utf-8")
    return common + "\n" + (folder / f"{name}.lua").read_text(encoding="utf-8")


def _unavailable(func: Any) -> Any:
    @functools.wraps(func)
    def wrapper(self: RedisQueueStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(self, *args, **kwargs)
        except OUTAGE_CANDIDATES as exc:
            unavailable = unavailable_error(exc, self.retry_after)
            if unavailable is None:
                raise
            raise unavailable from exc

    return wrapper


def _rid_bytes(request_id: str) -> bytes:
    return uuid.UUID(request_id).bytes


class RedisQueueStore:
    def __init__(self, client: redis.Redis, retry_after: int = 5) -> None:
        self.client = client
        self.retry_after = retry_after
        self._scripts = {
            name: client.register_script(_script_source(name))
            for name in (
                "enqueue",
                "entry",
                "increment",
                "increment_once",
                "status",
                "sweep",
                "enqueue_pending",
                "draw",
                "admit_up_to",
            )
        }

    @classmethod
    def from_url(cls, url: str, retry_after: int = 5) -> RedisQueueStore:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30)
        return cls(client, retry_after=retry_after)

    def _run(self, name: str, event_id: str, *args: Any, extra_key: str | None = None) -> Any:
        # EVALSHA straight through execute_command: the Script wrapper costs a join noticeable
        # CPU. NOSCRIPT means the script did not run, so loading it and calling again is safe.
        script = self._scripts[name]
        event_keys = keys.event_keys(event_id)
        if extra_key is not None:
            event_keys = [*event_keys, extra_key]
        try:
            return self.client.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", script.sha, len(event_keys), *event_keys, *args
            )
        except NoScriptError:
            return script(keys=event_keys, args=list(args))

    @_unavailable
    def enqueue(self, event_id: str, request_id: str, now: int, idempotency_key: str | None) -> Entry:
        rid, pos, entry_time = self._run("enqueue", event_id, _rid_bytes(request_id), now, idempotency_key or "")
        return Entry(str(uuid.UUID(bytes=bytes(rid))), int(pos), int(entry_time))

    @_unavailable
    def entry(self, event_id: str, request_id: str) -> Entry | None:
        found = self._run("entry", event_id, _rid_bytes(request_id))
        if not found:
            return None
        return Entry(request_id, int(found[0]), int(found[1]))

    @_unavailable
    def counters(self, event_id: str) -> Counters:
        values = self.client.hmget(keys.counters(event_id), _COUNTER_FIELDS)
        return Counters(*(int(v) if v is not None else 0 for v in values))

    @_unavailable
    def increment_serving(self, event_id: str, by: int, now: int) -> int:
        try:
            return int(self._run("increment", event_id, by, now))
        except ResponseError as exc:
            if "overflow" in str(exc):
                raise CounterOverflowError() from exc
            raise

    @_unavailable
    def increment_serving_once(self, event_id: str, by: int, now: int, mark: str) -> tuple[int, bool]:
        try:
            serving, applied = self._scripts["increment_once"](
                keys=[*keys.event_keys(event_id), keys.serving_marks(event_id)],
                args=[by, now, mark, MARK_RETENTION_SECONDS],
            )
        except ResponseError as exc:
            if "overflow" in str(exc):
                raise CounterOverflowError() from exc
            raise
        return int(serving), bool(int(applied))

    @_unavailable
    def status(self, event_id: str, request_id: str, now: int, policy: ExpiryPolicy, claim: bool) -> PlaceStatus:
        state, pos, entry_time, serving, admitted, expires_in, first = self._run(
            "status",
            event_id,
            _rid_bytes(request_id),
            now,
            1 if policy.enabled else 0,
            policy.period,
            1 if claim else 0,
        )
        place_state = PlaceState(int(state))
        if place_state is PlaceState.UNKNOWN:
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
        unclaimed, max_expired, serving, previous = self._run(
            "sweep", event_id, now, policy.period, 1 if policy.incr_serving_on_expiry else 0
        )
        return SweepResult(int(unclaimed), int(max_expired), int(serving), int(previous))

    @_unavailable
    def record_session(self, event_id: str, outcome: int) -> None:
        self.client.hincrby(keys.counters(event_id), "completed" if outcome == 1 else "abandoned", 1)

    @_unavailable
    def reset(self, event_id: str) -> None:
        # UNLINK frees the (possibly huge) structures in the background; the event starts over at once.
        self.client.unlink(*keys.event_keys(event_id), keys.pending(event_id))

    # -- the pre-queue and automatic admission ---------------------------------------------------

    @staticmethod
    def _pending(request_id: str, value: bytes | str) -> Pending:
        text = value.decode() if isinstance(value, bytes) else value
        entry_id, _, joined_at = text.partition(":")
        return Pending(request_id, entry_id, int(joined_at or 0))

    @_unavailable
    def enqueue_pending(
        self, event_id: str, request_id: str, entry_id: str, now: int, idempotency_key: str | None
    ) -> Pending | None:
        result = self._run(
            "enqueue_pending",
            event_id,
            _rid_bytes(request_id),
            entry_id,
            now,
            idempotency_key or "",
            extra_key=keys.pending(event_id),
        )
        if int(result[0]) == 0:
            return None
        return self._pending(str(uuid.UUID(bytes=bytes(result[1]))), result[2])

    @_unavailable
    def pending(self, event_id: str, request_id: str) -> Pending | None:
        value = self.client.hget(keys.pending(event_id), _rid_bytes(request_id))
        return None if value is None else self._pending(request_id, value)

    @_unavailable
    def pending_entries(self, event_id: str) -> list[Pending]:
        found: list[Pending] = []
        for rid, value in self.client.hscan_iter(keys.pending(event_id), count=1000):
            found.append(self._pending(str(uuid.UUID(bytes=bytes(rid))), value))
        return found

    @_unavailable
    def draw_state(self, event_id: str) -> DrawState:
        pipe = self.client.pipeline(transaction=False)
        pipe.hlen(keys.pending(event_id))
        pipe.hmget(keys.counters(event_id), ["drawn_at", "draw_first"])
        entrants, (drawn_at, first) = pipe.execute()
        return DrawState(int(entrants), None if drawn_at is None else int(drawn_at), int(first or 0))

    @_unavailable
    def draw(self, event_id: str, ordered_request_ids: list[str], now: int) -> DrawOutcome:
        rids = [_rid_bytes(r) for r in ordered_request_ids]
        result = self._run("draw", event_id, now, len(rids), *rids, extra_key=keys.pending(event_id))
        return DrawOutcome(int(result[0]))

    @_unavailable
    def admit_up_to(self, event_id: str, cap: int, by: int, now: int, mark: str) -> tuple[int, int]:
        serving, admitted = self._run(
            "admit_up_to", event_id, cap, by, now, mark, MARK_RETENTION_SECONDS, extra_key=keys.serving_marks(event_id)
        )
        return int(serving), int(admitted)

    @_unavailable
    def ping(self) -> None:
        self.client.ping()
