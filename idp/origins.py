"""Web origins (``scheme://host[:port]``) as settings, events and clients name them, framework-free.

``IDP_CORS_ORIGINS``, an event's ``cors_origins`` and a client's ``allowed_cors_origins`` are lists of
origins or ``*``; a client's redirect URIs give origins too. Everything here only parses and validates:
which answers an origin may read is ``idp.web.cors``.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

WILDCARD = "*"

_ORIGIN_RE = re.compile(r"\Ahttps?://[A-Za-z0-9.\-\[\]:]+\Z", re.IGNORECASE)
_DEFAULT_PORTS = {"http": 80, "https": 443}


class OriginError(ValueError):
    """A value is not a web origin (``scheme://host[:port]``)."""


def normalize_origin(value: object) -> str:
    """Return ``value`` as a serialized origin (lower case, default port dropped); OriginError if it is not one."""
    if not isinstance(value, str) or len(value) > 300 or not _ORIGIN_RE.match(value):
        raise OriginError("an origin is scheme://host[:port] with http or https, no path")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise OriginError(str(exc)) from None
    host = (parts.hostname or "").lower()
    if not host:
        raise OriginError("an origin needs a host")
    scheme = parts.scheme.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def origin_of_url(url: str) -> str | None:
    """The origin of an absolute http(s) URL (a redirect URI), or None."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
        return None
    try:
        return normalize_origin(f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}")
    except OriginError:
        return None


def parse_origin_setting(raw: str) -> tuple[str, ...]:
    """``IDP_CORS_ORIGINS``: ``*``, or origins separated by commas or spaces; empty allows none."""
    items = [item for item in re.split(r"[\s,]+", raw.strip()) if item]
    if WILDCARD in items:
        if len(items) > 1:
            raise ValueError("'*' stands alone")
        return (WILDCARD,)
    return tuple(dict.fromkeys(normalize_origin(item) for item in items))


def clean_origin_list(value: object, name: str) -> list[str]:
    """Validate a list of origins given through the admin API; ValueError with a sentence otherwise."""
    if not isinstance(value, list) or len(value) > 50:
        raise ValueError(f"{name} must be a list of at most 50 origins.")
    if WILDCARD in value:
        if len(value) > 1:
            raise ValueError(f"{name}: '*' stands alone.")
        return [WILDCARD]
    try:
        return list(dict.fromkeys(normalize_origin(item) for item in value))
    except OriginError:
        raise ValueError(f"{name} must hold origins such as https://shop.example.com (no path).") from None
