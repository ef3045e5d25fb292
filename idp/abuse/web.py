"""The abuse defence over HTTP: the challenge endpoints, the browser's gate page, decoy places, the
operator's view of refusals, and the guards the join surfaces call.

* ``GET  /api/challenge?event_id=E``   what a join to E must carry (``{"kind": "none"}`` when nothing)
* ``POST /challenge/<event_id>``       a browser's solved challenge or captcha token for a single-use
  pass (an HttpOnly cookie), then a 303 back to the page that asked (``return_to``, a local path)
* ``GET  /admin/api/events/<id>/abuse`` refused joins: the top client addresses (scope ``events:read``)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, g, request

from idp.abuse.captcha import PROVIDERS
from idp.abuse.challenge import ChallengeFailedError, ChallengeRequiredError
from idp.abuse.limits import RateLimitedError
from idp.abuse.service import JoinAttempt
from idp.admin.auth import require_scope
from idp.errors import IdpError, ValidationError
from idp.events.service import EventConfig
from idp.pages.respond import page_context, render_page, status_context
from idp.web.http import json_response, query, services

bp = Blueprint("abuse", __name__)

PASS_COOKIE_PREFIX = "idp_pass_"  # noqa: S105 - a cookie name, not a secret
PASS_COOKIE_SECONDS = 120
MAX_RETURN_CHARS = 4000


def init_app(app: Flask, svc: Any) -> None:
    app.register_blueprint(bp)

    @app.after_request
    def _spend_pass(response: Response) -> Response:
        # A join that used the browser's pass clears it (it is single use anyway).
        used = g.get("abuse_pass_used")
        if used:
            response.delete_cookie(PASS_COOKIE_PREFIX + used, path="/")
        return response


# --- the guards the join surfaces call -------------------------------------------------------------


def browser_guard(event: EventConfig) -> Callable[[], None]:
    """The gate of a browser's join (queue-first page, ``/authorize``): its address and its pass cookie."""

    def guard() -> None:
        cookie = request.cookies.get(PASS_COOKIE_PREFIX + event.event_id)
        attempt = JoinAttempt(address=request.remote_addr or "unknown", pass_token=cookie)
        if cookie:
            g.abuse_pass_used = event.event_id
        services().defence.guard_join(event, attempt)

    return guard


def browser_refusal(event: EventConfig, exc: IdpError, return_to: str) -> Response | None:
    """The page for a browser whose join was refused, or None to let the error render as usual.

    A missing solution gets the gate page (the browser solves it by itself); failing traffic of an
    infinite-queue event gets a waiting page that never admits; anything else is the caller's error.
    """
    if isinstance(exc, ChallengeRequiredError) and (exc.code == "challenge_required" or not event.infinite_queue):
        failed = exc.code == "challenge_failed"
        return challenge_page(event, exc.challenge, return_to, failed=failed)
    if event.infinite_queue and isinstance(exc, RateLimitedError | ChallengeFailedError):
        return decoy_page(event)
    return None


def local_path(value: object) -> str | None:
    """A same-site path to go back to after the gate: only ``/wait/...`` and ``/authorize?...``."""
    if not isinstance(value, str) or len(value) > MAX_RETURN_CHARS or "\\" in value:
        return None
    if not value.startswith(("/wait/", "/authorize?", "/authorize/")) or any(c in value for c in "\r\n\x00"):
        return None
    return value


def current_return_path() -> str:
    """Where the gate page sends the browser back to: this page, as a GET (an authorize POST included)."""
    if request.path == "/authorize":
        params = [(k, v) for k, v in request.values.items(multi=True)]
        return "/authorize?" + urlencode(params)
    return request.full_path.rstrip("?")


def challenge_page(event: EventConfig, challenge: dict[str, object], return_to: str, *, failed: bool) -> Response:
    captcha = None
    if challenge.get("kind") == "captcha":
        provider = PROVIDERS[str(challenge["provider"])]
        captcha = {
            "script": provider["script"],
            "widget_class": provider["widget_class"],
            "site_key": challenge.get("site_key"),
        }
    response = render_page(
        "challenge.html",
        403 if failed else 200,
        **page_context(
            event,
            challenge=challenge,
            captcha=captcha,
            failed=failed,
            action=f"/challenge/{event.event_id}",
            return_to=return_to,
        ),
    )
    if captcha is not None:
        # The provider's widget is a script and a frame of its own origin; nothing else is let in.
        origin = PROVIDERS[str(challenge["provider"])]["origin"]
        csp = response.headers["Content-Security-Policy"]
        csp = csp.replace("script-src 'self'", f"script-src 'self' {origin}")
        csp = csp.replace("connect-src 'self'", f"connect-src 'self' {origin}; frame-src {origin}")
        response.headers["Content-Security-Policy"] = csp
    response.headers["Cache-Control"] = "no-store"
    return response


