"""The waiting pages over HTTP: the queue-first page, its status JSON, branding CSS, assets, error pages.

Routes (all under ``/wait/``):

* ``GET  /wait/<event_id>?next=<url>``  the waiting page; joins the queue on the first visit
* ``GET  /wait/<event_id>/status``      the visitor's status (JSON, private, polled by the page)
* ``GET  /wait/<event_id>/summary``     the event's public figures (JSON, cacheable by anyone)
* ``POST /wait/<event_id>/rejoin``      a new place after an expired or finished one
* ``GET  /wait/<event_id>/theme.css``   the event's colours as CSS custom properties
* ``GET  /wait/_static/<file>``         the page's CSS and script

One place per browser per event: the place's request id (random, unguessable) is kept in an
HttpOnly, SameSite=Lax cookie (Secure behind https) named ``<IDP_ADMISSION_COOKIE_PREFIX><event_id>``,
the same cookie ``/authorize`` reads, so queueing first and logging in later keep the same place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, current_app, g, redirect, request, send_from_directory

from idp.abuse.web import browser_guard, browser_refusal, current_return_path, decoy_status
from idp.errors import IdpError
from idp.events.service import EventConfig
from idp.oidc.cookies import set_visitor_cookie
from idp.pages.cookies import (
    LANGUAGE_COOKIE,
    holds_a_cookie,
    read_place,
    set_place_cookie,
)
from idp.pages.respond import language_links, page_context, page_language, render_page, secure_page, status_context
from idp.pages.status import ADMITTED, EXPIRED, FINISHED, UNKNOWN, WAITING, WaitStatus
from idp.pages.theme import theme_css
from idp.queue.engine import PlaceState, PlaceStatus
from idp.web.http import json_response, services

if TYPE_CHECKING:
    from idp.pages.places import Places
    from idp.services import Services

bp = Blueprint("pages", __name__)

# --- request helpers -----------------------------------------------------------------------------


def _next_url(event: EventConfig) -> str | None:
    return services().return_urls.check(event, request.values.get("next"))


def _page_path(event_id: str, next_url: str | None, **more: str) -> str:
    query = {"next": next_url} if next_url else {}
    query.update(more)
    return f"/wait/{event_id}" + (f"?{urlencode(query)}" if query else "")


# --- views ---------------------------------------------------------------------------------------


def _find_status(
    places: Places, event: EventConfig, visitor_id: str | None, next_url: str | None
) -> tuple[str | None, WaitStatus | None]:
    """The browser's place and its status: the cookie first (no database read while waiting)."""
    svc = services()
    request_id, position = read_place(request.cookies, svc.settings, event.event_id)
    status = decoy_status(event, request_id)
    if status is not None:
        return request_id, status
    if request_id:
        status = svc.wait_status.for_place(event.event_id, request_id, next_url, position=position)
    if status is not None and status.state == WAITING:
        return request_id, status
    stored = places.current(visitor_id, event.event_id)
    if stored and stored != request_id:
        request_id, status = stored, svc.wait_status.for_place(event.event_id, stored, next_url)
    if status is not None and request_id and status.claimed and places.finished(request_id):
        status = dataclasses.replace(status, state=FINISHED, continue_url=None)
    return request_id, status


