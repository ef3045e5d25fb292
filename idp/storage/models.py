"""SQLAlchemy 2 typed models: the durable records of the service.

Times are integer epoch seconds (the AWS API speaks them), counters are int64. Alembic migrations in
``migrations/`` create these tables on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {int: BigInteger, dict[str, Any]: JSON, list[str]: JSON}


class Event(Base):
    """One waiting room."""

    __tablename__ = "events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    enable_queue_position_expiry: Mapped[bool] = mapped_column(Boolean, default=True)
    queue_position_expiry_period: Mapped[int] = mapped_column(default=900)
    incr_serving_on_expiry: Mapped[bool] = mapped_column(Boolean, default=False)
    token_validity_period: Mapped[int] = mapped_column(default=3600)
    # Waiting-page look: title, message, logo_url, colours; free-form, validated by the admin API.
    branding: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Where the queue-first page may send visitors back to (exact URLs).
    allowed_return_urls: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[int] = mapped_column(default=0)
    # The sale's lifecycle (epoch seconds, each optional): pre-queue, draw and opening, closing.
    prequeue_opens_at: Mapped[int | None] = mapped_column(nullable=True)
    opens_at: Mapped[int | None] = mapped_column(nullable=True)
    closes_at: Mapped[int | None] = mapped_column(nullable=True)
    # queue | when_busy | passthrough | closed
    mode: Mapped[str] = mapped_column(String(16), default="queue")
    # Targets the worker holds by itself; either one turns automatic admission on.
    max_active: Mapped[int | None] = mapped_column(nullable=True)
    max_per_minute: Mapped[int | None] = mapped_column(nullable=True)
    session_idle_seconds: Mapped[int | None] = mapped_column(nullable=True)
    # Origins allowed to read the public queue API for this event (CORS); NULL follows IDP_CORS_ORIGINS.
    cors_origins: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True), nullable=True, default=None)

    # Per-event rate limits replacing the global ones: {"join": "1000/minute", "generate_token": ...}.
    rate_limits: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True, default=None)
    # The join gate: {"kind": "proof_of_work", "difficulty": N} or a captcha (its secret encrypted).
    challenge: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True, default=None)
    # What refused joins get: "refuse" (a 4xx) or "infinite_queue" (a waiting page that never admits).
    on_refusal: Mapped[str] = mapped_column(String(20), default="refuse")


class Lottery(Base):
    """The committed seed of an event's pre-queue draw; written once, when the pre-queue is set."""

    __tablename__ = "lotteries"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seed: Mapped[str] = mapped_column(String(64))
    commitment: Mapped[str] = mapped_column(String(64))
    committed_at: Mapped[int] = mapped_column()


# --- Abuse defence --------------------------------------------------------------------------------


class RateLimitHit(Base):
    """One accepted hit of a moving-window rate limit (the SQL storage used without Redis)."""

    __tablename__ = "rate_limit_hits"
    __table_args__ = (Index("ix_rate_limit_hits_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    key: Mapped[str] = mapped_column(String(300))
    at: Mapped[float] = mapped_column(Float)


class SpentChallenge(Base):
    """A challenge or pass already used (single use), kept until it would have expired anyway."""

    __tablename__ = "spent_challenges"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(index=True)


class RefusalTally(Base):
    """Joins refused per event and client address, for the operator's dashboard (never a metric label)."""

    __tablename__ = "refusal_tallies"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    refused: Mapped[int] = mapped_column(default=0)
    last_at: Mapped[int] = mapped_column(default=0)


# --- SQL queue store (used when no Redis is configured) ------------------------------------------


class QueueState(Base):
    """Counters of one event's queue; the row lock serialises every queue operation of the event."""

    __tablename__ = "queue_state"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    queue_counter: Mapped[int] = mapped_column(default=0)
    serving_counter: Mapped[int] = mapped_column(default=0)
    token_counter: Mapped[int] = mapped_column(default=0)
    expired_counter: Mapped[int] = mapped_column(default=0)
    completed_counter: Mapped[int] = mapped_column(default=0)
    abandoned_counter: Mapped[int] = mapped_column(default=0)
    max_expired: Mapped[int] = mapped_column(default=0)
    last_entry_time: Mapped[int] = mapped_column(default=0)
    last_issue_time: Mapped[int] = mapped_column(default=0)


class QueueLedger(Base):
    """The durable record of an event's queue kept in Redis: which Redis state is current, and how far it may go.

    ``epoch`` is written into the event's Redis state; Redis may hand out positions up to ``reserved`` only,
    and this row is raised (a block at a time) before it does. A Redis state without this epoch, or from
    another server run, is a loss: it continues above ``reserved`` under a new epoch and ``generation``.
    """

    __tablename__ = "queue_ledger"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    epoch: Mapped[str] = mapped_column(String(32))
    generation: Mapped[int] = mapped_column(default=1)
    reserved: Mapped[int] = mapped_column(default=0)
    serving: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), default="ok")
    losses: Mapped[int] = mapped_column(default=0)
    lost_positions: Mapped[int] = mapped_column(default=0)
    last_loss_at: Mapped[int | None] = mapped_column(nullable=True)
    last_loss_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    updated_at: Mapped[int] = mapped_column(default=0)


