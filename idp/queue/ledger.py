"""The durable record of each event's Redis queue state, kept in the database.

Redis holds the queue because it is fast; it is not trusted to keep it. The ledger row of an event says
which Redis state is the current one (``epoch``, written into that state) and how far that state may go
(``reserved``: Redis hands out no position above it, and the row is raised a block of positions at a time
before it does, so one database write serves many joins). When Redis comes back empty, flushed or older,
the store notices the missing or stale identity and continues above ``reserved``: no position that may
already be held is ever handed out again.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from idp.storage.db import Database
from idp.storage.models import QueueLedger, TokenRecord

OK = "ok"
LOST = "lost"  # refusing joins until `idp queue recover EVENT`


def new_epoch() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True)
class LedgerRow:
    event_id: str
    epoch: str
    generation: int
    reserved: int
    serving: int
    status: str
    losses: int
    lost_positions: int
    last_loss_at: int | None
    last_loss_reason: str | None

    @classmethod
    def of(cls, row: QueueLedger) -> LedgerRow:
        return cls(
            row.event_id,
            row.epoch,
            row.generation,
            row.reserved,
            row.serving,
            row.status,
            row.losses,
            row.lost_positions,
            row.last_loss_at,
            row.last_loss_reason,
        )


@dataclass(frozen=True)
class TokenFacts:
    """What the durable token records say about an event's positions."""

    count: int = 0
    max_position: int = 0
    in_range: int = 0


class Ledger:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, event_id: str) -> LedgerRow | None:
        with self.db.session(readonly=True) as session:
            row = session.get(QueueLedger, event_id)
            return None if row is None else LedgerRow.of(row)

    def all(self) -> list[LedgerRow]:
        with self.db.session(readonly=True) as session:
            rows = session.execute(select(QueueLedger).order_by(QueueLedger.event_id)).scalars()
            return [LedgerRow.of(r) for r in rows]

    def reserve(self, event_id: str, epoch: str, target: int, now: int) -> int | None:
        """Raise ``reserved`` to at least ``target``; the new value, or None if the epoch is not current.

        Concurrent callers that saw the same limit ask for the same target, so they reserve one block.
        """
        with self.db.session() as session:
            result = session.execute(
                update(QueueLedger)
                .where(QueueLedger.event_id == event_id, QueueLedger.epoch == epoch, QueueLedger.status == OK)
                .values(
                    reserved=case((QueueLedger.reserved < target, target), else_=QueueLedger.reserved),
                    updated_at=now,
                )
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            return int(
                session.execute(select(QueueLedger.reserved).where(QueueLedger.event_id == event_id)).scalar_one()
            )

    def note_serving(self, event_id: str, serving: int) -> None:
        """Remember the serving counter, so a store that loses it resumes no lower."""
        with self.db.session() as session:
            session.execute(
                update(QueueLedger)
                .where(QueueLedger.event_id == event_id, QueueLedger.serving < serving)
                .values(serving=serving)
            )

    @contextlib.contextmanager
    def locked(self, event_id: str) -> Iterator[tuple[Session, QueueLedger | None]]:
        """The event's row locked for one transaction (None if the event has none yet)."""
        with self.db.session() as session:
            stmt = select(QueueLedger).where(QueueLedger.event_id == event_id)
            if not self.db.is_sqlite:  # SQLite writers already hold the database lock (BEGIN IMMEDIATE)
                stmt = stmt.with_for_update()
            yield session, session.execute(stmt).scalar_one_or_none()

    @staticmethod
    def create(session: Session, event_id: str, epoch: str, reserved: int, serving: int, now: int) -> QueueLedger:
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        session.execute(
            insert(QueueLedger)
            .values(
                event_id=event_id,
                epoch=epoch,
                generation=1,
                reserved=reserved,
                serving=serving,
                status=OK,
                losses=0,
                lost_positions=0,
                updated_at=now,
            )
            .on_conflict_do_nothing()
        )
        return session.execute(select(QueueLedger).where(QueueLedger.event_id == event_id)).scalar_one()

    @staticmethod
    def tokens(session: Session, event_id: str, low: int = 1, high: int = 0) -> TokenFacts:
        """Count the event's token records, their highest position, and how many lie in [low, high]."""
        count, top = session.execute(
            select(func.count(), func.coalesce(func.max(TokenRecord.queue_position), 0)).where(
                TokenRecord.event_id == event_id
            )
        ).one()
        in_range = 0
        if high >= low:
            in_range = session.execute(
                select(func.count()).where(
                    TokenRecord.event_id == event_id,
                    TokenRecord.queue_position >= low,
                    TokenRecord.queue_position <= high,
                )
            ).scalar_one()
        return TokenFacts(int(count), int(top), int(in_range))

    @staticmethod
    def token_positions(session: Session, event_id: str, low: int, high: int) -> Iterator[int]:
        """Positions in [low, high] that hold a token record, ascending."""
        stmt = (
            select(TokenRecord.queue_position)
            .where(
                TokenRecord.event_id == event_id,
                TokenRecord.queue_position >= low,
                TokenRecord.queue_position <= high,
            )
            .order_by(TokenRecord.queue_position)
            .execution_options(yield_per=1000)
        )
        for position in session.execute(stmt).scalars():
            yield int(position)

    def delete(self, event_id: str) -> None:
        with self.db.session() as session:
            session.execute(delete(QueueLedger).where(QueueLedger.event_id == event_id))
