"""The operator's writes and reads that span several services: an event's reset and deletion, its
statistics and dashboard, and admin keys with their audit records.

Each write and its audit record commit in one transaction; the admin views parse the request, call one
method here (or one method of the owning service) and render the answer.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from idp.admin.audit import AuditLog
from idp.admin.keys import AdminKeyRecord, AdminKeyService
from idp.clients.service import ClientService
from idp.clock import Clock
from idp.errors import ConflictError
from idp.events.admission import active_sessions
from idp.events.service import EventService
from idp.inlet.max_size import MaxSizeInlet, MaxSizeReport, MaxSizeRequest
from idp.inlet.settings import InletService
from idp.queue.engine import Counters, QueueEngine, QueueStore
from idp.queue.redis_store import RedisQueueStore
from idp.queue.waiting_room import WaitingRoom
from idp.storage.db import Database
from idp.storage.models import MetricsSample
from idp.tokens.issuer import TokenService


class AdminService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        store: QueueStore,
        engine: QueueEngine,
        events: EventService,
        room: WaitingRoom,
        clients: ClientService,
        tokens: TokenService,
        inlets: InletService,
        admin_keys: AdminKeyService,
        audit: AuditLog,
    ) -> None:
        self.db = db
        self.clock = clock
        self.store = store
        self.engine = engine
        self.events = events
        self.room = room
        self.clients = clients
        self.tokens = tokens
        self.inlets = inlets
        self.admin_keys = admin_keys
        self.audit = audit

    def now(self) -> int:
        return int(self.clock.now())

    # --- events ------------------------------------------------------------------------------------

    def reset_event(self, event_id: object, actor: str | None) -> str:
        """Start the event over, synchronously: counters zero, earlier places and tokens gone."""
        event = self.events.get(event_id)
        self.room.reset(event.event_id)
        self._remove_tokens(event.event_id, actor, "reset_initial_state")
        return event.event_id

    def delete_event(self, event_id: object, actor: str | None) -> None:
        """Delete an event with its queue and tokens; refused (409) while clients still queue for it."""
        event = self.events.get_fresh(event_id)
        if self.clients.list(event_id=event.event_id, limit=1):
            raise ConflictError("Delete or move the event's clients first.", code="event_has_clients")
        self.events.delete(event.event_id)
        self.engine.reset(event.event_id)
        self._remove_tokens(event.event_id, actor, "event.delete")

    def _remove_tokens(self, event_id: str, actor: str | None, action: str) -> None:
        with self.db.session() as session:
            removed = self.tokens.delete_event_tokens(event_id, session)
            self.audit.add(session, key_id=actor, action=action, target=event_id, detail={"tokens_removed": removed})
        # Removed tokens stop verifying at once in this process; others follow within IDP_SESSION_CACHE_SECONDS.
        self.tokens.forget_sessions()

    def event_stats(self, event_id: object) -> dict[str, Any]:
        """The event's live counters, its active tokens and what is known of its queue store's losses."""
        event = self.events.get_fresh(event_id)
        counters = self.room.counters(event.event_id, fresh=True)
        return {
            "event_id": event.event_id,
            **_counter_fields(counters),
            "max_expired": counters.max_expired,
            "active_tokens": int(self.tokens.active_count(event.event_id)),
            "lost": counters.lost,
            **self._queue_store_stats(event.event_id),
        }

    def _queue_store_stats(self, event_id: str) -> dict[str, Any]:
        """What the database records about the event's Redis queue state (losses detected); {} on SQL."""
        row = self.store.ledger_row(event_id) if isinstance(self.store, RedisQueueStore) else None
        if row is None:
            return {}
        return {
            "queue_store": {
                "status": row.status,
                "generation": row.generation,
                "losses": row.losses,
                "lost_positions": row.lost_positions,
                "last_loss_at": row.last_loss_at,
                "last_loss_reason": row.last_loss_reason,
            }
        }

    def apply_max_size(self, event_id: str, request: MaxSizeRequest) -> MaxSizeReport:
        """The MaxSize inlet: finish the reported sessions and admit as many as the site has room for."""
        return MaxSizeInlet(self.room, self.tokens).apply(event_id, self.inlets.get(event_id).max_size, request)

    # --- the dashboard -----------------------------------------------------------------------------

    def dashboard(self, event_id: object, minutes: int) -> dict[str, Any]:
        """Live counters, inlet settings and the per-minute samples of the last ``minutes``."""
        eid = self.events.get(event_id).event_id
        now = self.now()
        counters = self.room.counters(eid, fresh=True)
        samples = self.samples(eid, since=(now // 60 - minutes) * 60)
        return {
            "event_id": eid,
            "now": now,
            "counters": {
                **_counter_fields(counters),
                "active": int(self.tokens.active_count(eid)),
            },
            "inlet": self.inlets.get(eid).to_dict(),
            "samples": samples,
            "targets": self._targets(eid, counters, samples, now),
        }

    def samples(self, event_id: str, *, since: int) -> list[dict[str, int]]:
        """The worker's per-minute samples of the event after ``since``, oldest first."""
        with self.db.session(readonly=True) as session:
            rows = session.execute(
                select(MetricsSample)
                .where(MetricsSample.event_id == event_id, MetricsSample.minute > since)
                .order_by(MetricsSample.minute)
            ).scalars()
            return [
                {"minute": r.minute, "queue": r.queue, "serving": r.serving, "waiting": r.waiting, "active": r.active}
                for r in rows
            ]

    def _targets(self, eid: str, counters: Counters, samples: list[dict[str, int]], now: int) -> dict[str, Any]:
        """The room mode and targets, the sessions they count as active, and the admission rate of late."""
        event = self.events.get_fresh(eid)
        earlier = [s for s in samples if s["minute"] <= now - 60]
        rate = None
        if earlier:
            last = earlier[-1]
            rate = round(max(0, counters.serving - last["serving"]) * 60 / max(60, now - last["minute"]), 1)
        return {
            "mode": event.mode,
            "max_active": event.max_active,
            "max_per_minute": event.max_per_minute,
            "active_sessions": active_sessions(self.db, counters, eid, now, event.session_idle_seconds),
            "admissions_per_minute": rate,
        }

    # --- admin keys --------------------------------------------------------------------------------

    def create_admin_key(self, name: object, scopes: object, actor: str | None) -> tuple[AdminKeyRecord, str]:
        """A new admin key and its plaintext (shown once), recorded with its audit entry."""
        with self.db.session() as session:
            record, plaintext = self.admin_keys.create(name, scopes, session=session)
            self.audit.add(
                session,
                key_id=actor,
                action="admin_key.create",
                target=record.key_id,
                detail={"name": record.name, "scopes": record.scopes},
            )
        return record, plaintext

    def revoke_admin_key(self, key_id: object, actor: str | None) -> AdminKeyRecord:
        with self.db.session() as session:
            record = self.admin_keys.revoke(key_id, session=session)
            self.audit.add(session, key_id=actor, action="admin_key.revoke", target=record.key_id)
        return record


def _counter_fields(counters: Counters) -> dict[str, int]:
    """The counters the stats and the dashboard both show, under their AWS-compatible names."""
    return {
        "queue": counters.queue,
        "serving": counters.serving,
        "waiting": counters.waiting,
        "tokens": counters.tokens,
        "expired": counters.expired,
        "completed": counters.completed,
        "abandoned": counters.abandoned,
    }