def decoy_page(event: EventConfig) -> Response:
    """The infinite queue: a normal waiting page for a place that never comes."""
    from idp.pages.cookies import set_place_cookie
    from idp.pages.status import WAITING
    from idp.queue.engine import Entry, PlaceState, PlaceStatus

    svc = services()
    counters = svc.room.counters(event.event_id)
    request_id, position, _ = svc.defence.decoy(event, counters.queue, counters.waiting)
    status = svc.wait_status.describe(
        event, PlaceStatus(PlaceState.WAITING, Entry(request_id, position, 0), counters.serving), None
    )
    assert status.state == WAITING
    response = render_page(
        "wait.html",
        **page_context(
            event,
            **status_context(status, f"/wait/{event.event_id}/status"),
            languages_links=[],
            next_url=None,
            goes_on=False,
            page_url=f"/wait/{event.event_id}",
            expiry_minutes=None,
        ),
    )
    set_place_cookie(response, svc.settings, event.event_id, request_id)
    return response


def decoy_status(event: EventConfig, request_id: str | None) -> Any:
    """The never-ending status of a decoy place (None for a real one)."""
    from idp.queue.engine import Entry, PlaceState, PlaceStatus

    svc = services()
    position = svc.defence.decoy_position(request_id) if request_id else None
    if position is None:
        return None
    serving = svc.room.serving(event.event_id)
    position = max(position, serving + 2)
    return svc.wait_status.describe(
        event, PlaceStatus(PlaceState.WAITING, Entry(str(request_id), position, 0), serving), None
    )


# --- views -----------------------------------------------------------------------------------------


@bp.get("/api/challenge")
def api_challenge() -> Response:
    """What a join must carry: a proof-of-work challenge, a captcha's site key, or nothing."""
    svc = services()
    event = svc.events.get(query("event_id"))
    return json_response(svc.defence.challenge_for(event, request.remote_addr or "unknown"))


@bp.post("/challenge/<event_id>")
def exchange(event_id: str) -> Response:
    """A browser's solved challenge (or captcha token) for a pass cookie; back to the page that asked."""
    svc = services()
    event = svc.events.get(event_id)
    return_to = local_path(request.form.get("return_to")) or f"/wait/{event.event_id}"
    if not event.challenge:
        return _back(return_to)
    try:
        svc.defence.limit("join", event, request.remote_addr or "unknown")
        token = svc.defence.exchange(event, request.remote_addr or "unknown", request.form)
    except ChallengeRequiredError as exc:
        if event.infinite_queue:
            return decoy_page(event)
        return challenge_page(event, exc.challenge, return_to, failed=True)
    except RateLimitedError:
        if event.infinite_queue:
            return decoy_page(event)
        raise
    response = _back(return_to)
    response.set_cookie(
        PASS_COOKIE_PREFIX + event.event_id,
        token,
        max_age=PASS_COOKIE_SECONDS,
        path="/",
        secure=svc.settings.issuer.startswith("https://"),
        httponly=True,
        samesite="Lax",
    )
    return response


def _back(location: str) -> Response:
    return Response("", status=303, headers={"Location": location, "Cache-Control": "no-store"})


@bp.get("/admin/api/events/<event_id>/abuse")
@require_scope("events:read")
def abuse_report(event_id: str) -> Response:
    """Refused joins of an event: the client addresses refused most (limits and challenges alike)."""
    svc = services()
    event = svc.events.get(event_id)
    raw_limit = request.args.get("limit", "20")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 200:
        raise ValidationError("limit must be an integer from 1 to 200.", code="invalid_limit")
    top = svc.defence.tallies.top(event.event_id, int(raw_limit))
    return json_response(
        {
            "event_id": event.event_id,
            "rate_limits_enabled": svc.defence.limiter.enabled,
            "challenge": event.to_dict()["challenge"],
            "on_refusal": event.on_refusal,
            "top_addresses": top,
        }
    )
