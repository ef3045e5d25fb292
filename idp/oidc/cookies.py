"""The sign-in side's cookies: the browser's long-lived visitor cookie and its admitted cookie per event.

* The visitor cookie (``IDP_VISITOR_COOKIE``) names the browser: its place in each event and its
  pairwise ``sub`` at every relying party. It lives as long as browsers allow (400 days).
* The admitted cookie (``IDP_ADMISSION_COOKIE_PREFIX<event_id>``) is signed, not secret: it lets a
  returning admitted browser be answered without a queue-store call until its session ends.

Both are HttpOnly, SameSite=Lax, path ``/`` and Secure under an https issuer (``__Host-`` prefixed then).
Readers take the request's cookies as a mapping; writers take any Werkzeug response.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from werkzeug.wrappers import Response

from idp.config import Settings
from idp.oidc.claims import Admission
from idp.oidc.interaction import valid_visitor_id

VISITOR_COOKIE_SECONDS = 400 * 86400  # browsers cap cookie lifetimes at 400 days
ADMISSION_SALT = "idp-admission"


def _secure(settings: Settings) -> bool:
    return settings.issuer.startswith("https://")


def read_visitor_cookie(cookies: Mapping[str, str], settings: Settings) -> tuple[str | None, bool]:
    """The browser's visitor id, and True when it came under the name used before ``__Host-`` cookies.

    A browser that got its cookie before the service moved to ``__Host-`` names keeps its visitor id
    (and so its ``sub`` at every relying party); the caller sets it again under the new name."""
    name = settings.cookie_name(settings.visitor_cookie)
    current = valid_visitor_id(cookies.get(name))
    if current is not None or name == settings.visitor_cookie:
        return current, False
    legacy = valid_visitor_id(cookies.get(settings.visitor_cookie))
    return legacy, legacy is not None


def set_visitor_cookie(response: Response, settings: Settings, visitor_id: str) -> None:
    response.set_cookie(
        settings.cookie_name(settings.visitor_cookie),
        visitor_id,
        max_age=VISITOR_COOKIE_SECONDS,
        httponly=True,
        samesite="Lax",
        secure=_secure(settings),
        path="/",
    )


def _serializer(settings: Settings) -> URLSafeSerializer:
    # Signs with IDP_SECRET_KEY (itsdangerous signs with the last key) and reads what a previous secret signed.
    return URLSafeSerializer(list(reversed(settings.secret_keys)), salt=ADMISSION_SALT)


def admission_cookie_name(settings: Settings, event_id: str) -> str:
    return settings.cookie_name(settings.admission_cookie_prefix) + event_id


def admission_cookie_events(cookies: Mapping[str, str], settings: Settings) -> list[str]:
    """The events this browser holds an admitted cookie of."""
    prefix = admission_cookie_name(settings, "")
    return [name[len(prefix) :] for name in cookies if name.startswith(prefix) and len(name) > len(prefix)]


def read_admission_cookie(cookies: Mapping[str, str], settings: Settings, event_id: str) -> dict[str, Any] | None:
    """The signed admitted cookie of the event; None when absent, oversized or not ours."""
    raw = cookies.get(admission_cookie_name(settings, event_id))
    if not raw or len(raw) > 2000:
        return None
    try:
        value = _serializer(settings).loads(raw)
    except BadSignature:
        return None
    return value if isinstance(value, dict) else None


def set_admission_cookie(response: Response, settings: Settings, admission: Admission, max_age: int) -> None:
    payload = {
        "v": admission.visitor_id,
        "e": admission.event_id,
        "r": admission.request_id,
        "q": admission.queue_position,
        "t": admission.admitted_at,
    }
    response.set_cookie(
        admission_cookie_name(settings, admission.event_id),
        _serializer(settings).dumps(payload),
        max_age=max(1, max_age),
        httponly=True,
        samesite="Lax",
        secure=_secure(settings),
        path="/",
    )


def clear_admission_cookie(response: Response, settings: Settings, event_id: str) -> None:
    response.delete_cookie(
        admission_cookie_name(settings, event_id), path="/", httponly=True, samesite="Lax", secure=_secure(settings)
    )
