"""Events (waiting rooms): validation, storage and a short-lived in-process view of their settings."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from idp.cache import TTLCache
from idp.clock import Clock
from idp.crypto import Secrets
from idp.errors import ConflictError, NotFoundError, ValidationError
from idp.events import lottery
from idp.events.lifecycle import MODES
from idp.origins import clean_origin_list
from idp.queue.engine import ExpiryPolicy
from idp.storage.db import Database
from idp.storage.models import Event
from idp.targets import check_outbound
from idp.validation import CALLABLE_URL_RE, IDENTIFIER_RE

EVENT_ID_RE = IDENTIFIER_RE
MAX_PERIOD = 10 * 365 * 86400


class EventNotFoundError(NotFoundError):
    code = "event_not_found"
    message = "No such event."


@dataclass(frozen=True)
class EventConfig:
    event_id: str
    name: str = ""
    enable_queue_position_expiry: bool = True
    queue_position_expiry_period: int = 900
    incr_serving_on_expiry: bool = False
    token_validity_period: int = 3600
    branding: dict[str, Any] = field(default_factory=dict)
    allowed_return_urls: list[str] = field(default_factory=list)
    # Origins whose scripts may read the public queue API's answers; None follows IDP_CORS_ORIGINS.
    cors_origins: list[str] | None = None
    created_at: int = 0
    updated_at: int = 0
    prequeue_opens_at: int | None = None
    opens_at: int | None = None
    closes_at: int | None = None
    mode: str = "queue"
    max_active: int | None = None
    max_per_minute: int | None = None
    session_idle_seconds: int | None = None

    @property
    def has_targets(self) -> bool:
        """True when the worker admits by itself to hold ``max_active`` / ``max_per_minute``."""
        return self.max_active is not None or self.max_per_minute is not None

    # Abuse defence (idp.abuse): limits replacing the global ones, the join gate, what refused joins get.
    rate_limits: dict[str, str] | None = None
    challenge: dict[str, Any] | None = None
    on_refusal: str = "refuse"

    @property
    def infinite_queue(self) -> bool:
        return self.on_refusal == "infinite_queue"

    @property
    def policy(self) -> ExpiryPolicy:
        return ExpiryPolicy(
            enabled=self.enable_queue_position_expiry,
            period=self.queue_position_expiry_period,
            incr_serving_on_expiry=self.incr_serving_on_expiry,
        )

    def to_dict(self) -> dict[str, Any]:
        """The event as the admin API shows it: a captcha secret is never shown, only that it is set."""
        data = dataclasses.asdict(self)
        if self.challenge is not None:
            data["challenge"] = public_challenge(self.challenge)
        return data

    @classmethod
    def from_row(cls, row: Event) -> EventConfig:
        return cls(
            event_id=row.event_id,
            name=row.name,
            enable_queue_position_expiry=row.enable_queue_position_expiry,
            queue_position_expiry_period=row.queue_position_expiry_period,
            incr_serving_on_expiry=row.incr_serving_on_expiry,
            token_validity_period=row.token_validity_period,
            branding=dict(row.branding or {}),
            allowed_return_urls=list(row.allowed_return_urls or []),
            cors_origins=None if row.cors_origins is None else list(row.cors_origins),
            created_at=row.created_at,
            updated_at=row.updated_at,
            prequeue_opens_at=row.prequeue_opens_at,
            opens_at=row.opens_at,
            closes_at=row.closes_at,
            mode=row.mode or "queue",
            max_active=row.max_active,
            max_per_minute=row.max_per_minute,
            session_idle_seconds=row.session_idle_seconds,
            rate_limits=dict(row.rate_limits) if row.rate_limits else None,
            challenge=dict(row.challenge) if row.challenge else None,
            on_refusal=row.on_refusal or "refuse",
        )


def validate_event_id(value: object) -> str:
    if not isinstance(value, str) or not EVENT_ID_RE.match(value):
        raise ValidationError(
            "event_id must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit.",
            code="invalid_event_id",
        )
    return value


def _bool_field(data: dict[str, Any], name: str) -> bool:
    value = data[name]
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be true or false.", code="invalid_field")
    return value


def _int_field(data: dict[str, Any], name: str, low: int, high: int) -> int:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(f"{name} must be an integer from {low} to {high}.", code="invalid_field")
    return value


def _url_list(data: dict[str, Any], name: str) -> list[str]:
    value = data[name]
    if not isinstance(value, list) or len(value) > 50:
        raise ValidationError(f"{name} must be a list of at most 50 URLs.", code="invalid_field")
    for url in value:
        if not isinstance(url, str) or len(url) > 2000 or not re.match(r"\Ahttps?://[^\s]+\Z", url):
            raise ValidationError(f"{name} must hold absolute http(s) URLs.", code="invalid_field")
    return list(value)


BRANDING_FIELDS = {"title": 200, "message": 2000, "logo_url": 2000, "primary_color": 7, "background_color": 7}


def _branding(data: dict[str, Any]) -> dict[str, Any]:
    value = data["branding"]
    if not isinstance(value, dict):
        raise ValidationError("branding must be an object.", code="invalid_field")
    cleaned: dict[str, Any] = {}
    for key, item in value.items():
        if key not in BRANDING_FIELDS:
            raise ValidationError(f"branding accepts only {', '.join(sorted(BRANDING_FIELDS))}.", code="invalid_field")
        if item is None:
            continue
        if not isinstance(item, str) or len(item) > BRANDING_FIELDS[key]:
            raise ValidationError(f"branding.{key} must be a short string.", code="invalid_field")
        if key.endswith("_color") and not re.match(r"\A#[0-9a-fA-F]{6}\Z", item):
            raise ValidationError(f"branding.{key} must be a colour like #1a2b3c.", code="invalid_field")
        if key == "logo_url" and not re.match(r"\A(https://|/)[^\s\"'<>]*\Z", item):
            raise ValidationError("branding.logo_url must be an https URL or a path.", code="invalid_field")
        cleaned[key] = item
    return cleaned


SCHEDULE_FIELDS = ("prequeue_opens_at", "opens_at", "closes_at")
TARGET_FIELDS = {"max_active": 1_000_000_000, "max_per_minute": 1_000_000_000, "session_idle_seconds": MAX_PERIOD}
MAX_TIME = 2**40


def _optional_int(data: dict[str, Any], name: str, low: int, high: int) -> int | None:
    if data[name] is None:
        return None
    return _int_field(data, name, low, high)


def check_schedule(values: dict[str, Any]) -> None:
    """The schedule's times must come in order: pre-queue < opening < closing."""
    pre, opens, closes = (values.get(name) for name in SCHEDULE_FIELDS)
    if pre is not None and opens is None:
        raise ValidationError("prequeue_opens_at needs opens_at (the draw happens at opening).", code="invalid_field")
    if pre is not None and opens is not None and pre >= opens:
        raise ValidationError("prequeue_opens_at must be before opens_at.", code="invalid_field")
    if opens is not None and closes is not None and opens >= closes:
        raise ValidationError("opens_at must be before closes_at.", code="invalid_field")


