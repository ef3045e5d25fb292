"""Per-client rate limits with the ``limits`` library: moving windows on the queue's Redis, or on the database.

A limit is named after what it protects and keyed by (event, client address) or by address alone:

=================  =====================  ==================================================================
name               default                counts
=================  =====================  ==================================================================
``join``           ``100/minute``         places taken (API, queue-first page, ``/authorize``), per event
``generate_token`` ``120/minute``         first token issuances (repeats for a request id are free), per event
``token``          ``60/minute``          failed ``/token`` calls (bad client, code or refresh token)
``introspect``     ``60/minute``          failed ``/introspect`` calls (bad client credentials)
``admin_auth``     ``60/minute``          requests with a wrong admin key; a valid key is never refused
=================  =====================  ==================================================================

``IDP_RATE_LIMITS`` is ``off`` (no limits at all) or a list such as
``join=300/minute,20/second; token=off`` (``;`` between names, ``,`` between the limits of one name, each
in the ``limits`` notation ``N/[M ]unit`` or ``N per M units``); names not listed keep their default.
An event's ``rate_limits`` field (``{"join": "1000/minute"}``) replaces the global spec of ``join`` and
``generate_token`` for that event, e.g. for a sale behind a carrier NAT.

Moving windows: a hit is refused while the last ``N`` accepted hits all fall within the window, so no
burst doubles at a window edge. With Redis each check is one Lua call on a single key carrying the
event's hash tag (Redis Cluster safe); without Redis the hits live in the ``rate_limit_hits`` table,
shared by every process.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from limits import RateLimitItem, parse_many
from limits.storage import Storage
from limits.strategies import MovingWindowRateLimiter

from idp.errors import IdpError, ValidationError

log = logging.getLogger("idp.abuse")

LIMIT_NAMES = ("join", "generate_token", "token", "introspect", "admin_auth")
EVENT_LIMIT_NAMES = ("join", "generate_token")
DEFAULT_LIMITS: dict[str, str] = {
    "join": "100/minute",
    "generate_token": "120/minute",
    "token": "60/minute",
    "introspect": "60/minute",
    "admin_auth": "60/minute",
}
MAX_SPEC_CHARS = 200


class RateLimitedError(IdpError):
    """429 with ``Retry-After``: this client made too many calls of one kind."""

    code = "rate_limited"
    status = 429
    message = "Too many requests from this address; retry after the time in Retry-After."

    def __init__(self, limit: str, retry_after: int) -> None:
        super().__init__()
        self.limit = limit
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


def parse_limit(value: str, what: str) -> tuple[RateLimitItem, ...]:
    """One name's limits (``"100/minute,10/second"``); ``off`` is none. ValueError on anything else."""
    text = value.strip()
    if text.lower() == "off":
        return ()
    if not text or len(text) > MAX_SPEC_CHARS or ";" in text or "|" in text:
        raise ValueError(f"{what}: not a rate limit: {value!r}")
    try:
        items = tuple(parse_many(text))
    except ValueError as exc:
        raise ValueError(f"{what}: not a rate limit: {value!r}") from exc
    if not items or any(item.amount < 1 for item in items):
        raise ValueError(f"{what}: not a rate limit: {value!r}")
    return items


@dataclass(frozen=True)
class LimitSpec:
    """The limits in force for each name; ``enabled`` false switches every limit off."""

    enabled: bool = True
    limits: Mapping[str, tuple[RateLimitItem, ...]] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> LimitSpec:
        """Read ``IDP_RATE_LIMITS``: empty for the defaults, ``off``, or ``name=limits; ...``."""
        text = (raw or "").strip()
        if text.lower() == "off":
            return cls(enabled=False, limits={})
        chosen = dict(DEFAULT_LIMITS)
        for part in filter(None, (p.strip() for p in text.split(";"))):
            name, sep, value = part.partition("=")
            name = name.strip()
            if not sep or name not in LIMIT_NAMES:
                raise ValueError(f"IDP_RATE_LIMITS: unknown entry {part!r}; names are {', '.join(LIMIT_NAMES)}")
            chosen[name] = value
        return cls(True, {name: parse_limit(value, f"IDP_RATE_LIMITS {name}") for name, value in chosen.items()})

    def for_name(self, name: str, override: Mapping[str, str] | None = None) -> tuple[RateLimitItem, ...]:
        if not self.enabled:
            return ()
        if override and name in override:
            return parse_limit(override[name], f"rate_limits.{name}")
        return self.limits.get(name, ())


def clean_event_limits(value: object) -> dict[str, str]:
    """Validate an event's ``rate_limits`` field: ``{"join"?: spec, "generate_token"?: spec}``."""
    if not isinstance(value, dict):
        raise ValidationError("rate_limits must be an object.", code="invalid_field")
    cleaned: dict[str, str] = {}
    for name, spec in value.items():
        if name not in EVENT_LIMIT_NAMES:
            raise ValidationError(f"rate_limits accepts only {', '.join(EVENT_LIMIT_NAMES)}.", code="invalid_field")
        if spec is None:
            continue
        if not isinstance(spec, str):
            raise ValidationError(f"rate_limits.{name} must be a string such as 100/minute.", code="invalid_field")
        try:
            parse_limit(spec, f"rate_limits.{name}")
        except ValueError:
            raise ValidationError(
                f"rate_limits.{name} must be 'off' or limits such as '100/minute' or '10/second,300/hour'.",
                code="invalid_field",
            ) from None
        cleaned[name] = spec.strip()
    return cleaned


