"""The waiting pages' cookies: the browser's place per event and its chosen language.

The place cookie (``idp_place_<event_id>``, ``__Host-`` prefixed under https) is
``<request_id>.<position>.<signature>``: the position (fixed for the life of a place) lets a waiting
visitor's status be answered from the cached serving counter, with no queue-store call; the signature
keeps it honest. A bare request id is accepted, without the position. Both cookies are HttpOnly,
SameSite=Lax and Secure under an https issuer. Readers take the request's cookies as a mapping; writers
take any Werkzeug response.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from werkzeug.wrappers import Response

from idp.config import Settings
from idp.queue.engine import REQUEST_ID_RE

LANGUAGE_COOKIE = "idp_lang"
LANGUAGE_COOKIE_MAX_AGE = 365 * 86400
# The browser's place per event, for the status endpoint (no database read while waiting).
PLACE_COOKIE_PREFIX = "idp_place_"
PLACE_COOKIE_MAX_AGE = 7 * 86400


def _secure(settings: Settings) -> bool:
    return settings.issuer.startswith("https://")


def place_cookie_name(settings: Settings, event_id: str) -> str:
    return f"{settings.cookie_name(PLACE_COOKIE_PREFIX)}{event_id}"


def place_signature(settings: Settings, event_id: str, request_id: str, position: int) -> str:
    message = f"idp-place:{event_id}:{request_id}:{position}".encode()
    return hmac.new(settings.secret_key.encode(), message, hashlib.sha256).hexdigest()[:32]


def read_place(cookies: Mapping[str, str], settings: Settings, event_id: str) -> tuple[str | None, int | None]:
    """This browser's place in the event from its cookie: the request id, and its position if signed."""
    value = cookies.get(place_cookie_name(settings, event_id), "")
    request_id, _, rest = value.partition(".")
    if not REQUEST_ID_RE.match(request_id):
        return None, None
    position_text, _, signature = rest.partition(".")
    if not position_text.isdigit() or len(position_text) > 19:
        return request_id, None
    position = int(position_text)
    expected = place_signature(settings, event_id, request_id, position)
    return request_id, (position if hmac.compare_digest(expected, signature) else None)


def set_place_cookie(
    response: Response, settings: Settings, event_id: str, request_id: str, position: int | None = None
) -> None:
    value = request_id
    if position is not None:
        value = f"{request_id}.{position}.{place_signature(settings, event_id, request_id, position)}"
    response.set_cookie(
        place_cookie_name(settings, event_id),
        value,
        max_age=PLACE_COOKIE_MAX_AGE,
        path="/",
        secure=_secure(settings),
        httponly=True,
        samesite="Lax",
    )


def holds_a_cookie(cookies: Mapping[str, str], settings: Settings, event_id: str) -> bool:
    """True when the request carries this service's visitor or place cookie (or their older names)."""
    names = (
        settings.cookie_name(settings.visitor_cookie),
        settings.visitor_cookie,
        place_cookie_name(settings, event_id),
        f"{PLACE_COOKIE_PREFIX}{event_id}",
    )
    return any(cookies.get(name) for name in names)


def set_language_cookie(response: Response, settings: Settings, language: str) -> None:
    response.set_cookie(
        LANGUAGE_COOKIE,
        language,
        max_age=LANGUAGE_COOKIE_MAX_AGE,
        path="/",
        secure=_secure(settings),
        httponly=True,
        samesite="Lax",
    )
