"""Answering a request with a waiting-room page: its language, strict headers, and template values.

Every page the visitor's browser gets (the waiting pages, the challenge and decoy pages of
``idp.abuse.web``, the sign-in waiting pages of ``idp.oidc``) is rendered through here, so each carries
the same nonce CSP, language switch and branding. The templates themselves are ``idp.pages.render``.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qsl, urlencode

from flask import Response, current_app, g, request

from idp.events.service import EventConfig
from idp.pages.cookies import LANGUAGE_COOKIE, set_language_cookie
from idp.pages.i18n import Catalogs
from idp.pages.render import estimate_kind, estimate_templates
from idp.pages.status import WaitStatus
from idp.web.http import services


def page_language() -> str:
    """The page's language: ``?lang=``, the language cookie, then ``Accept-Language`` (once a request)."""
    cached = g.get("page_language")
    if cached:
        return str(cached)
    catalogs: Catalogs = services().page_catalogs
    language = catalogs.choose(
        request.args.get("lang"),
        request.cookies.get(LANGUAGE_COOKIE),
        request.accept_languages.best_match(catalogs.languages),
    )
    g.page_language = language
    return language


def _nonce() -> str:
    nonce = g.get("csp_nonce")
    if not nonce:
        nonce = secrets.token_urlsafe(16)
        g.csp_nonce = nonce
    return str(nonce)


def secure_page(response: Response) -> Response:
    """Strict headers for an HTML page: a nonce CSP, no framing, no referrer, no caching."""
    nonce = _nonce()
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}'; "
        "img-src 'self' https:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["Content-Language"] = page_language()
    if request.args.get("lang") and services().page_catalogs.supports(request.args.get("lang")):
        set_language_cookie(response, services().settings, page_language())
    return response


def static_url(filename: str) -> str:
    version = services().pages.static_version(filename)
    return f"/wait/_static/{filename}?v={version}"


def language_links(path: str, keep: dict[str, str]) -> list[dict[str, Any]]:
    """Links to this page in each language (the visible switch)."""
    links = []
    current = page_language()
    # A waiting URL may carry its own query (the ``w`` ticket): keep it and replace only ``lang``.
    base, _, own_query = path.partition("?")
    own = [(k, v) for k, v in parse_qsl(own_query, keep_blank_values=True) if k != "lang" and k not in keep]
    for code, name in services().page_catalogs_names.items():
        query = urlencode([*own, *keep.items(), ("lang", code)])
        links.append({"code": code, "name": name, "href": f"{base}?{query}", "current": code == current})
    return links


def page_context(event: EventConfig | None, **extra: Any) -> dict[str, Any]:
    """What every waiting page template gets: branding, assets, nonce, language links."""
    branding = dict(event.branding) if event else {}
    title = branding.get("title") or (event.name if event else "") or (event.event_id if event else "")
    theme = None
    if event is not None:
        theme = f"/wait/{event.event_id}/theme.css?v={event.updated_at}"
    return {
        "event": event,
        "title": title,
        "message": branding.get("message") or "",
        "logo_url": branding.get("logo_url") or "",
        "theme_url": theme,
        "nonce": _nonce(),
        "static": static_url,
        **extra,
    }


def render_page(template: str, http_status: int = 200, **context: Any) -> Response:
    html = services().pages.render(template, page_language(), **context)
    response = current_app.response_class(html, status=http_status, mimetype="text/html")
    return secure_page(response)


def status_context(status: WaitStatus, status_url: str) -> dict[str, Any]:
    """Template values for a status (shared by every page that shows a place)."""
    t = services().pages.translator(page_language())
    kind, low, high = estimate_kind(status.estimate)
    refresh = None
    if status.poll_after_ms is not None:
        refresh = services().wait_status.schedule.refresh_seconds(status.poll_after_ms)
    return {
        "status": status,
        "status_url": status_url,
        "estimate_text": t.estimate(status.estimate),
        "estimate_kind": kind,
        "estimate_low": low,
        "estimate_high": high,
        "estimate_templates": estimate_templates(t),
        "refresh_seconds": refresh,
    }
