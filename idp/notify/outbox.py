"""The notification outbox: state changes are written here in the same transaction as the change,
then delivered to webhook subscribers by the worker.

``record`` is called by the parts that change state (token issuance, sessions, the expiry sweep).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session


def record(session: Session, event_id: str, kind: str, payload: dict[str, Any]) -> None:
    """Add a notification of ``kind`` for ``event_id`` inside the caller's transaction."""
    # Delivery (table, worker job, webhooks) is added by the worker part of the service.
    return None
