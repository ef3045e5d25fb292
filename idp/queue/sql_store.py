"""The SQL queue store: every operation is one transaction serialised on the event's ``queue_state`` row.

Used for the embedded default (SQLite) and Redis-less deployments (PostgreSQL). Lookups go through
primary keys and unique indexes, so each operation costs O(log n) at worst. Rows keep request ids only
as keyed hashes (:mod:`idp.queue.at_rest`).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp.crypto import LookupKey
from idp.queue import at_rest
from idp.queue.engine import (
    INT64_MAX,
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
    admitted_at,
    is_expired,
    last_expired_position,
)
from idp.storage.db import Database
from idp.storage.models import PendingEntry, QueueDraw, QueueEntry, QueueState, ServingIssue, ServingMark


class SqlQueueStore:
    def __init__(self, db: Database, lookup: LookupKey) -> None:
        self.db = db
        self.lookup = lookup

    # -- request ids at rest ---------------------------------------------------------------------
    #
    # Hashes are computed before a transaction opens: the first one may read the lookup key from the
    # database, which must not wait on the transaction that needs it (SQLite has one writer).

    def _keys(self, request_id: str) -> list[str]:
        """What a row may hold for ``request_id``: its hash, or (rows of earlier releases) the id itself."""
        return [at_rest.sql_tag(self.lookup, request_id), request_id]

    def _stored(self, event_id: str, request_id: str, idempotency_key: str | None) -> tuple[str, str | None]:
        """A new row's ``request_id`` and ``request_seal`` columns."""
        tag = at_rest.sql_tag(self.lookup, request_id)
        if idempotency_key is None:
            return tag, None
        return tag, at_rest.seal(self.lookup, event_id, idempotency_key, tag, request_id).hex()

    def _kept(self, event_id: str, idempotency_key: str, stored: str, seal: str | None) -> str:
        """The request id of the row an earlier join with ``idempotency_key`` made."""
        if seal is None:  # a row of an earlier release: the id itself
            return stored
        return at_rest.unseal(self.lookup, event_id, idempotency_key, stored, bytes.fromhex(seal))

    # -- helpers ---------------------------------------------------------------------------------

    def _lock_state(self, session: Session, event_id: str) -> QueueState:
        """Return the event's state row, created if missing, locked for this transaction."""
        insert = pg_insert if session.bind is not None and session.bind.dialect.name == "postgresql" else sqlite_insert
        session.execute(insert(QueueState).values(event_id=event_id).on_conflict_do_nothing())
        stmt = select(QueueState).where(QueueState.event_id == event_id).with_for_update()
        return session.execute(stmt).scalar_one()

    @staticmethod
    def _issue_time(session: Session, event_id: str, position: int) -> int | None:
        stmt = (
            select(ServingIssue.issue_time)
            .where(ServingIssue.event_id == event_id, ServingIssue.serving_counter >= position)
            .order_by(ServingIssue.serving_counter)
            .limit(1)
        )
        return session.execute(stmt).scalar_one_or_none()

    @staticmethod
    def _entry_time(session: Session, event_id: str, position: int) -> int:
        stmt = select(QueueEntry.entry_time).where(QueueEntry.event_id == event_id, QueueEntry.position == position)
        return session.execute(stmt).scalar_one_or_none() or 0

    def _admitted_at(self, session: Session, event_id: str, position: int, entry_time: int | None = None) -> int:
        if entry_time is None:
            entry_time = self._entry_time(session, event_id, position)
        return admitted_at(entry_time, self._issue_time(session, event_id, position))

    @staticmethod
    def _record_issue(session: Session, state: QueueState, now: int) -> None:
        issue_time = max(now, state.last_issue_time)
        state.last_issue_time = issue_time
        session.add(ServingIssue(event_id=state.event_id, serving_counter=state.serving_counter, issue_time=issue_time))

    # -- operations ------------------------------------------------------------------------------

    def enqueue(self, event_id: str, request_id: str, now: int, idempotency_key: str | None) -> Entry:
        for _attempt in range(3):
            try:
                return self._enqueue_once(event_id, request_id, now, idempotency_key)
            except IntegrityError:
                # A concurrent join with the same idempotency key won; the next attempt finds it.
                continue
        raise RuntimeError("enqueue kept conflicting")  # pragma: no cover - needs three lost races

    def _enqueue_once(self, event_id: str, request_id: str, now: int, idempotency_key: str | None) -> Entry:
        stored, seal = self._stored(event_id, request_id, idempotency_key)
        with self.db.session() as session:
            if idempotency_key is not None:
                existing = session.execute(
                    select(QueueEntry).where(
                        QueueEntry.event_id == event_id, QueueEntry.idempotency_key == idempotency_key
                    )
                ).scalar_one_or_none()
                if existing is not None:
                    kept = self._kept(event_id, idempotency_key, existing.request_id, existing.request_seal)
                    return Entry(kept, existing.position, existing.entry_time)
            state = self._lock_state(session, event_id)
            state.queue_counter += 1
            state.last_entry_time = max(now, state.last_entry_time)
            entry = QueueEntry(
                event_id=event_id,
                position=state.queue_counter,
                request_id=stored,
                request_seal=seal,
                entry_time=state.last_entry_time,
                claimed=False,
                idempotency_key=idempotency_key,
            )
            session.add(entry)
            session.flush()
            return Entry(request_id, entry.position, entry.entry_time)

    def entry(self, event_id: str, request_id: str) -> Entry | None:
        candidates = self._keys(request_id)
        with self.db.session(readonly=True) as session:
            row = session.execute(
                select(QueueEntry.position, QueueEntry.entry_time).where(
                    QueueEntry.request_id.in_(candidates), QueueEntry.event_id == event_id
                )
            ).first()
            return None if row is None else Entry(request_id, row.position, row.entry_time)

    def counters(self, event_id: str) -> Counters:
        with self.db.session(readonly=True) as session:
            state = session.get(QueueState, event_id)
            if state is None:
                return Counters()
            return Counters(
                queue=state.queue_counter,
                serving=state.serving_counter,
                tokens=state.token_counter,
                expired=state.expired_counter,
                completed=state.completed_counter,
                abandoned=state.abandoned_counter,
                max_expired=state.max_expired,
            )

    def increment_serving(self, event_id: str, by: int, now: int) -> int:
        with self.db.session() as session:
            state = self._lock_state(session, event_id)
            if state.serving_counter + by > INT64_MAX:
                raise CounterOverflowError()
            state.serving_counter += by
            self._record_issue(session, state, now)
            return state.serving_counter

    def increment_serving_once(self, event_id: str, by: int, now: int, mark: str) -> tuple[int, bool]:
        with self.db.session() as session:
            state = self._lock_state(session, event_id)
            if session.get(ServingMark, (event_id, mark)) is not None:
                return state.serving_counter, False
            if state.serving_counter + by > INT64_MAX:
                raise CounterOverflowError()
            state.serving_counter += by
            self._record_issue(session, state, now)
            session.add(ServingMark(event_id=event_id, mark=mark, serving=state.serving_counter, applied_at=now))
            return state.serving_counter, True

    def status(self, event_id: str, request_id: str, now: int, policy: ExpiryPolicy, claim: bool) -> PlaceStatus:
        candidates = self._keys(request_id)
        with self.db.session(readonly=not claim) as session:
            row = session.execute(
                select(QueueEntry).where(QueueEntry.request_id.in_(candidates), QueueEntry.event_id == event_id)
            ).scalar_one_or_none()
            if row is None:
                return PlaceStatus(PlaceState.UNKNOWN)
            entry = Entry(request_id, row.position, row.entry_time)
            state = self._lock_state(session, event_id) if claim else session.get(QueueState, event_id)
            if claim:
                # The entry was read before the lock; a concurrent claim may have committed since.
                session.refresh(row)
            serving = state.serving_counter if state is not None else 0
            max_expired = state.max_expired if state is not None else 0
            if row.position > serving:
                return PlaceStatus(PlaceState.WAITING, entry, serving)
            admitted = self._admitted_at(session, event_id, row.position, row.entry_time)
            if row.claimed:
                return PlaceStatus(PlaceState.CLAIMED, entry, serving, admitted)
            expires_in = None
            if policy.enabled:
                if row.position <= max_expired or is_expired(now, admitted, policy.period):
                    return PlaceStatus(PlaceState.EXPIRED, entry, serving, admitted)
                expires_in = policy.period - (now - admitted)
            if claim:
                assert state is not None
                row.claimed = True
                state.token_counter += 1
                return PlaceStatus(PlaceState.CLAIMED, entry, serving, admitted, None, first_claim=True)
            return PlaceStatus(PlaceState.ADMITTED, entry, serving, admitted, expires_in)

    def sweep(self, event_id: str, now: int, policy: ExpiryPolicy) -> SweepResult:
        with self.db.session() as session:
            state = self._lock_state(session, event_id)
            previous = state.serving_counter
            start = state.max_expired
            limit = min(state.serving_counter, state.queue_counter)

            def expired(position: int) -> bool:
                return is_expired(now, self._admitted_at(session, event_id, position), policy.period)

            best = last_expired_position(start + 1, limit, expired)
            if best <= start:
                return SweepResult(0, start, previous, previous)
            claimed = session.execute(
                select(func.count())
                .select_from(QueueEntry)
                .where(
                    QueueEntry.event_id == event_id,
                    QueueEntry.position > start,
                    QueueEntry.position <= best,
                    QueueEntry.claimed.is_(True),
                )
            ).scalar_one()
            unclaimed = (best - start) - int(claimed)
            state.max_expired = best
            if unclaimed > 0:
                state.expired_counter += unclaimed
                if policy.incr_serving_on_expiry:
                    state.serving_counter += unclaimed
                    self._record_issue(session, state, now)
            return SweepResult(unclaimed, best, state.serving_counter, previous)

    def record_session(self, event_id: str, outcome: int) -> None:
        column = QueueState.completed_counter if outcome == 1 else QueueState.abandoned_counter
        with self.db.session() as session:
            self._lock_state(session, event_id)
            session.execute(update(QueueState).where(QueueState.event_id == event_id).values({column: column + 1}))

    def reset(self, event_id: str) -> None:
        with self.db.session() as session:
            session.execute(delete(QueueEntry).where(QueueEntry.event_id == event_id))
            session.execute(delete(ServingIssue).where(ServingIssue.event_id == event_id))
            session.execute(delete(QueueState).where(QueueState.event_id == event_id))
            session.execute(delete(PendingEntry).where(PendingEntry.event_id == event_id))
            session.execute(delete(QueueDraw).where(QueueDraw.event_id == event_id))

    # -- the pre-queue and automatic admission ---------------------------------------------------

    def enqueue_pending(
        self,
        event_id: str,
        request_id: str,
        entry_id_of: Callable[[str], str],
        now: int,
        idempotency_key: str | None,
    ) -> Pending | None:
        entry_id = entry_id_of(request_id)
        for _attempt in range(3):
            try:
                return self._enqueue_pending_once(event_id, request_id, entry_id, now, idempotency_key)
            except IntegrityError:
                continue  # a concurrent join with the same idempotency key won; find it next time
        raise RuntimeError("pre-queue join kept conflicting")  # pragma: no cover - three lost races

    def _enqueue_pending_once(
        self, event_id: str, request_id: str, entry_id: str, now: int, idempotency_key: str | None
    ) -> Pending | None:
        stored, seal = self._stored(event_id, request_id, idempotency_key)
        with self.db.session() as session:
            self._lock_state(session, event_id)
            if session.get(QueueDraw, event_id) is not None:
                return None
            if idempotency_key is not None:
                existing = session.execute(
                    select(PendingEntry).where(
                        PendingEntry.event_id == event_id, PendingEntry.idempotency_key == idempotency_key
                    )
                ).scalar_one_or_none()
                if existing is not None:
                    kept = self._kept(event_id, idempotency_key, existing.request_id, existing.request_seal)
                    return Pending(kept, existing.entry_id, existing.joined_at)
            session.add(
                PendingEntry(
                    event_id=event_id,
                    request_id=stored,
                    request_seal=seal,
                    entry_id=entry_id,
                    joined_at=now,
                    idempotency_key=idempotency_key,
                )
            )
            session.flush()
            return Pending(request_id, entry_id, now)

    def pending(self, event_id: str, request_id: str) -> Pending | None:
        candidates = self._keys(request_id)
        with self.db.session(readonly=True) as session:
            row = session.execute(
                select(PendingEntry.entry_id, PendingEntry.joined_at).where(
                    PendingEntry.event_id == event_id, PendingEntry.request_id.in_(candidates)
                )
            ).first()
            return None if row is None else Pending(request_id, row.entry_id, row.joined_at)

    def pending_entries(self, event_id: str) -> list[Pending]:
        with self.db.session(readonly=True) as session:
            rows = session.execute(
                select(PendingEntry.entry_id, PendingEntry.joined_at).where(PendingEntry.event_id == event_id)
            )
            return [Pending("", r.entry_id, r.joined_at) for r in rows]

    def pending_positions(self, event_id: str) -> dict[str, int]:
        with self.db.session(readonly=True) as session:
            rows = session.execute(
                select(PendingEntry.entry_id, QueueEntry.position)
                .select_from(PendingEntry)
                .outerjoin(
                    QueueEntry,
                    (QueueEntry.event_id == PendingEntry.event_id) & (QueueEntry.request_id == PendingEntry.request_id),
                )
                .where(PendingEntry.event_id == event_id)
            )
            return {r.entry_id: r.position or 0 for r in rows}

    def draw_state(self, event_id: str) -> DrawState:
        with self.db.session(readonly=True) as session:
            entrants = session.execute(
                select(func.count()).select_from(PendingEntry).where(PendingEntry.event_id == event_id)
            ).scalar_one()
            drawn = session.get(QueueDraw, event_id)
            if drawn is None:
                return DrawState(int(entrants))
            return DrawState(int(entrants), drawn.drawn_at, drawn.first_position)

    def draw(self, event_id: str, ordered_entry_ids: list[str], now: int) -> DrawOutcome:
        with self.db.session() as session:
            state = self._lock_state(session, event_id)
            if session.get(QueueDraw, event_id) is not None:
                return DrawOutcome.ALREADY_DRAWN
            rows = session.execute(
                select(
                    PendingEntry.entry_id,
                    PendingEntry.request_id,
                    PendingEntry.request_seal,
                    PendingEntry.idempotency_key,
                ).where(PendingEntry.event_id == event_id)
            ).all()
            known = {row.entry_id: row for row in rows}
            if set(known) != set(ordered_entry_ids) or len(known) != len(ordered_entry_ids):
                return DrawOutcome.STALE
            start = state.queue_counter
            drawn_at = max(now, state.last_entry_time)
            session.add_all(
                QueueEntry(
                    event_id=event_id,
                    position=start + i,
                    request_id=known[entry].request_id,
                    request_seal=known[entry].request_seal,
                    entry_time=drawn_at,
                    claimed=False,
                    idempotency_key=known[entry].idempotency_key,
                )
                for i, entry in enumerate(ordered_entry_ids, start=1)
            )
            if ordered_entry_ids:
                state.queue_counter = start + len(ordered_entry_ids)
                state.last_entry_time = drawn_at
            session.add(QueueDraw(event_id=event_id, drawn_at=drawn_at, first_position=start + 1, entrants=len(known)))
            return DrawOutcome.DRAWN

    def admit_up_to(self, event_id: str, cap: int, by: int, now: int, mark: str) -> tuple[int, int]:
        with self.db.session() as session:
            state = self._lock_state(session, event_id)
            serving = state.serving_counter
            if mark and session.get(ServingMark, (event_id, mark)) is not None:
                return serving, 0
            target = min(cap, state.queue_counter, serving + by)
            if target <= serving:
                return serving, 0
            state.serving_counter = target
            self._record_issue(session, state, now)
            if mark:
                session.add(ServingMark(event_id=event_id, mark=mark, serving=target, applied_at=now))
            return target, target - serving

    def ping(self) -> None:
        self.db.ping()
