"""Typed settings, read once from ``IDP_*`` environment variables.

Tests build ``Settings(...)`` directly; production reads ``Settings.from_env(os.environ)``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import secrets
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from idp.origins import parse_origin_setting

DEV_SECRET_PREFIX = "dev-insecure-"  # noqa: S105 - a marker, not a secret


# A production secret must look random: at least this many bits by the estimate below.
MIN_SECRET_BITS = 100


def estimated_entropy_bits(secret: str) -> float:
    """A generous estimate of a secret's entropy: the lower of two measures, both blind to nothing random.

    * its length times its characters' Shannon entropy (low variety: ``"a" * 32``, ``"abab..."``);
    * what deflate leaves of it, at 6 bits a compressed byte (repeated patterns: ``"password" * 5``).

    32 random hex digits score about 118 bits, a ``secrets.token_urlsafe(32)`` about 230."""
    if not secret:
        return 0.0
    counts: dict[str, int] = {}
    for char in secret:
        counts[char] = counts.get(char, 0) + 1
    total = len(secret)
    shannon = -sum(n / total * math.log2(n / total) for n in counts.values()) * total
    data = secret.encode("utf-8", "surrogatepass")
    compressed = (len(zlib.compress(data, 9)) - len(zlib.compress(b"", 9))) * 6
    return min(shannon, float(compressed))


class ConfigError(ValueError):
    """A setting has a value the service cannot run with."""


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"not a boolean: {value!r}")


def _optional(value: str) -> str | None:
    return value.strip() or None


@dataclass(frozen=True)
class Settings:
    """Every tunable of the service, one field per ``IDP_*`` variable."""

    env: str = "development"
    # Empty: an SQLite file in the instance folder.
    database_url: str = ""
    redis_url: str | None = None
    # A join is acknowledged only once this many replicas hold it (Redis WAIT); 0: the primary alone.
    redis_wait_replicas: int = 0
    redis_wait_timeout_ms: int = 500
    secret_key: str = ""
    # Secrets used before IDP_SECRET_KEY: what they sealed still opens (and is sealed again under the
    # current one). Newest first; the oldest, last, is the one the installation first ran with.
    previous_secret_keys: tuple[str, ...] = ()
    issuer: str = "http://127.0.0.1:8000"
    log_level: str = "INFO"
    # Per-event answers that may be a moment stale (serving counter, waiting count, event settings).
    cache_ttl_ms: int = 250
    max_body_bytes: int = 64 * 1024
    # Behind a TLS-terminating proxy: trust X-Forwarded-* from this many hops.
    proxy_hops: int = 0
    retry_after_seconds: int = 5
    # Redis queue: positions the database reserves ahead at a time (one write per block of joins; a
    # store loss skips at most this many unused ones), and whether a lost store recovers by itself.
    queue_block_size: int = 500
    queue_auto_recover: bool = True
    # Redis queue: at most this many joins of one event that arrive together go in one call (1: one each).
    queue_join_batch: int = 64
    visitor_cookie: str = "idp_visitor"
    admission_cookie_prefix: str = "idp_admit_"
    verify_cookie: str = "idp_access"
    # Events /verify accepts when the guard names none (?event_id=E); empty: the guard must name one.
    verify_events: tuple[str, ...] = ()
    session_cache_seconds: float = 2.0
    key_rotation_grace_seconds: int = 86400
    # How often a process re-reads signing-key metadata to see a rotation made by another process.
    key_refresh_seconds: float = 2.0
    # How long caches may keep /jwks.json; a new signing key is published this long (plus the refresh
    # interval) before it signs.
    jwks_max_age: int = 300
    instance_path: str = "instance"
    # Domain of the synthetic e-mail addresses the OpenID Connect side gives visitors (scope "email").
    synthetic_email_domain: str = "visitors.invalid"
    # `idp serve --demo` sets it: serve the demo relying party's landing page (/demo/callback).
    demo: bool = False
    # Production: webhook and health URLs may resolve to loopback, link-local or private addresses.
    allow_private_targets: bool = False
    # A folder of Jinja templates that override the default waiting pages (same file names).
    template_dir: str | None = None
    # Origins whose scripts may read the public queue API (CORS): "*" (as AWS) or exact origins.
    cors_origins: tuple[str, ...] = ("*",)
    # What ``/`` shows: full, minimal or off (404); empty: full, or minimal in production.
    landing_page: str = ""
    # Per-client rate limits: "" for the defaults, "off", or "join=100/minute; token=off" (see idp.abuse.limits).
    rate_limits: str = ""
    # gunicorn, as ``idp serve`` and ``gunicorn -c gunicorn.conf.py wsgi:app`` run it (idp/gunicorn_conf.py).
    bind: str = "127.0.0.1:8000"
    workers: int = 0  # 0: one per usable core (at least two) for gevent workers, 2×cores+1 for others (idp.processes)
    threads: int = 1
    backlog: int = 2048
    worker_timeout: int = 30
    # Seconds an idle keep-alive connection stays open. Behind a proxy or load balancer that keeps
    # connections to us, theirs must be shorter (nginx upstream keepalive_timeout) or ours longer (an
    # ALB's idle timeout is 60 s: 65 here), or a request can be sent on a connection being closed (a 502).
    keepalive: int = 5
    # gunicorn's worker class ("" : gevent, or gthread when threads > 1) and connections per gevent worker.
    worker_class: str = ""
    worker_connections: int = 1000
    max_requests: int = 0  # restart a worker after this many requests; 0: never
    # ``idp serve --host/--port`` defaults; IDP_BIND, when set, wins.
    host: str = "127.0.0.1"
    port: int = 8000
    # Where the Alembic migrations are; unset: beside the idp package (a checkout). Images set it.
    migrations_dir: str | None = None

    def __post_init__(self) -> None:
        if not self.database_url:
            folder = os.path.abspath(self.instance_path)
            object.__setattr__(self, "database_url", f"sqlite:///{os.path.join(folder, 'idp.sqlite3')}")

    @property
    def secret_keys(self) -> tuple[str, ...]:
        """Every secret that opens what is encrypted at rest: the current one first, then the previous ones."""
        return (self.secret_key, *(key for key in self.previous_secret_keys if key and key != self.secret_key))

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def public_targets_only(self) -> bool:
        """Outbound requests (webhooks, health checks) may reach public addresses only."""
        return self.is_production and not self.allow_private_targets

    @property
    def secure_cookies(self) -> bool:
        """Cookies are Secure and ``__Host-`` prefixed (host-only, path /) when the issuer is https."""
        return self.issuer.startswith("https://")

    def cookie_name(self, name: str) -> str:
        """The name a cookie of this service is set and read under (``__Host-`` prefixed under https)."""
        return "__Host-" + name if self.secure_cookies and not name.startswith("__Host-") else name

    @property
    def queue_backend(self) -> str:
        return "redis" if self.redis_url else "sql"

    @property
    def landing_mode(self) -> str:
        return self.landing_page or ("minimal" if self.is_production else "full")

    @property
    def secret_is_generated(self) -> bool:
        return self.secret_key.startswith(DEV_SECRET_PREFIX)

    def validate(self) -> Settings:
        """Refuse configurations that must not run; fill in development defaults."""
        if self.env not in {"development", "production", "test"}:
            raise ConfigError("IDP_ENV must be development, production or test")
        if self.issuer.endswith("/"):
            raise ConfigError("IDP_ISSUER must not end with a slash (Cognito and OIDC discovery require it)")
        if self.landing_page not in {"", "full", "minimal", "off"}:
            raise ConfigError("IDP_LANDING_PAGE must be full, minimal or off")
        if self.workers < 0:
            raise ConfigError("IDP_WORKERS must be 0 (one per usable core) or more")
        if self.keepalive < 0:
            raise ConfigError("IDP_KEEPALIVE must be 0 (no keep-alive) or more seconds")
        if self.is_production:
            if not self.secret_key or self.secret_is_generated or len(self.secret_key) < 32:
                raise ConfigError("production needs IDP_SECRET_KEY of at least 32 characters")
            if estimated_entropy_bits(self.secret_key) < MIN_SECRET_BITS:
                raise ConfigError(
                    "production needs a random IDP_SECRET_KEY: this one is too predictable "
                    "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
                )
            if self.demo:
                raise ConfigError("the demo (idp serve --demo, IDP_DEMO) does not run in production")
            if not self.issuer.startswith("https://"):
                raise ConfigError("production needs an https:// IDP_ISSUER")
        if not 1 <= self.queue_block_size <= 1_000_000:
            raise ConfigError("IDP_QUEUE_BLOCK_SIZE must be between 1 and 1000000")
        if not 1 <= self.queue_join_batch <= 1000:
            raise ConfigError("IDP_QUEUE_JOIN_BATCH must be between 1 and 1000")
        from idp.abuse.limits import LimitSpec

        try:
            LimitSpec.parse(self.rate_limits)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        if not self.secret_key:
            return dataclasses.replace(self, secret_key=_development_secret(self.instance_path))
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``IDP_*`` variables; unknown ones are ignored, bad ones raise ConfigError."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field_name, (variable, coerce) in _VARIABLES.items():
            raw = env.get(variable)
            if raw is None:
                continue
            try:
                values[field_name] = coerce(raw)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{variable}: {exc}") from exc
        return cls(**values)


def _development_secret(instance_path: str) -> str:
    """A generated secret kept in the instance folder, so encrypted keys survive a restart."""
    path = os.path.join(os.path.abspath(instance_path), "dev_secret_key")
    try:
        with open(path, encoding="utf-8") as handle:
            existing = handle.read().strip()
        if existing.startswith(DEV_SECRET_PREFIX):
            return existing
    except OSError:
        pass
    value = DEV_SECRET_PREFIX + secrets.token_urlsafe(32)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(value)
    except FileExistsError:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or value
    except OSError:
        pass
    return value


# One line per variable: field -> (variable, coercer).
_VARIABLES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "env": ("IDP_ENV", str.strip),
    "database_url": ("IDP_DATABASE_URL", str.strip),
    "redis_url": ("IDP_REDIS_URL", _optional),
    "redis_wait_replicas": ("IDP_REDIS_WAIT_REPLICAS", int),
    "redis_wait_timeout_ms": ("IDP_REDIS_WAIT_TIMEOUT_MS", int),
    "secret_key": ("IDP_SECRET_KEY", str),
    "previous_secret_keys": (
        "IDP_PREVIOUS_SECRET_KEYS",
        lambda v: tuple(k.strip() for k in v.split(",") if k.strip()),
    ),
    "issuer": ("IDP_ISSUER", lambda v: v.strip()),
    "log_level": ("IDP_LOG_LEVEL", lambda v: v.strip().upper()),
    "cache_ttl_ms": ("IDP_CACHE_TTL_MS", int),
    "max_body_bytes": ("IDP_MAX_BODY_BYTES", int),
    "proxy_hops": ("IDP_PROXY_HOPS", int),
    "retry_after_seconds": ("IDP_RETRY_AFTER_SECONDS", int),
    "queue_block_size": ("IDP_QUEUE_BLOCK_SIZE", int),
    "queue_auto_recover": ("IDP_QUEUE_AUTO_RECOVER", _bool),
    "queue_join_batch": ("IDP_QUEUE_JOIN_BATCH", int),
    "visitor_cookie": ("IDP_VISITOR_COOKIE", str.strip),
    "admission_cookie_prefix": ("IDP_ADMISSION_COOKIE_PREFIX", str.strip),
    "verify_cookie": ("IDP_VERIFY_COOKIE", str.strip),
    "verify_events": ("IDP_VERIFY_EVENTS", lambda v: tuple(e.strip() for e in v.split(",") if e.strip())),
    "session_cache_seconds": ("IDP_SESSION_CACHE_SECONDS", float),
    "key_rotation_grace_seconds": ("IDP_KEY_ROTATION_GRACE_SECONDS", int),
    "key_refresh_seconds": ("IDP_KEY_REFRESH_SECONDS", float),
    "jwks_max_age": ("IDP_JWKS_MAX_AGE", int),
    "instance_path": ("IDP_INSTANCE_PATH", str.strip),
    "synthetic_email_domain": ("IDP_SYNTHETIC_EMAIL_DOMAIN", str.strip),
    "demo": ("IDP_DEMO", _bool),
    "allow_private_targets": ("IDP_ALLOW_PRIVATE_TARGETS", _bool),
    "template_dir": ("IDP_TEMPLATE_DIR", _optional),
    "cors_origins": ("IDP_CORS_ORIGINS", parse_origin_setting),
    "landing_page": ("IDP_LANDING_PAGE", lambda v: v.strip().lower()),
    "rate_limits": ("IDP_RATE_LIMITS", str.strip),
    "bind": ("IDP_BIND", str.strip),
    "workers": ("IDP_WORKERS", int),
    "threads": ("IDP_THREADS", int),
    "backlog": ("IDP_BACKLOG", int),
    "worker_timeout": ("IDP_WORKER_TIMEOUT", int),
    "keepalive": ("IDP_KEEPALIVE", int),
    "worker_class": ("IDP_WORKER_CLASS", str.strip),
    "worker_connections": ("IDP_WORKER_CONNECTIONS", int),
    "max_requests": ("IDP_MAX_REQUESTS", int),
    "host": ("IDP_HOST", str.strip),
    "port": ("IDP_PORT", int),
    "migrations_dir": ("IDP_MIGRATIONS_DIR", _optional),
}