class QueueEntry(Base):
    """One visitor's place.

    ``request_id`` holds the request id's keyed hash (32 hex, :mod:`idp.queue.at_rest`; rows of earlier
    releases hold the UUID text); ``request_seal`` the request id sealed for a retried join (hex, only
    with an idempotency key).
    """

    __tablename__ = "queue_entries"
    __table_args__ = (UniqueConstraint("event_id", "idempotency_key"),)

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    request_id: Mapped[str] = mapped_column(String(36), unique=True)
    request_seal: Mapped[str | None] = mapped_column(String(32), nullable=True)
    entry_time: Mapped[int] = mapped_column()
    claimed: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)


class PendingEntry(Base):
    """A pre-queue join (SQL queue store): a request id with a public entry id, no position yet.

    ``request_id`` and ``request_seal`` as in :class:`QueueEntry`.
    """

    __tablename__ = "queue_pending"
    __table_args__ = (UniqueConstraint("event_id", "idempotency_key"),)

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_seal: Mapped[str | None] = mapped_column(String(32), nullable=True)
    entry_id: Mapped[str] = mapped_column(String(64))
    joined_at: Mapped[int] = mapped_column()
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)


class QueueDraw(Base):
    """The draw of an event's pre-queue (SQL queue store); the primary key makes it happen once."""

    __tablename__ = "queue_draws"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    drawn_at: Mapped[int] = mapped_column()
    first_position: Mapped[int] = mapped_column()
    entrants: Mapped[int] = mapped_column()


class ServingIssue(Base):
    """When the serving counter reached a value: the start of those positions' claim window."""

    __tablename__ = "serving_issues"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    serving_counter: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    issue_time: Mapped[int] = mapped_column()


# --- Tokens and keys -----------------------------------------------------------------------------


class TokenRecord(Base):
    """The one token record of a request id; the primary key makes first issuance idempotent."""

    __tablename__ = "tokens"
    __table_args__ = (Index("ix_tokens_event_expires", "event_id", "expires_at"),)

    # The request id's lookup tag (idp.storage.hidden_ids), and the request id sealed (to list and sign it).
    request_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    event_id: Mapped[str] = mapped_column(String(64))
    queue_position: Mapped[int] = mapped_column()
    issued_at: Mapped[int] = mapped_column()
    not_before: Mapped[int] = mapped_column()
    expires_at: Mapped[int] = mapped_column()
    issuer: Mapped[str] = mapped_column(String(300))
    kid: Mapped[str] = mapped_column(String(64))
    jti: Mapped[str] = mapped_column(String(64))
    # 0 active, 1 completed, -1 abandoned
    session_status: Mapped[int] = mapped_column(SmallInteger, default=0)
    finished_at: Mapped[int | None] = mapped_column(nullable=True)
    # When /verify last saw the session (events with session_idle_seconds); NULL: not since issuance.
    last_seen_at: Mapped[int | None] = mapped_column(nullable=True)