@bp.get("/wait/<event_id>")
def wait_page(event_id: str) -> Response:
    svc = services()
    event = svc.events.get(event_id)
    next_url = _next_url(event)
    places = svc.places
    visitor_id, new_visitor = places.visitor(request.cookies)
    request_id, status = _find_status(places, event, visitor_id, next_url)
    if status is None or status.state == UNKNOWN:
        if request.method == "HEAD" or "prefetch" in request.headers.get("Sec-Purpose", ""):
            # Link checkers and prefetches do not take a place in the queue.
            return secure_page(current_app.response_class("", mimetype="text/html"))
        try:
            request_id, position = places.join(visitor_id, event.event_id, browser_guard(event))
        except IdpError as exc:
            refusal = browser_refusal(event, exc, current_return_path())
            if refusal is None:
                raise
            return refusal
        status = svc.wait_status.for_place(event.event_id, request_id, next_url, position=position)
    assert request_id is not None
    if status.state == ADMITTED and next_url:
        # Inside a request, redirect() builds the app's own response class.
        response = cast(Response, redirect(next_url, code=303))
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
    else:
        keep = {"next": next_url} if next_url else {}
        status_url = f"/wait/{event.event_id}/status" + (f"?{urlencode(keep)}" if keep else "")
        context = page_context(
            event,
            **status_context(status, status_url),
            languages_links=language_links(f"/wait/{event.event_id}", keep),
            next_url=next_url,
            goes_on=bool(next_url),
            page_url=_page_path(event.event_id, next_url),
            rejoin_url=f"/wait/{event.event_id}/rejoin",
            expiry_minutes=_expiry_minutes(event),
        )
        template = {
            WAITING: "wait.html",
            ADMITTED: "admitted.html",
            EXPIRED: "expired.html",
            FINISHED: "expired.html",
        }.get(status.state, "wait.html")
        response = render_page(template, **context)
    set_place_cookie(response, svc.settings, event.event_id, request_id, status.position)
    if new_visitor:
        set_visitor_cookie(response, svc.settings, visitor_id)
    return response


def _expiry_minutes(event: EventConfig) -> int | None:
    if not event.enable_queue_position_expiry:
        return None
    return (event.queue_position_expiry_period + 59) // 60


def render_interaction_page(context: dict[str, Any]) -> Response:
    """The waiting page of a parked sign-in (``/authorize/wait/<id>``), from the OIDC part's context.

    ``context`` holds ``event``, ``position``, ``ahead``, ``serving``, ``status_url`` and
    ``continue_url`` (see ``idp.oidc.views.waiting_context``); the page is the same as the
    queue-first one: same template, languages, branding, estimate and poll schedule.
    """
    svc = services()
    event: EventConfig = context["event"]
    position, serving = int(context["position"]), int(context["serving"])
    ahead = max(0, position - serving - 1)
    locales = str(context.get("ui_locales") or "").split()
    if not request.args.get("lang"):
        chosen = next((loc.split("-")[0] for loc in locales if svc.page_catalogs.supports(loc.split("-")[0])), None)
        if chosen and not request.cookies.get(LANGUAGE_COOKIE):
            g.page_language = chosen
    if position <= 0:
        # A pre-queue entry parked before the draw: the page says so until the place is drawn.
        pending = svc.wait_status.describe(
            event, PlaceStatus(PlaceState.PENDING, None, serving), str(context["continue_url"])
        )
        return render_page(
            "wait.html",
            **page_context(
                event,
                **status_context(pending, str(context["status_url"])),
                languages_links=language_links(str(context["continue_url"]), {}),
                next_url=None,
                goes_on=True,
                page_url=str(context["continue_url"]),
                expiry_minutes=_expiry_minutes(event),
            ),
        )
    status = WaitStatus(
        state=WAITING,
        event_id=event.event_id,
        position=position,
        ahead=ahead,
        serving=serving,
        waiting=svc.room.waiting(event.event_id),
        estimate=svc.wait_status.estimate(event.event_id, position, serving),
        poll_after_ms=svc.wait_status.poll_after_ms(ahead),
        updated_at=int(svc.clock.now()),
        continue_url=context["continue_url"],
    )
    page = str(context["continue_url"])
    return render_page(
        "wait.html",
        **page_context(
            event,
            **status_context(status, str(context["status_url"])),
            languages_links=language_links(page, {}),
            next_url=None,
            goes_on=True,
            page_url=page,
            expiry_minutes=_expiry_minutes(event),
        ),
    )


