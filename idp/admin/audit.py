"""The audit log: one row per admin write (who by key id, what, on which target, when).

Details never hold secrets: callers pass only identifiers and the non-secret fields they changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.clock import Clock
from idp.errors import ValidationError
from idp.storage.db import Database
from idp.storage.models import AuditRecord

# Field names whose values must never reach the log, whatever a caller passes.
SECRET_FIELDS = frozenset({"client_secret", "secret", "key", "key_hash", "client_secret_hash", "password", "token"})


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: int
    key_id: str | None
    action: str
    target: str
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "key_id": self.key_id,
            "action": self.action,
            "target": self.target,
            "detail": self.detail,
        }


def scrub(detail: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in detail.items() if k not in SECRET_FIELDS}


class AuditLog:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def add(
        self,
        session: Session,
        *,
        key_id: str | None,
        action: str,
        target: str = "",
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record a write inside the caller's transaction."""
        session.add(
            AuditRecord(
                at=int(self.clock.now()),
                key_id=key_id,
                action=action[:100],
                target=target[:200],
                detail=scrub(detail or {}),
            )
        )

    def record(
        self, *, key_id: str | None, action: str, target: str = "", detail: dict[str, Any] | None = None
    ) -> None:
        """Record a write in its own transaction (for changes made by a service that owns its transaction)."""
        with self.db.session() as session:
            self.add(session, key_id=key_id, action=action, target=target, detail=detail)

    def list(self, *, limit: int = 100, cursor: str | None = None) -> tuple[list[AuditEntry], str | None]:
        """Newest first; the cursor is the id to continue below."""
        before: int | None = None
        if cursor is not None:
            if not cursor.isdigit() or len(cursor) > 18:
                raise ValidationError("cursor is not valid.", code="invalid_cursor")
            before = int(cursor)
        with self.db.session(readonly=True) as session:
            stmt = select(AuditRecord).order_by(AuditRecord.id.desc()).limit(limit + 1)
            if before is not None:
                stmt = stmt.where(AuditRecord.id < before)
            rows = list(session.execute(stmt).scalars())
        entries = [AuditEntry(r.id, r.at, r.key_id, r.action, r.target, dict(r.detail or {})) for r in rows[:limit]]
        next_cursor = str(entries[-1].id) if len(rows) > limit and entries else None
        return entries, next_cursor
