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
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError, ResponseError

from idp.errors import UnavailableError
from idp.queue import keys
from idp.queue.engine import (
    CounterOverflowError,
    Counters,
    Entry,
    ExpiryPolicy,
    PlaceState,
    PlaceStatus,
    SweepResult,
)
from idp.queue.redis_client import connect
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
    """The queue on Redis; ``wait_replicas`` > 0 acknowledges a join only once that many replicas hold it.

    With replicas (Sentinel), Redis replicates asynchronously: a join the primary answered may be lost
    when a replica is promoted, and its position handed out again. ``WAIT`` on the join's connection
    closes that gap: the join answers 503 (and may be retried) unless ``wait_replicas`` replicas
    confirmed it within ``wait_timeout_ms``; Sentinel promotes the replica with the most data.
    """

    def __init__(
        self,
        client: redis.Redis | RedisCluster,
        retry_after: int = 5,
        *,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 500,
    ) -> None:
        if wait_replicas and isinstance(client, RedisCluster):
            raise ValueError("waiting for replicas needs a single primary (redis:// or redis+sentinel://)")
        self.client = client
        self.retry_after = retry_after
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._scripts = {
            name: client.register_script(_script_source(name))
            for name in ("enqueue", "entry", "increment", "increment_once", "status", "sweep")
        }

    @classmethod
    def from_url(
        cls, url: str, retry_after: int = 5, *, wait_replicas: int = 0, wait_timeout_ms: int = 500
    ) -> RedisQueueStore:
        """A store on a single Redis, a Redis Cluster or a Sentinel-managed primary (``idp.queue.redis_client``)."""
        return cls(connect(url), retry_after=retry_after, wait_replicas=wait_replicas, wait_timeout_ms=wait_timeout_ms)

    def _run(self, name: str, event_id: str, *args: Any) -> Any:
        # EVALSHA straight through execute_command: the Script wrapper costs a join noticeable
        # CPU. NOSCRIPT means the script did not run, so loading it and calling again is safe.
        script = self._scripts[name]
        event_keys = keys.event_keys(event_id)
        try:
            return self.client.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", script.sha, len(event_keys), *event_keys, *args
            )
        except NoScriptError:
            return script(keys=event_keys, args=list(args))

    def _run_replicated(self, name: str, event_id: str, *args: Any) -> Any:
        """Run a script, then WAIT on the same connection until enough replicas hold its writes."""
        if not self.wait_replicas:
            return self._run(name, event_id, *args)
        script = self._scripts[name]
        event_keys = keys.event_keys(event_id)
        for _ in range(2):
            pipe = self.client.pipeline(transaction=False)
            pipe.execute_command("EVALSHA", script.sha, len(event_keys), *event_keys, *args)
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
            try:
                result, replicas = pipe.execute()
            except NoScriptError:
                self.client.script_load(script.script)  # nothing ran; load it and send again
                continue
            if int(replicas) < self.wait_replicas:
                raise UnavailableError("The queue store could not replicate the change.", retry_after=self.retry_after)
            return result
        raise UnavailableError("The queue store could not load its scripts.", retry_after=self.retry_after)

    @_unavailable
    def enqueue(self, event_id: str, request_id: str, now: int, idempotency_key: str | None) -> Entry:
        rid, pos, entry_time = self._run_replicated(
            "enqueue", event_id, _rid_bytes(request_id), now, idempotency_key or ""
        )
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
            return int(self._run_replicated("increment", event_id, by, now))
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
        self.client.unlink(*keys.event_keys(event_id))

    @_unavailable
    def ping(self) -> None:
        self.client.ping()
