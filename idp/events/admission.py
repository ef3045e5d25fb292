"""Automatic admission: room modes at the door and the targets the worker holds each tick.

An event with ``max_active`` and/or ``max_per_minute`` admits by itself. A session is *active* from
admission until it is finished (``update_session``, the MaxSize report, OIDC logout) or its access
token expires; an admitted place that has not claimed its token yet counts as active until its claim
window ends (the expiry sweep then counts it expired). Everything is read from the queue store and the
database at the moment of the decision, never from a per-process cache.

Each tick the worker (``idp.worker.admitting``) admits ``min(rate budget, max_active - active)``
waiting visitors, never a negative number, with the mark ``target:<second>`` so a tick retried after
a crash (or run by a second worker) admits nobody twice. The rate budget spreads ``max_per_minute``
evenly over the seconds of a minute: second ``s`` may admit ``floor(R*(s+1)/60) - floor(R*s/60)``;
seconds a worker missed (a restart) are made up, at most ten seconds' worth at once.

Room modes at the door: ``passthrough`` admits every join at once; ``when_busy`` admits a join at
once while the room is under ``max_active`` (the per-minute target is held by the worker's ticks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, select, update

from idp.clock import Clock
from idp.queue.engine import INT64_MAX, Counters, Entry, QueueEngine
from idp.storage.db import Database
from idp.storage.models import TokenRecord

if TYPE_CHECKING:
    from idp.events.service import EventConfig

CATCH_UP_SECONDS = 10


def active_tokens(db: Database, event_id: str, now: int, idle_seconds: int | None = None) -> int:
    """Sessions holding a token: not finished, not expired, and not idle for ``idle_seconds``."""
    stmt = (
        select(func.count())
        .select_from(TokenRecord)
        .where(TokenRecord.event_id == event_id, TokenRecord.expires_at > now, TokenRecord.session_status == 0)
    )
    if idle_seconds is not None:
        stmt = stmt.where(func.coalesce(TokenRecord.last_seen_at, TokenRecord.issued_at) >= now - idle_seconds)
    with db.session(readonly=True) as session:
        return int(session.execute(stmt).scalar_one())


def admitted_unclaimed(counters: Counters) -> int:
    """Admitted places that have not claimed their token and have not expired (as of the last sweep)."""
    admitted = min(counters.serving, counters.queue)
    return max(0, admitted - counters.tokens - counters.expired - counters.lost)


def active_sessions(db: Database, counters: Counters, event_id: str, now: int, idle_seconds: int | None = None) -> int:
    return active_tokens(db, event_id, now, idle_seconds) + admitted_unclaimed(counters)


class SessionIdle:
    """Sessions of an event with ``session_idle_seconds`` end after that long without a ``/verify`` call.

    ``/verify`` renews the session (as Cloudflare renews its cookie). Each process writes a renewal at
    most every tenth of the idle time per session: a session it renewed that recently cannot be idle.
    """

    def __init__(self, db: Database, clock: Clock, max_entries: int = 100_000) -> None:
        self.db = db
        self.clock = clock
        self.max_entries = max_entries
        self._renewed: dict[str, int] = {}

    def seen(self, event: EventConfig, request_id: str) -> bool:
        """Renew the session; False when it had already been idle too long (it has ended).

        ``request_id`` is the tokens row key: the request id's lookup tag (idp.storage.hidden_ids)."""
        idle = event.session_idle_seconds
        if idle is None:
            return True
        now = int(self.clock.now())
        last = self._renewed.get(request_id)
        if last is not None and 0 <= now - last < max(1, idle // 10):
            return True
        with self.db.session() as session:
            renewed = session.execute(
                update(TokenRecord)
                .where(
                    TokenRecord.request_id == request_id,
                    TokenRecord.event_id == event.event_id,
                    func.coalesce(TokenRecord.last_seen_at, TokenRecord.issued_at) >= now - idle,
                )
                .values(last_seen_at=now)
            ).rowcount  # type: ignore[attr-defined]
        if renewed != 1:
            self._renewed.pop(request_id, None)
            return False
        if len(self._renewed) >= self.max_entries:
            self._renewed.clear()
        self._renewed[request_id] = now
        return True


def rate_budget(per_minute: int, second: int, previous_second: int | None) -> int:
    """Admissions allowed for the seconds after ``previous_second`` up to and including ``second``."""
    if previous_second is None or previous_second >= second:
        previous_second = second - 1
    previous_second = max(previous_second, second - CATCH_UP_SECONDS)

    def allowed_by(s: int) -> int:
        minute, within = divmod(s, 60)
        return minute * per_minute + (per_minute * (within + 1)) // 60

    return max(0, allowed_by(second) - allowed_by(previous_second))


def admit_at_door(engine: QueueEngine, db: Database, event: EventConfig, entry: Entry) -> int:
    """Admit a fresh join at once where the room mode says so; returns how many were admitted."""
    if event.mode == "passthrough":
        return engine.admit_up_to(event.event_id, entry.position, INT64_MAX)[1]
    if event.mode != "when_busy":
        return 0
    if event.max_active is None:
        # Without a capacity target the room is never busy at the door; the worker holds the rate.
        if event.max_per_minute is not None:
            return 0
        return engine.admit_up_to(event.event_id, entry.position, INT64_MAX)[1]
    counters = engine.counters(event.event_id)
    now = int(engine.clock.now())
    free = event.max_active - active_sessions(db, counters, event.event_id, now, event.session_idle_seconds)
    if free <= 0:
        return 0
    cap = min(entry.position, counters.serving + free)
    return engine.admit_up_to(event.event_id, cap, INT64_MAX)[1]