class Limiter:
    """Check and count hits against moving windows; a storage failure lets the call through (logged, counted)."""

    def __init__(
        self,
        spec: LimitSpec,
        storage: Storage | None,
        on_refusal: Callable[[str, str | None], None] | None = None,
        on_storage_error: Callable[[], None] | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self.now = now
        self.storage = storage
        self._strategy = MovingWindowRateLimiter(storage) if storage is not None and spec.enabled else None
        self._on_refusal = on_refusal
        self._on_storage_error = on_storage_error
        errors: Any = storage.base_exceptions if storage is not None else ()
        self._storage_errors: tuple[type[BaseException], ...] = errors if isinstance(errors, tuple) else (errors,)

    @property
    def enabled(self) -> bool:
        return self._strategy is not None

    @staticmethod
    def _identifiers(name: str, event_id: str | None, address: str) -> tuple[str, ...]:
        # The event id as a hash tag keeps an event's limits with its queue on a Redis Cluster node.
        subject = limit_subject(address)
        return (name, "{" + event_id + "}", subject) if event_id else (name, subject)

    def _refuse(self, item: RateLimitItem, ids: tuple[str, ...], name: str, event_id: str | None) -> None:
        assert self._strategy is not None
        retry_after = 1
        try:
            stats = self._strategy.get_window_stats(item, *ids)
            retry_after = math.ceil(stats.reset_time - self.now())
        except self._storage_errors:
            pass
        if self._on_refusal is not None:
            self._on_refusal(name, event_id)
        raise RateLimitedError(name, retry_after)

    def _storage_failed(self, name: str) -> None:
        # Fail open: an unreachable limiter store must not stop honest visitors (the queue answers 503 itself).
        log.warning("rate limit storage unavailable; letting the call through", extra={"limit": name})
        if self._on_storage_error is not None:
            self._on_storage_error()

    def hit(self, name: str, event_id: str | None, address: str, override: Mapping[str, str] | None = None) -> None:
        """Count one call; raise RateLimitedError when any limit of ``name`` is exhausted (nothing counted then)."""
        if self._strategy is None:
            return
        items = self.spec.for_name(name, override)
        ids = self._identifiers(name, event_id, address)
        try:
            for item in items:
                if not self._strategy.test(item, *ids):
                    self._refuse(item, ids, name, event_id)
            for item in items:
                if not self._strategy.hit(item, *ids):
                    self._refuse(item, ids, name, event_id)
        except self._storage_errors:
            self._storage_failed(name)

    def hit_one(self, name: str, event_id: str | None, address: str, override: Mapping[str, str] | None = None) -> None:
        """Like ``hit`` with a single storage call when the name has one limit (the join's common case)."""
        if self._strategy is None:
            return
        items = self.spec.for_name(name, override)
        if len(items) != 1:
            self.hit(name, event_id, address, override)
            return
        ids = self._identifiers(name, event_id, address)
        try:
            if not self._strategy.hit(items[0], *ids):
                self._refuse(items[0], ids, name, event_id)
        except self._storage_errors:
            self._storage_failed(name)

    def check(self, name: str, event_id: str | None, address: str) -> None:
        """Raise RateLimitedError if ``name`` is exhausted for this client, without counting anything."""
        if self._strategy is None:
            return
        ids = self._identifiers(name, event_id, address)
        try:
            for item in self.spec.for_name(name):
                if not self._strategy.test(item, *ids):
                    self._refuse(item, ids, name, event_id)
        except self._storage_errors:
            self._storage_failed(name)

    def count(self, name: str, event_id: str | None, address: str) -> None:
        """Count one call (a failure) without refusing it; the next ``check`` refuses when over."""
        if self._strategy is None:
            return
        ids = self._identifiers(name, event_id, address)
        try:
            for item in self.spec.for_name(name):
                self._strategy.hit(item, *ids)
        except self._storage_errors:
            self._storage_failed(name)


def limit_subject(address: str) -> str:
    """Whom a limit counts: an IPv4 address, or the /64 network of an IPv6 one.

    One IPv6 client usually holds a whole /64 and can pick a fresh address in it for every request, so counting
    single IPv6 addresses would give it a fresh limit per request.
    """
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def client_address(environ: Mapping[str, Any], proxy_hops: int) -> str:
    """The client's address as werkzeug's ProxyFix sees it: the ``proxy_hops``-th X-Forwarded-For from the right."""
    remote = str(environ.get("REMOTE_ADDR") or "unknown")
    if proxy_hops <= 0:
        return remote
    forwarded = environ.get("HTTP_X_FORWARDED_FOR")
    if not forwarded:
        return remote
    values = str(forwarded).split(",")
    if len(values) < proxy_hops:
        return remote
    chosen = values[-proxy_hops].strip()
    return chosen[:64] if chosen else remote