@bp.get("/wait/<event_id>/status")
def wait_status(event_id: str) -> Response:
    svc = services()
    event = svc.events.get(event_id)
    next_url = _next_url(event)
    request_id, position = read_place(request.cookies, svc.settings, event.event_id)
    decoy = decoy_status(event, request_id)
    if decoy is not None:
        return json_response(decoy.to_dict())
    if request_id is None:
        status = WaitStatus(
            state=UNKNOWN,
            event_id=event.event_id,
            position=None,
            ahead=None,
            serving=svc.room.serving(event.event_id),
            waiting=svc.room.waiting(event.event_id),
            estimate=None,
            poll_after_ms=None,
            updated_at=int(svc.clock.now()),
        )
    else:
        status = svc.wait_status.for_place(event.event_id, request_id, next_url, position=position)
    return json_response(status.to_dict())


@bp.get("/wait/<event_id>/summary")
def wait_summary(event_id: str) -> Response:
    """The event's figures, the same for everyone: shared caches and CDNs may keep it briefly."""
    svc = services()
    event = svc.events.get(event_id)
    counters = svc.room.counters(event.event_id)
    samples = svc.page_history.recent(event.event_id)
    from idp.pages.estimate import admission_rate, recent_samples

    rate = admission_rate(recent_samples(samples, svc.clock.now(), counters.serving), svc.clock.now())
    payload = {
        "event_id": event.event_id,
        "serving": counters.serving,
        "waiting": counters.waiting,
        "admitted_per_minute": round(rate * 60, 1) if rate else None,
        "updated_at": int(svc.clock.now()),
    }
    return json_response(payload, cache="public, max-age=2")


@bp.post("/wait/<event_id>/rejoin")
def rejoin(event_id: str) -> Response:
    """A new place after an expired or finished one; a live place is kept (never sent to the back)."""
    svc = services()
    event = svc.events.get(event_id)
    next_url = _next_url(event)
    if not holds_a_cookie(request.cookies, svc.settings, event.event_id):
        # A cross-site POST arrives without the SameSite=Lax cookies: joining here would replace the
        # browser's place. The page itself (a same-site GET) finds the place, or joins for a new browser.
        return _see_other(_page_path(event.event_id, next_url))
    places = svc.places
    visitor_id, new_visitor = places.visitor(request.cookies)
    request_id, status = _find_status(places, event, visitor_id, next_url)
    position = status.position if status is not None else None
    if status is None or status.state not in (WAITING, ADMITTED):
        try:
            request_id, position = places.join(visitor_id, event.event_id, browser_guard(event))
        except IdpError as exc:
            refusal = browser_refusal(event, exc, _page_path(event.event_id, next_url))
            if refusal is None:
                raise
            return refusal
    response = _see_other(_page_path(event.event_id, next_url))
    if request_id:
        set_place_cookie(response, svc.settings, event.event_id, request_id, position)
    if new_visitor:
        set_visitor_cookie(response, svc.settings, visitor_id)
    return response


def _see_other(location: str) -> Response:
    response = cast(Response, redirect(location, code=303))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/wait/<event_id>/theme.css")
def theme(event_id: str) -> Response:
    event = services().events.get(event_id)
    response = current_app.response_class(theme_css(event.branding), mimetype="text/css")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/wait/_static/<path:filename>")
def static_file(filename: str) -> Response:
    response = send_from_directory(services().pages.static_dir, filename, max_age=0)
    response.headers["Cache-Control"] = (
        "public, max-age=31536000, immutable" if request.args.get("v") else "public, max-age=300"
    )
    return response


# --- error pages ---------------------------------------------------------------------------------

_JSON_SUFFIXES = ("/status", "/summary", "/theme.css")


def N_(message: str) -> str:  # noqa: N802 - the conventional name of a gettext marker
    """Mark a message for extraction; it is translated where it is shown."""
    return message