class SigningKey(Base):
    """A signing key; the private part is encrypted with a key derived from IDP_SECRET_KEY."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(10))
    # next (published, not signing yet) | active | retiring | retired
    status: Mapped[str] = mapped_column(String(10))
    private_key_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    public_jwk: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[int] = mapped_column()
    # When it stopped signing, and when it may leave the JWKS.
    retiring_at: Mapped[int | None] = mapped_column(nullable=True)
    retire_after: Mapped[int | None] = mapped_column(nullable=True)
    # When it starts signing (None: from created_at); every instance publishes it before then.
    active_from: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class LookupKeyRecord(Base):
    """The root of lookup hashes and pairwise subjects: one row, sealed under the service secrets.

    It never changes, so ``sub`` and every stored lookup hash survive a rotation of IDP_SECRET_KEY."""

    __tablename__ = "lookup_keys"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    root_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[int] = mapped_column()


# --- Relying parties and operators ---------------------------------------------------------------


class Client(Base):
    """An OpenID Connect relying party, registered through the admin API."""

    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_secret_hash: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200), default="")
    event_id: Mapped[str] = mapped_column(String(64), index=True)
    redirect_uris: Mapped[list[str]] = mapped_column(default=list)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(default=list)
    token_endpoint_auth_methods: Mapped[list[str]] = mapped_column(default=list)
    initiate_login_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    max_parked_seconds: Mapped[int] = mapped_column(Integer, default=150)
    id_token_signed_response_alg: Mapped[str] = mapped_column(String(10), default="RS256")
    require_pkce: Mapped[bool] = mapped_column(Boolean, default=False)
    scope: Mapped[str] = mapped_column(String(300), default="openid profile email")
    created_at: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[int] = mapped_column(default=0)
    # Browser origins allowed to call the token side (CORS); NULL means the redirect URIs' origins.
    allowed_cors_origins: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True), nullable=True, default=None)
    # Each refresh hands out a new refresh token; presenting a used one revokes the grant.
    refresh_token_rotation: Mapped[bool] = mapped_column(Boolean, default=False)


class AdminKey(Base):
    """An admin API key; only its hash is stored."""

    __tablename__ = "admin_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200), default="")
    scopes: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[int] = mapped_column(default=0)
    revoked_at: Mapped[int | None] = mapped_column(nullable=True)
    last_used_at: Mapped[int | None] = mapped_column(nullable=True)


class AuditRecord(Base):
    """One admin write: who (key id), what, when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[int] = mapped_column()
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


# --- OpenID Connect provider ---------------------------------------------------------------------


class OidcPlace(Base):
    """The queue place of one browser (visitor cookie) in one event: one place per browser per event."""

    __tablename__ = "oidc_places"

    # Lookup tags of the visitor id and the request id (idp.storage.hidden_ids); the request id sealed.
    visitor_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(36))
    request_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    queue_position: Mapped[int] = mapped_column()
    # Bumped when the visitor must queue again (prompt=login, a stale max_age, an expired place).
    generation: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[int] = mapped_column(default=0)
    # The place this one replaced: its session ends when this place is admitted (one active slot).
    previous_request_id: Mapped[str | None] = mapped_column(String(36), nullable=True, default=None)
    previous_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, default=None)


class OidcInteraction(Base):
    """An authorization request parked while its visitor waits in the queue."""

    __tablename__ = "oidc_interactions"
    __table_args__ = (Index("ix_oidc_interactions_created", "created_at"),)

    interaction_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(64))
    # Lookup tags of the visitor id and the request id (idp.storage.hidden_ids); the request id sealed.
    visitor_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(36))
    request_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    queue_position: Mapped[int] = mapped_column()
    # The authorization request's parameters, exactly as received.
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # parked | waiting | admitted | code_issued | expired | abandoned
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column()
    updated_at: Mapped[int] = mapped_column()


class OidcCode(Base):
    """An authorization code (stored hashed); single use, short-lived."""

    __tablename__ = "oidc_codes"
    __table_args__ = (Index("ix_oidc_codes_expires", "expires_at"),)

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(String(300), default="")
    nonce: Mapped[str | None] = mapped_column(Text, nullable=True)
    code_challenge: Mapped[str | None] = mapped_column(String(128), nullable=True)
    code_challenge_method: Mapped[str | None] = mapped_column(String(10), nullable=True)
    # The visitor's pairwise ``sub`` for this client (never the visitor id); the request id's tag and seal.
    subject: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(36))
    request_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    queue_position: Mapped[int] = mapped_column()
    auth_time: Mapped[int] = mapped_column()
    created_at: Mapped[int] = mapped_column()
    expires_at: Mapped[int] = mapped_column()
    used_at: Mapped[int | None] = mapped_column(nullable=True)
    # The grant the code was exchanged for, so a reused code revokes it.
    grant_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class OidcGrant(Base):
    """What one code exchange gave a client: access tokens (by grant id) and one refresh token (hashed)."""

    __tablename__ = "oidc_grants"
    __table_args__ = (
        Index("ix_oidc_grants_session", "event_id", "request_id"),
        UniqueConstraint("refresh_hash"),
    )

    grant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    # The visitor's pairwise ``sub`` for this client (never the visitor id); the request id's tag and seal.
    subject: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(36))
    request_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    queue_position: Mapped[int] = mapped_column()
    scope: Mapped[str] = mapped_column(String(300), default="")
    auth_time: Mapped[int] = mapped_column()
    refresh_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[int] = mapped_column()
    # The end of the visitor's session: no token of this grant outlives it.
    expires_at: Mapped[int] = mapped_column()
    revoked_at: Mapped[int | None] = mapped_column(nullable=True)


