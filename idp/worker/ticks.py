"""Bookkeeping of periodic work: "job J for event E in period P is done", at most once, durably.

The primary key (job, event_id, period_key) makes a second ``mark_done`` for the same period a no-op,
so two workers, or one restarted after a crash, agree on what is done.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from idp.storage.db import Database
from idp.storage.models import WorkerTick


def is_done(db: Database, job: str, event_id: str, period_key: int) -> bool:
    with db.session(readonly=True) as session:
        return session.get(WorkerTick, (job, event_id, period_key)) is not None


def insert_done(session: Session, job: str, event_id: str, period_key: int, now: int, detail: dict[str, Any]) -> bool:
    """Record the period as done inside ``session``; False when it was recorded before."""
    builder = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = (
        builder(WorkerTick)
        .values(job=job, event_id=event_id, period_key=period_key, done_at=now, detail=detail)
        .on_conflict_do_nothing()
    )
    return bool(session.execute(stmt).rowcount == 1)  # type: ignore[attr-defined]


def mark_done(db: Database, job: str, event_id: str, period_key: int, now: int, detail: dict[str, Any]) -> bool:
    with db.session() as session:
        return insert_done(session, job, event_id, period_key, now, detail)


def detail(db: Database, job: str, event_id: str, period_key: int) -> dict[str, Any] | None:
    with db.session(readonly=True) as session:
        value = session.execute(
            select(WorkerTick.detail).where(
                WorkerTick.job == job, WorkerTick.event_id == event_id, WorkerTick.period_key == period_key
            )
        ).scalar_one_or_none()
        return None if value is None else dict(value)


def prune(db: Database, before: int) -> None:
    with db.session() as session:
        session.execute(delete(WorkerTick).where(WorkerTick.done_at < before))