ERROR_TEXTS: dict[str, tuple[str, str]] = {
    "event_not_found": (
        N_("This waiting room does not exist."),
        N_("Check the address, or go back to the site that sent you here."),
    ),
    "invalid_event_id": (
        N_("This waiting room does not exist."),
        N_("Check the address, or go back to the site that sent you here."),
    ),
    "invalid_return_url": (
        N_("This link cannot be used."),
        N_(
            "The address to return to is not one this waiting room knows. "
            "Go back to the site and follow its link again."
        ),
    ),
    "rate_limited": (
        N_("Too many requests from your network."),
        N_("Please wait a minute, then reload this page. Your place is not lost if you already have one."),
    ),
    "service_unavailable": (
        N_("We are very busy right now."),
        N_("Your place is safe. This page will try again by itself in a few seconds."),
    ),
    "event_not_open": (
        N_("The waiting room is not open yet."),
        N_("Keep this page open: it moves on by itself when the waiting room opens."),
    ),
    "event_closed": (
        N_("The sale is over."),
        N_("This waiting room has closed. Thank you for your interest."),
    ),
    "room_closed": (
        N_("The waiting room is closed for now."),
        N_("The site is not taking visitors at the moment. Please try again later."),
    ),
}
# A page counting down to the opening reloads itself at the opening, or at least this often.
COUNTDOWN_REFRESH_SECONDS = 60


def _is_page_request() -> bool:
    path = request.path
    if path.startswith("/wait/"):
        return not path.startswith("/wait/_static/") and not path.endswith(_JSON_SUFFIXES)
    return False


def render_error(code: str, message: str, status: int) -> Response | None:
    """The HTML error page for the waiting pages' routes; None leaves other routes to JSON."""
    try:
        if not _is_page_request():
            return None
    except RuntimeError:
        return None
    return error_page(code, status)


# Pages about an event that exists (not yet open, over, closed for now) carry its name and branding.
EVENT_STATE_CODES = frozenset({"event_not_open", "event_closed", "room_closed"})


def error_page(code: str, status: int, retry_after: int | None = None, *, event_id: str | None = None) -> Response:
    headline, advice = ERROR_TEXTS.get(
        code, (N_("Something went wrong."), N_("Please go back to the site that sent you here and try again."))
    )
    t = services().pages.translator(page_language())
    refresh = None
    if status == 503:
        refresh = retry_after or services().settings.retry_after_seconds
    event = _page_event(event_id) if code in EVENT_STATE_CODES else None
    countdown = _countdown(event) if code == "event_not_open" and event is not None else {}
    if countdown:
        refresh = min(COUNTDOWN_REFRESH_SECONDS, max(1, int(countdown["countdown_seconds"])))
    context = page_context(
        event,
        **countdown,
        headline=t(headline),
        advice=t(advice),
        status_code=status,
        code=code,
        refresh_seconds=refresh,
        refresh_always=not countdown,  # a countdown page reloads by script; the refresh is for no-JS
        languages_links=language_links(request.path, {k: v for k, v in request.args.items() if k == "next"}),
    )
    return render_page("error.html", status, **context)


def _page_event(event_id: str | None) -> EventConfig | None:
    """The event a page names (its ``event_id``, else the route's), or None when it cannot be read."""
    if event_id is None:
        event_id = (request.view_args or {}).get("event_id")
    try:
        return services().events.get(event_id)
    except Exception:  # noqa: BLE001 - an error page must render whatever the event lookup says
        return None


def _countdown(event: EventConfig) -> dict[str, Any]:
    """The event's opening time, for the countdown page; empty when it has none."""
    from idp.events.lifecycle import opening_time

    opens = opening_time(event)
    if opens is None:
        return {}
    left = max(0, int(opens - services().clock.now() + 0.999))
    hours, rest = divmod(left, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
    return {"opens_at": opens, "countdown_seconds": left, "countdown": text}


# --- wiring --------------------------------------------------------------------------------------


def init_app(app: Flask, svc: Services) -> None:
    """Register the waiting-page routes and the HTML error renderer."""
    app.register_blueprint(bp)
    renderers: list[Callable[[str, str, int], Response | None]] = app.extensions.setdefault("idp_error_renderers", [])
    renderers.append(render_error)


__all__ = [
    "bp",
    "error_page",
    "init_app",
    "page_context",
    "render_interaction_page",
    "render_page",
    "status_context",
]
