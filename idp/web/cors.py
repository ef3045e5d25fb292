"""Cross-origin resource sharing (the CORS protocol of the Fetch standard), framework-free.

Two surfaces answer browsers on other origins:

* the public queue API under ``/api/`` (AWS waiting pages live on their own origin): origins from
  ``IDP_CORS_ORIGINS`` (default ``*``, as AWS's API Gateway answers) or the event's ``cors_origins``;
* the OpenID Connect endpoints a single-page app calls (discovery, JWKS, token, userinfo, revocation):
  the origins of the registered clients' redirect URIs, or their ``allowed_cors_origins``.

Credentials are never allowed (no ``Access-Control-Allow-Credentials``): these calls carry their
secrets in headers or bodies, never in cookies. Origins match exactly (scheme, host and port); an
allowed origin is echoed with ``Vary: Origin`` unless the list is ``*``. The fast path and the Flask
views both take their headers from here, so an answer is the same whichever of them gives it. What an
origin is, and how settings and the admin API spell lists of them, is ``idp.origins``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from idp.cache import TTLCache
from idp.errors import IdpError
from idp.origins import WILDCARD

if TYPE_CHECKING:
    from idp.clients.service import ClientService
    from idp.events.service import EventConfig, EventService

log = logging.getLogger("idp.http")

# Browsers cap the preflight cache (Chromium at two hours); ten minutes keeps changes quick to apply.
MAX_AGE_SECONDS = 600
METHODS = "GET, POST, OPTIONS"
# What AWS's API Gateway allows, plus ours: Idempotency-Key (retried joins) and X-Request-Id.
PUBLIC_API_HEADERS = (
    "Content-Type, Authorization, Idempotency-Key, X-Api-Key, X-Amz-Date, X-Amz-Security-Token, X-Request-Id"
)
OIDC_HEADERS = "Authorization, Content-Type, X-Request-Id"
# Scripts may read these on other origins (a 503's Retry-After, the request id for support).
EXPOSE_HEADERS = "Retry-After, X-Request-Id"

Headers = list[tuple[str, str]]


@dataclass(frozen=True)
class Origins:
    """An allow list: ``*`` or exact origins."""

    wildcard: bool
    exact: frozenset[str]

    @classmethod
    def of(cls, items: Iterable[str]) -> Origins:
        values = frozenset(items)
        return cls(WILDCARD in values, values - {WILDCARD})

    def allows(self, origin: str | None) -> bool:
        return self.wildcard or (origin is not None and origin in self.exact)

    def union(self, other: Origins) -> Origins:
        return Origins(self.wildcard or other.wildcard, self.exact | other.exact)


NONE = Origins(False, frozenset())
ANY = Origins(True, frozenset())


def response_headers(allowed: Origins, origin: str | None) -> Headers:
    """Headers for an actual (not preflight) answer: the allowed origin, or only ``Vary: Origin``."""
    if allowed.wildcard:
        return [("Access-Control-Allow-Origin", WILDCARD), ("Access-Control-Expose-Headers", EXPOSE_HEADERS)]
    if origin is not None and origin in allowed.exact:
        return [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Expose-Headers", EXPOSE_HEADERS),
            ("Vary", "Origin"),
        ]
    return [("Vary", "Origin")]


def preflight_headers(allowed: Origins, origin: str | None, allow_headers: str) -> Headers:
    """Headers for a preflight (an ``OPTIONS`` request): all of them for an allowed origin, else none."""
    vary = [] if allowed.wildcard else [("Vary", "Origin")]
    if origin is None or not allowed.allows(origin):
        return vary
    return [
        ("Access-Control-Allow-Origin", WILDCARD if allowed.wildcard else origin),
        ("Access-Control-Allow-Methods", METHODS),
        ("Access-Control-Allow-Headers", allow_headers),
        ("Access-Control-Max-Age", str(MAX_AGE_SECONDS)),
        *vary,
    ]


class CorsPolicy:
    """Which origins may read which answers; per-event and per-client lists are cached like their settings."""

    def __init__(self, default: tuple[str, ...], events: EventService, clients: ClientService, ttl: float) -> None:
        self.default = Origins.of(default)
        self.events = events
        self.clients = clients
        self._lists: TTLCache[Origins] = TTLCache(ttl, max_entries=4)

    def queue_api(self, event: EventConfig | None) -> Origins:
        """The public queue API: the event's own list when it has one, else ``IDP_CORS_ORIGINS``.

        Without an event (a preflight of a join, whose body the browser does not send; a request too
        malformed to name one) any origin allowed for some event is accepted: the answer says nothing
        about a particular event.
        """
        if event is not None:
            return self.default if event.cors_origins is None else Origins.of(event.cors_origins)
        return self.default.union(self._lists.get("events", self._event_origins))

    def queue_api_for(self, event_id: object) -> Origins:
        """As ``queue_api`` for an event id that may be missing, malformed or unknown."""
        try:
            if isinstance(event_id, str) and event_id:
                try:
                    return self.queue_api(self.events.get(event_id))
                except IdpError:
                    pass  # unknown or malformed (the answer says so), or the database is down
            return self.queue_api(None)
        except Exception:  # noqa: BLE001 - an answer (often a 503 or a 500) must still go out
            log.warning("could not read the events' CORS origins; using IDP_CORS_ORIGINS")
            return self.default

    def oidc(self) -> Origins:
        """The OpenID Connect endpoints browsers call: the registered clients' origins."""
        try:
            return self._lists.get("clients", self._client_origins)
        except Exception:  # noqa: BLE001 - an answer (often a 503) must still go out
            log.warning("could not read the clients' CORS origins; allowing none")
            return NONE

    def _event_origins(self) -> Origins:
        return Origins.of(origin for origins in self.events.cors_origin_lists() for origin in origins)

    def _client_origins(self) -> Origins:
        return Origins.of(self.clients.cors_origins())
