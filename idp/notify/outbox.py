"""The notification outbox: state changes are written here in the same transaction as the change,
then delivered to webhook subscribers by the worker (``idp.notify.webhooks``).

``record`` is called by the parts that change state (token issuance, sessions, the expiry sweep, the
metrics job). Entries of one event are delivered in id order, so ids must become visible in the order
they were assigned: on PostgreSQL ``record`` takes a transaction-scoped advisory lock per event, which
makes concurrent writers of one event commit their entries one after another. SQLite has one writer.
"""

from __future__ import annotations

import re
import time
import zlib
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from idp.storage.models import OutboxEntry

# The kinds AWS put on its event bus, plus the ones the worker adds.
KINDS = (
    "token_generated",
    "session_updated",
    "automatic_serving_counter_incr",
    "waiting_room_metrics",
)
KIND_RE = re.compile(r"\A[a-z][a-z0-9_]{0,63}\Z")
# Advisory lock namespace: the first key of pg_advisory_xact_lock(int, int).
_LOCK_NAMESPACE = 0x1D9_0B0C


def _event_lock_key(event_id: str) -> int:
    return zlib.crc32(event_id.encode("utf-8")) - 2**31


def record(session: Session, event_id: str, kind: str, payload: dict[str, Any], *, now: float | None = None) -> int:
    """Add a notification of ``kind`` for ``event_id`` inside the caller's transaction; return its id."""
    if not KIND_RE.match(kind):
        raise ValueError(f"bad notification kind {kind!r}")
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:ns, :key)"),
            {"ns": _LOCK_NAMESPACE, "key": _event_lock_key(event_id)},
        )
    entry = OutboxEntry(
        event_id=event_id,
        kind=kind,
        payload=dict(payload),
        created_at=int(time.time() if now is None else now),
    )
    session.add(entry)
    session.flush()
    return int(entry.id)


def entries_after(session: Session, event_id: str, after_id: int, limit: int = 100) -> list[OutboxEntry]:
    """Entries of ``event_id`` with an id above ``after_id``, oldest first."""
    rows = session.execute(
        select(OutboxEntry)
        .where(OutboxEntry.event_id == event_id, OutboxEntry.id > after_id)
        .order_by(OutboxEntry.id)
        .limit(limit)
    ).scalars()
    return list(rows)


def last_id(session: Session, event_id: str) -> int:
    """The newest entry id of ``event_id`` (0 when there is none)."""
    value = session.execute(
        select(OutboxEntry.id).where(OutboxEntry.event_id == event_id).order_by(OutboxEntry.id.desc()).limit(1)
    ).scalar_one_or_none()
    return int(value or 0)


def to_message(entry: OutboxEntry) -> dict[str, Any]:
    """The JSON body a subscriber receives."""
    return {
        "id": int(entry.id),
        "kind": entry.kind,
        "event_id": entry.event_id,
        "created_at": int(entry.created_at),
        "detail": dict(entry.payload or {}),
    }