def clean_event_fields(data: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    """Validate the writable fields of an event; unknown fields are refused so typos are not lost."""
    allowed = {
        "name",
        "enable_queue_position_expiry",
        "queue_position_expiry_period",
        "incr_serving_on_expiry",
        "token_validity_period",
        "branding",
        "allowed_return_urls",
        "mode",
        *SCHEDULE_FIELDS,
        *TARGET_FIELDS,
        "cors_origins",
        "rate_limits",
        "challenge",
        "on_refusal",
    }
    if not partial:
        allowed.add("event_id")
    unknown = set(data) - allowed
    if unknown:
        raise ValidationError(f"Unknown field(s): {', '.join(sorted(unknown))}.", code="unknown_field")
    cleaned: dict[str, Any] = {}
    if "event_id" in data:
        cleaned["event_id"] = validate_event_id(data["event_id"])
    elif not partial:
        raise ValidationError("event_id is required.", code="missing_field")
    if "name" in data:
        if not isinstance(data["name"], str) or len(data["name"]) > 200:
            raise ValidationError("name must be a string of at most 200 characters.", code="invalid_field")
        cleaned["name"] = data["name"]
    for name in ("enable_queue_position_expiry", "incr_serving_on_expiry"):
        if name in data:
            cleaned[name] = _bool_field(data, name)
    if "queue_position_expiry_period" in data:
        cleaned["queue_position_expiry_period"] = _int_field(data, "queue_position_expiry_period", 1, MAX_PERIOD)
    if "token_validity_period" in data:
        cleaned["token_validity_period"] = _int_field(data, "token_validity_period", 1, MAX_PERIOD)
    if "allowed_return_urls" in data:
        cleaned["allowed_return_urls"] = _url_list(data, "allowed_return_urls")
    if "branding" in data:
        cleaned["branding"] = _branding(data)
    for name in SCHEDULE_FIELDS:
        if name in data:
            cleaned[name] = _optional_int(data, name, 0, MAX_TIME)
    for name, high in TARGET_FIELDS.items():
        if name in data:
            cleaned[name] = _optional_int(data, name, 1 if name == "session_idle_seconds" else 0, high)
    if "mode" in data:
        if data["mode"] not in MODES:
            raise ValidationError(f"mode must be one of {', '.join(MODES)}.", code="invalid_field")
        cleaned["mode"] = data["mode"]
    if "cors_origins" in data:
        value = data["cors_origins"]
        try:
            cleaned["cors_origins"] = None if value is None else clean_origin_list(value, "cors_origins")
        except ValueError as exc:
            raise ValidationError(str(exc), code="invalid_field") from None
    if "rate_limits" in data:
        from idp.abuse.limits import clean_event_limits

        cleaned["rate_limits"] = (
            None if data["rate_limits"] is None else clean_event_limits(data["rate_limits"]) or None
        )
    if "challenge" in data:
        cleaned["challenge"] = None if data["challenge"] is None else clean_challenge(data["challenge"])
    if "on_refusal" in data:
        if data["on_refusal"] not in ON_REFUSAL:
            raise ValidationError("on_refusal must be 'refuse' or 'infinite_queue'.", code="invalid_field")
        cleaned["on_refusal"] = data["on_refusal"]
    return cleaned


ON_REFUSAL = ("refuse", "infinite_queue")
CAPTCHA_FIELDS = {"kind", "provider", "site_key", "secret", "verify_url", "timeout", "fail_open"}


def clean_challenge(value: object) -> dict[str, Any]:
    """Validate the join gate: ``{"kind": "proof_of_work", "difficulty"?}`` or a captcha provider's settings.

    A captcha ``secret`` comes back as ``secret`` in clear; the event service encrypts it before storing.
    """
    from idp.abuse.captcha import DEFAULT_TIMEOUT_SECONDS, PROVIDERS
    from idp.abuse.challenge import DEFAULT_DIFFICULTY, MAX_DIFFICULTY, MIN_DIFFICULTY

    if not isinstance(value, dict):
        raise ValidationError("challenge must be an object or null.", code="invalid_field")
    kind = value.get("kind")
    if kind == "proof_of_work":
        unknown = set(value) - {"kind", "difficulty"}
        if unknown:
            raise ValidationError("challenge accepts kind and difficulty for proof_of_work.", code="invalid_field")
        difficulty = value.get("difficulty", DEFAULT_DIFFICULTY)
        if isinstance(difficulty, bool) or not isinstance(difficulty, int):
            difficulty = -1
        if not MIN_DIFFICULTY <= difficulty <= MAX_DIFFICULTY:
            raise ValidationError(
                f"challenge.difficulty must be an integer from {MIN_DIFFICULTY} to {MAX_DIFFICULTY}.",
                code="invalid_field",
            )
        return {"kind": "proof_of_work", "difficulty": difficulty}
    if kind == "captcha":
        unknown = set(value) - CAPTCHA_FIELDS
        if unknown:
            raise ValidationError(f"challenge accepts {', '.join(sorted(CAPTCHA_FIELDS))}.", code="invalid_field")
        provider = value.get("provider")
        if provider not in PROVIDERS:
            raise ValidationError(
                f"challenge.provider must be one of {', '.join(sorted(PROVIDERS))}.", code="invalid_field"
            )
        cleaned: dict[str, Any] = {"kind": "captcha", "provider": provider}
        for name in ("site_key", "secret"):
            item = value.get(name)
            if not isinstance(item, str) or not 1 <= len(item) <= 500 or not item.isprintable():
                raise ValidationError(f"challenge.{name} must be a non-empty string.", code="invalid_field")
            cleaned[name] = item
        url = value.get("verify_url")
        if url is not None:
            if not isinstance(url, str) or not CALLABLE_URL_RE.match(url):
                raise ValidationError("challenge.verify_url must be an absolute http(s) URL.", code="invalid_field")
            cleaned["verify_url"] = url
        timeout = value.get("timeout", DEFAULT_TIMEOUT_SECONDS)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0.1 <= timeout <= 30:
            raise ValidationError("challenge.timeout must be 0.1 to 30 seconds.", code="invalid_field")
        cleaned["timeout"] = float(timeout)
        fail_open = value.get("fail_open", False)
        if not isinstance(fail_open, bool):
            raise ValidationError("challenge.fail_open must be true or false.", code="invalid_field")
        cleaned["fail_open"] = fail_open
        return cleaned
    raise ValidationError("challenge.kind must be proof_of_work or captcha.", code="invalid_field")


def public_challenge(stored: dict[str, Any]) -> dict[str, Any]:
    """The gate as shown to operators: everything but the captcha secret."""
    shown = {k: v for k, v in stored.items() if k not in ("secret", "secret_encrypted")}
    if stored.get("kind") == "captcha":
        shown["has_secret"] = bool(stored.get("secret_encrypted"))
    return shown


class EventService:
    """Create, read, update and delete events; reads are served from a short cache."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        cache_ttl: float,
        secret_keys: Secrets = "",
        *,
        public_targets_only: bool = False,
    ) -> None:
        self.db = db
        self.clock = clock
        self._secret_keys = secret_keys
        # Production: a captcha verify_url must resolve to public addresses (checked again at each use).
        self.public_targets_only = public_targets_only
        self._cache: TTLCache[EventConfig | None] = TTLCache(cache_ttl)

    def _load(self, event_id: str) -> EventConfig | None:
        with self.db.session(readonly=True) as session:
            row = session.get(Event, event_id)
            return None if row is None else EventConfig.from_row(row)

    def get(self, event_id: object) -> EventConfig:
        """Return an event's settings or raise EventNotFoundError (malformed ids are 400)."""
        event_id = validate_event_id(event_id)
        config = self._cache.get(event_id, lambda: self._load(event_id))
        if config is None:
            raise EventNotFoundError()
        return config

    def get_fresh(self, event_id: object) -> EventConfig:
        self._cache.invalidate(validate_event_id(event_id))
        return self.get(event_id)

    def list(self, limit: int = 100, after: str | None = None) -> list[EventConfig]:
        with self.db.session(readonly=True) as session:
            stmt = select(Event).order_by(Event.event_id).limit(limit)
            if after:
                stmt = stmt.where(Event.event_id > after)
            return [EventConfig.from_row(row) for row in session.execute(stmt).scalars()]

    def cors_origin_lists(self) -> tuple[tuple[str, ...], ...]:
        """Every event's own ``cors_origins`` list (events without one follow the default)."""
        with self.db.session(readonly=True) as session:
            rows = session.execute(select(Event.cors_origins).where(Event.cors_origins.is_not(None))).scalars()
            return tuple(tuple(value) for value in rows if value)

    def _seal(self, cleaned: dict[str, Any]) -> dict[str, Any]:
        """Encrypt a captcha secret before it is stored (like signing keys, with a key from IDP_SECRET_KEY)."""
        challenge = cleaned.get("challenge")
        if challenge and "secret" in challenge:
            from idp.abuse.sealing import seal_captcha_secret

            challenge = dict(challenge)
            secret = challenge.pop("secret")
            challenge["secret_encrypted"] = seal_captcha_secret(self._secret_keys, cleaned.get("event_id", ""), secret)
            cleaned = {**cleaned, "challenge": challenge}
        return cleaned

    def _check_targets(self, cleaned: dict[str, Any]) -> None:
        """Refuse, when it is saved, a captcha verify_url that production would refuse to call."""
        challenge = cleaned.get("challenge")
        url = challenge.get("verify_url") if isinstance(challenge, dict) else None
        if self.public_targets_only and url:
            check_outbound(url, "challenge.verify_url")

    def create(self, data: dict[str, Any]) -> EventConfig:
        cleaned = clean_event_fields(data, partial=False)
        self._check_targets(cleaned)
        cleaned = self._seal(cleaned)
        now = int(self.clock.now())
        with self.db.session() as session:
            if session.get(Event, cleaned["event_id"]) is not None:
                raise ConflictError("An event with this event_id exists.", code="event_exists")
            defaults = EventConfig(cleaned["event_id"]).to_dict()
            check_schedule({**defaults, **cleaned})
            row = Event(**{**defaults, **cleaned, "created_at": now, "updated_at": now})
            session.add(row)
            session.flush()
            config = EventConfig.from_row(row)
            if config.prequeue_opens_at is not None:
                # The commitment is made in the request that sets the pre-queue, before any entry.
                lottery.commit(session, config.event_id, now)
        self._cache.invalidate(config.event_id)
        return config

    def update(self, event_id: str, data: dict[str, Any]) -> EventConfig:
        event_id = validate_event_id(event_id)
        fields = clean_event_fields(data, partial=True)
        self._check_targets(fields)
        cleaned = self._seal({**fields, "event_id": event_id})
        del cleaned["event_id"]
        with self.db.session() as session:
            row = session.get(Event, event_id)
            if row is None:
                raise EventNotFoundError()
            check_schedule({**EventConfig.from_row(row).to_dict(), **cleaned})
            for key, value in cleaned.items():
                setattr(row, key, value)
            row.updated_at = int(self.clock.now())
            session.flush()
            config = EventConfig.from_row(row)
            if config.prequeue_opens_at is not None:
                lottery.commit(session, config.event_id, row.updated_at)
        self._cache.invalidate(event_id)
        return config

    def reseal_secrets(self) -> int:
        """Seal captcha secrets stored under a previous IDP_SECRET_KEY again under the current one (at start)."""
        from idp.abuse.sealing import captcha_needs_resealing, open_captcha_secret, seal_captcha_secret

        count = 0
        with self.db.session() as session:
            for row in session.execute(select(Event).where(Event.challenge.is_not(None))).scalars():
                challenge = dict(row.challenge or {})
                blob = str(challenge.get("secret_encrypted") or "")
                if not blob or not captcha_needs_resealing(self._secret_keys, blob):
                    continue
                secret = open_captcha_secret(self._secret_keys, row.event_id, blob)
                if secret is None:
                    continue
                challenge["secret_encrypted"] = seal_captcha_secret(self._secret_keys, row.event_id, secret)
                row.challenge = challenge
                count += 1
        self._cache.invalidate()
        return count

    def delete(self, event_id: str) -> None:
        event_id = validate_event_id(event_id)
        with self.db.session() as session:
            row = session.get(Event, event_id)
            if row is None:
                raise EventNotFoundError()
            session.delete(row)
            lottery.discard(session, event_id)
        self._cache.invalidate(event_id)

    def ensure(self, event_id: str, name: str = "") -> EventConfig:
        """Return the event, creating it with defaults if it does not exist."""
        try:
            return self.get_fresh(event_id)
        except EventNotFoundError:
            try:
                return self.create({"event_id": event_id, "name": name})
            except ConflictError:
                return self.get_fresh(event_id)
