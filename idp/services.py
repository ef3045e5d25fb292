"""The service graph: every service of one process, built once from ``Settings`` and never changed after.

``build_services`` is the one place that knows how the parts depend on each other. The web app, the
worker, the command line and the tests all start from it; views reach the graph through
``idp.web.http.services()``. A new service is a new field here and one line in ``build_services``.
"""

from __future__ import annotations

from dataclasses import dataclass

from idp.abuse.service import Defence, build_defence
from idp.admin.audit import AuditLog
from idp.admin.keys import AdminKeyService
from idp.admin.service import AdminService
from idp.clients.service import ClientService
from idp.clock import Clock, SystemClock
from idp.config import Settings
from idp.crypto import LookupKey
from idp.events.service import EventService
from idp.inlet.settings import InletService
from idp.notify.webhooks import WebhookService
from idp.oidc.decisions import SignIn
from idp.oidc.interaction import Interactions
from idp.oidc.records import OidcRecords
from idp.oidc.server import OidcServer
from idp.oidc.tickets import WaitTickets
from idp.pages.history import ServingHistory
from idp.pages.i18n import LANGUAGES, Catalogs
from idp.pages.places import Places
from idp.pages.render import PageRenderer
from idp.pages.return_urls import ReturnUrls
from idp.pages.status import WaitStatusService
from idp.queue.engine import QueueEngine, QueueStore
from idp.queue.ledger import Ledger
from idp.queue.redis_store import RedisQueueStore
from idp.queue.sql_store import SqlQueueStore
from idp.queue.waiting_room import WaitingRoom
from idp.storage.db import Database
from idp.storage.lookup import StoredLookupKey
from idp.tokens.issuer import TokenService
from idp.tokens.keys import KeyManager
from idp.web.cors import CorsPolicy


@dataclass(frozen=True, eq=False)
class Services:
    """Everything a request or a job needs; one per process."""

    settings: Settings
    clock: Clock
    db: Database
    # The never-rotating key of lookup hashes and pairwise subjects (stored sealed in the database).
    lookup: LookupKey
    store: QueueStore
    engine: QueueEngine
    events: EventService
    room: WaitingRoom
    clients: ClientService
    cors: CorsPolicy
    keys: KeyManager
    tokens: TokenService
    admin_keys: AdminKeyService
    audit: AuditLog
    admin: AdminService
    inlets: InletService
    webhooks: WebhookService
    page_catalogs: Catalogs
    page_catalogs_names: dict[str, str]
    pages: PageRenderer
    page_history: ServingHistory
    wait_status: WaitStatusService
    return_urls: ReturnUrls
    places: Places
    oidc_records: OidcRecords
    oidc_interactions: Interactions
    oidc_server: OidcServer
    sign_in: SignIn
    wait_tickets: WaitTickets
    defence: Defence

    def close(self) -> None:
        """Release the connections this process holds (the queue store's client, the database pools)."""
        self.defence.tallies.flush()
        if isinstance(self.store, RedisQueueStore):
            self.store.close()
        self.db.dispose()


def build_store(settings: Settings, db: Database, lookup: LookupKey) -> QueueStore:
    """The queue store ``IDP_REDIS_URL`` asks for: Redis when it is set, else the SQL database."""
    if settings.redis_url:
        return RedisQueueStore.from_url(
            settings.redis_url,
            Ledger(db),
            lookup,
            retry_after=settings.retry_after_seconds,
            block_size=settings.queue_block_size,
            auto_recover=settings.queue_auto_recover,
            wait_replicas=settings.redis_wait_replicas,
            wait_timeout_ms=settings.redis_wait_timeout_ms,
            join_batch=settings.queue_join_batch,
        )
    return SqlQueueStore(db, lookup)


def build_services(settings: Settings, clock: Clock | None = None) -> Services:
    """Build the whole graph from ``settings``; ``clock`` replaces the system clock (tests)."""
    clock = clock or SystemClock()
    ttl = settings.cache_ttl_ms / 1000.0
    db = Database(settings.database_url, retry_after=settings.retry_after_seconds)
    lookup = StoredLookupKey(db, settings.secret_keys)
    store = build_store(settings, db, lookup)
    engine = QueueEngine(store, clock)
    events = EventService(db, clock, ttl, settings.secret_keys, public_targets_only=settings.public_targets_only)
    room = WaitingRoom(events, engine, ttl)
    clients = ClientService(db, clock, ttl, require_https=settings.is_production)
    public_targets_only = settings.public_targets_only
    keys = KeyManager(
        db,
        settings.secret_keys,
        clock,
        settings.key_rotation_grace_seconds,
        refresh_seconds=settings.key_refresh_seconds,
        jwks_max_age=settings.jwks_max_age,
    )
    records = OidcRecords(db, clock, lookup)
    # Tokens given to relying parties name their grant; /verify finds the place behind it.
    tokens = TokenService(db, room, keys, clock, settings, grant_places=records.grant_place, lookup=lookup)
    catalogs = Catalogs()
    # The estimate may be a second old; the history is read at most once a second per event and process.
    history = ServingHistory(store, max(ttl, 1.0) if ttl > 0 else 0.0)
    interactions = Interactions(clock, room, tokens, records)
    oidc_server = OidcServer(settings, clock, clients, keys, tokens, records, lookup)
    admin_keys = AdminKeyService(db, clock, ttl)
    audit = AuditLog(db, clock)
    inlets = InletService(db, clock, public_targets_only=public_targets_only)
    admin = AdminService(db, clock, store, engine, events, room, clients, tokens, inlets, admin_keys, audit)
    return Services(
        settings=settings,
        clock=clock,
        db=db,
        lookup=lookup,
        store=store,
        engine=engine,
        events=events,
        room=room,
        clients=clients,
        cors=CorsPolicy(settings.cors_origins, events, clients, ttl),
        keys=keys,
        tokens=tokens,
        admin_keys=admin_keys,
        audit=audit,
        admin=admin,
        inlets=inlets,
        webhooks=WebhookService(db, clock, settings.secret_keys, public_targets_only=public_targets_only),
        page_catalogs=catalogs,
        page_catalogs_names=dict(LANGUAGES),
        pages=PageRenderer(settings.template_dir, catalogs),
        page_history=history,
        wait_status=WaitStatusService(room, history, clock),
        return_urls=ReturnUrls(clients, ttl),
        places=Places(settings, room, interactions),
        oidc_records=records,
        oidc_interactions=interactions,
        oidc_server=oidc_server,
        sign_in=SignIn(settings, clock, clients, keys, interactions, oidc_server, lookup),
        wait_tickets=WaitTickets(settings, room),
        defence=build_defence(settings, db, store, clock),
    )