class OidcUsedRefreshToken(Base):
    """A refresh token given up by rotation (SHA-256); presenting it again revokes its grant."""

    __tablename__ = "oidc_used_refresh_tokens"
    __table_args__ = (Index("ix_oidc_used_refresh_tokens_grant_id", "grant_id"),)

    refresh_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[int] = mapped_column()
    # Kept until the grant's session ends; nothing can be refreshed after that anyway.
    expires_at: Mapped[int] = mapped_column()


# --- Worker, inlet strategies, notifications and metrics samples ---------------------------------


class OutboxEntry(Base):
    """A notification written in the transaction of the state change it reports; ids grow per event."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_event_id_id", "event_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[int] = mapped_column()


class WebhookSubscription(Base):
    """A subscriber of an event's notifications, with its in-order delivery cursor."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), index=True)
    url: Mapped[str] = mapped_column(Text)
    # The signing secret, encrypted with a key derived from IDP_SECRET_KEY (it is needed to sign).
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    # Notification kinds to deliver; empty = all.
    kinds: Mapped[list[str]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[int] = mapped_column(default=0)
    # Delivery state: the last outbox id delivered (or skipped by the kinds filter), retry schedule.
    cursor: Mapped[int] = mapped_column(default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_delivered_at: Mapped[int | None] = mapped_column(nullable=True)


class WebhookDelivery(Base):
    """One delivery attempt of one notification to one subscriber (the delivery log)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_subscription_id_id", "subscription_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(40))
    outbox_id: Mapped[int] = mapped_column()
    kind: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    ok: Mapped[bool] = mapped_column(Boolean)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[int] = mapped_column()


class InletSettings(Base):
    """How an event admits visitors by itself: the periodic inlet and the MaxSize inlet."""

    __tablename__ = "inlet_settings"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    periodic_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    increment_by: Mapped[int] = mapped_column(default=10)
    start_time: Mapped[int | None] = mapped_column(nullable=True)
    end_time: Mapped[int | None] = mapped_column(nullable=True)
    health_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    health_timeout: Mapped[float] = mapped_column(Float, default=2.0)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    max_size: Mapped[int | None] = mapped_column(nullable=True)
    metrics_notifications: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[int] = mapped_column(default=0)


class WorkerTick(Base):
    """A periodic job done for one event and one period (e.g. minute); the key makes it at-most-once."""

    __tablename__ = "worker_ticks"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    period_key: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    done_at: Mapped[int] = mapped_column()
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class WorkerLease(Base):
    """The database lease that keeps one worker active when Redis is not configured."""

    __tablename__ = "worker_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at_ms: Mapped[int] = mapped_column()


class WorkerJobStat(Base):
    """Runs and failures of each worker job, read by /metrics at scrape time."""

    __tablename__ = "worker_job_stats"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    runs: Mapped[int] = mapped_column(default=0)
    failures: Mapped[int] = mapped_column(default=0)
    last_run_at: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class ServingMark(Base):
    """An increment of the serving counter applied under an idempotency mark (SQL queue store)."""

    __tablename__ = "serving_marks"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    mark: Mapped[str] = mapped_column(String(100), primary_key=True)
    serving: Mapped[int] = mapped_column()
    applied_at: Mapped[int] = mapped_column()


class MetricsSample(Base):
    """An event's counters at the start of one minute, for the operator dashboard's charts."""

    __tablename__ = "metrics_samples"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    minute: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    queue: Mapped[int] = mapped_column(default=0)
    serving: Mapped[int] = mapped_column(default=0)
    waiting: Mapped[int] = mapped_column(default=0)
    tokens: Mapped[int] = mapped_column(default=0)
    expired: Mapped[int] = mapped_column(default=0)
    completed: Mapped[int] = mapped_column(default=0)
    abandoned: Mapped[int] = mapped_column(default=0)
    active: Mapped[int] = mapped_column(default=0)
