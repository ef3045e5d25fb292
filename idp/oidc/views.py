"""HTTP endpoints of the OpenID Connect provider: discovery, authorize (and its waiting page), token,
userinfo, revocation, introspection and logout.

The waiting page of a parked request:

* ``GET /authorize/wait/<interaction_id>`` renders the page (``render_waiting``) while the visitor waits,
  and, once the serving counter has reached the visitor's place, finishes the parked request with a 303
  to the relying party (``code``, ``state``, ``iss``). A ``<meta http-equiv="refresh">`` reloads it, so
  it works without JavaScript.
* ``GET /authorize/status/<ticket>`` is the JSON a script on that page may poll instead (see ``status``).

The views parse and render: what to do with the browser is decided in ``idp.oidc.decisions``, the
cookies are read and set by ``idp.oidc.cookies``, and the waiting page's signed tickets come from
``idp.oidc.tickets``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from authlib.oauth2.rfc6749.errors import OAuth2Error
from flask import Blueprint, Response, g, render_template, request

from idp.errors import IdpError
from idp.oidc.claims import CLAIMS_SUPPORTED, Admission
from idp.oidc.cookies import (
    admission_cookie_events,
    clear_admission_cookie,
    read_admission_cookie,
    read_visitor_cookie,
    set_admission_cookie,
    set_visitor_cookie,
)
from idp.oidc.decisions import (
    LOGOUT_FIELDS,
    AuthorizeAsk,
    ClientError,
    ConfirmLogout,
    ErrorPage,
    LogoutAsk,
    NothingToEnd,
    RedirectToClient,
    Restart,
    RetrySameSite,
    Wait,
    Waiting,
)
from idp.oidc.server import AUTH_METHODS, PUBLIC_AUTH_METHODS, OidcServer, StoredRequest, append_params
from idp.oidc.tickets import WaitTicket, WaitTickets
from idp.web.cors import OIDC_HEADERS
from idp.web.http import apply_cors, json_response, services

log = logging.getLogger("idp.oidc")

TEMPLATES = str(Path(__file__).resolve().parents[2] / "waiting_pages" / "templates")
bp = Blueprint("oidc", __name__, template_folder=TEMPLATES)

DISCOVERY_CACHE = "public, max-age=300"
# What a browser app calls across origins (CORS for the registered clients' origins, idp.web.cors);
# /authorize and /logout are navigations, /introspect is for servers.
CORS_PATHS = frozenset({"/.well-known/openid-configuration", "/jwks.json", "/token", "/userinfo", "/revoke"})
# Pages that render HTML errors instead of JSON.
HTML_PATHS = ("/authorize", "/logout")


# --- helpers ---------------------------------------------------------------------------------------


@bp.after_app_request
def _cross_origin(response: Response) -> Response:
    """CORS for browser apps: the exact origin of a registered client is echoed, any other gets none."""
    if request.path in CORS_PATHS:
        apply_cors(response, services().cors.oidc(), OIDC_HEADERS)
    return response


def _server() -> OidcServer:
    return services().oidc_server


def _issuer() -> str:
    return services().settings.issuer


def _visitor() -> str | None:
    return read_visitor_cookie(request.cookies, services().settings)[0]


def _read_admission_cookie(event_id: str) -> dict[str, Any] | None:
    return read_admission_cookie(request.cookies, services().settings, event_id)


def _set_admission_cookie(response: Response, admission: Admission, expires_at: int) -> None:
    svc = services()
    set_admission_cookie(response, svc.settings, admission, expires_at - int(svc.clock.now()))


def _redirect(location: str) -> Response:
    response = Response("", status=303)
    response.headers["Location"] = location
    response.headers["Cache-Control"] = "no-store"
    return response


def error_page(
    title: str,
    message: str,
    status: int = 400,
    *,
    code: str | None = None,
    link: str | None = None,
    link_text: str = "Return to the site",
) -> Response:
    body = render_template("oidc/error.html", title=title, message=message, code=code, link=link, link_text=link_text)
    response = Response(body, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


def _authorization_error(redirect_uri: str, error: str, description: str | None, state: str | None) -> Response:
    """An error sent back to a validated redirect URI, with ``state`` and ``iss`` (RFC 9207)."""
    params = [("error", error)]
    if description:
        params.append(("error_description", description))
    if state is not None:
        params.append(("state", state))
    params.append(("iss", _issuer()))
    return _redirect(append_params(redirect_uri, params))


def _oauth_error(exc: OAuth2Error, state: str | None) -> Response:
    if exc.redirect_uri:
        return _authorization_error(exc.redirect_uri, exc.error, exc.description, state)
    return error_page("This sign-in request is not valid", exc.description or exc.error, 400, code=exc.error)


def _as_303(response: Response) -> Response:
    if response.status_code in (301, 302, 307):
        response.status_code = 303
    response.headers["Cache-Control"] = "no-store"
    return response


def _tickets() -> WaitTickets:
    return services().wait_tickets


# --- the waiting page --------------------------------------------------------------------------------


def waiting_context(ticket: WaitTicket, progress: Any) -> dict[str, Any]:
    """Everything the waiting page shows; the template (and any script) reads only these names.

    ``event`` (an ``EventConfig``: ``event_id``, ``name``, ``branding``), ``position`` (the visitor's
    place), ``ahead`` (people ahead), ``serving`` (the serving counter), ``status_url`` (the JSON
    endpoint, see ``status``), ``continue_url`` (this page: reloading it finishes the sign-in once
    admitted), ``poll_after_ms`` and ``refresh_seconds`` (when to look again), ``interaction_id``,
    ``client_id``, ``ui_locales`` (from the authorization request, may be empty).
    """
    event = services().events.get(ticket.event_id)
    poll_ms = progress.poll_after_ms or 1000
    return {
        "event": event,
        "position": progress.position,
        "ahead": progress.ahead,
        "serving": progress.serving,
        "status_url": _tickets().status_url(ticket),
        "continue_url": _tickets().wait_url(ticket),
        "poll_after_ms": poll_ms,
        "refresh_seconds": max(1, poll_ms // 1000),
        "interaction_id": ticket.interaction_id,
        "client_id": ticket.client_id,
        "ui_locales": ticket.ui_locales,
    }


def render_waiting(context: dict[str, Any]) -> Response:
    """Render the waiting page of a parked request from ``waiting_context``'s dict (200, never cached).

    The page is the waiting pages' own (``idp.pages``): languages, branding, estimate, poll schedule."""
    from idp.pages.web import render_interaction_page

    response = render_interaction_page(context)
    response.headers["Cache-Control"] = "no-store"
    return response


# --- discovery -------------------------------------------------------------------------------------


def discovery_document(issuer: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks.json",
        "revocation_endpoint": f"{issuer}/revoke",
        "introspection_endpoint": f"{issuer}/introspect",
        "end_session_endpoint": f"{issuer}/logout",
        "scopes_supported": ["openid", "profile", "email"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "token_endpoint_auth_methods_supported": list(PUBLIC_AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": list(PUBLIC_AUTH_METHODS),
        "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": list(CLAIMS_SUPPORTED),
        "claim_types_supported": ["normal"],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "require_request_uri_registration": False,
        "authorization_response_iss_parameter_supported": True,
        "display_values_supported": ["page", "popup", "touch", "wap"],
        "prompt_values_supported": ["none", "login"],
    }


@bp.get("/.well-known/openid-configuration")
def openid_configuration() -> Response:
    return json_response(discovery_document(_issuer()), cache=DISCOVERY_CACHE)


# --- authorize -------------------------------------------------------------------------------------


def _refusal(decision: ErrorPage | ClientError) -> Response:
    if isinstance(decision, ClientError):
        return _authorization_error(decision.redirect_uri, decision.error, decision.description, decision.state)
    return error_page(
        decision.title,
        decision.message,
        decision.status,
        code=decision.code,
        link=decision.link,
        link_text=decision.link_text,
    )


def _park(decision: Wait) -> Response:
    """Park the request and send the visitor to its waiting page (or the abuse defence's refusal)."""
    from idp.abuse.web import browser_guard, browser_refusal, current_return_path

    svc = services()
    client = decision.client
    event = svc.events.get(client.event_id)
    try:
        record = svc.oidc_interactions.park(
            client.client_id,
            client.event_id,
            decision.visitor_id,
            decision.params,
            fresh=decision.fresh,
            guard=browser_guard(event),
        )
    except IdpError as exc:
        refusal = browser_refusal(event, exc, current_return_path())
        if refusal is None:
            raise
        return refusal
    return _redirect(_tickets().wait_url(record))


@bp.route("/authorize", methods=["GET", "POST"])
def authorize() -> Response:
    """Answer at once for an admitted browser; otherwise park the request and queue the visitor."""
    if request.method == "HEAD":
        # Link checkers and previews must not join the queue.
        return Response("", status=200, headers={"Cache-Control": "no-store"})
    svc = services()
    visitor_id, legacy_cookie = read_visitor_cookie(request.cookies, svc.settings)
    ask = AuthorizeAsk(request.method, dict(request.values.lists()), visitor_id, _read_admission_cookie)
    decision = svc.sign_in.authorize(ask)
    if isinstance(decision, ErrorPage | ClientError):
        return _refusal(decision)
    if isinstance(decision, RetrySameSite):
        return _redirect("/authorize?" + urlencode(list(request.values.items(multi=True))))
    user = decision.admission if isinstance(decision, RedirectToClient) else None
    server = _server()
    try:
        grant = server.get_consent_grant(end_user=user)
    except OAuth2Error as exc:
        return _oauth_error(exc, decision.params.get("state"))
    except ValueError:
        return error_page("This sign-in request is not valid", "The request could not be read.", 400)
    if isinstance(decision, RedirectToClient):
        response = _as_303(server.create_authorization_response(grant_user=decision.admission, grant=grant))
        if decision.session_expires_at is not None:
            _set_admission_cookie(response, decision.admission, decision.session_expires_at)
    else:
        response = _park(decision)
    if decision.new_visitor or legacy_cookie:
        set_visitor_cookie(response, svc.settings, decision.visitor_id)
    return response


@bp.get("/authorize/wait/<interaction_id>")
def wait(interaction_id: str) -> Response:
    """The waiting page: shows the place while waiting, finishes the sign-in once admitted."""
    visitor_id = _visitor()
    tickets = _tickets()
    ticket = tickets.read_wait(request.args.get("w"), interaction_id, visitor_id)
    if ticket is not None:
        # Still waiting? Then only the cached counters are read; the database once near the front.
        waiting = tickets.still_waiting(ticket)
        if waiting is not None:
            return render_waiting(waiting_context(ticket, waiting))
    decision = services().sign_in.resume(interaction_id, visitor_id)
    if isinstance(decision, ErrorPage):
        return _refusal(decision)
    if isinstance(decision, Waiting):
        return render_waiting(waiting_context(tickets.of(decision.record), decision.progress))
    if isinstance(decision, Restart):
        response = _redirect(append_params(decision.initiate_login_uri, [("iss", _issuer())]))
    else:
        server = _server()
        stored = StoredRequest(_issuer(), decision.params)
        try:
            grant = server.get_consent_grant(request=stored, end_user=decision.admission)
        except OAuth2Error as exc:
            response = _oauth_error(exc, decision.params.get("state"))
        else:
            response = _as_303(
                server.create_authorization_response(request=stored, grant_user=decision.admission, grant=grant)
            )
    if decision.session_expires_at is not None:
        _set_admission_cookie(response, decision.admission, decision.session_expires_at)
    return response


@bp.get("/authorize/status/<ticket>")
def status(ticket: str) -> Response:
    """JSON progress of a parked sign-in, for a script on the waiting page to poll.

    ``GET /authorize/status/<ticket>`` (the ticket is ``status_url`` in the waiting page's context; it
    is signed, names the interaction, event and position and holds no secret). Only the browser that
    owns the request (its visitor cookie) gets an answer; a waiting place is answered from the cached
    counters, a place near or past the front from the queue store.
    Answers 200 ``{"state", "position", "ahead", "serving", "poll_after_ms", "continue_url"}``:
    ``state`` is ``waiting`` (poll again after ``poll_after_ms``), ``admitted`` (navigate to
    ``continue_url``, which finishes the sign-in with a redirect to the site) or ``expired`` (the place
    was not used in time; ``continue_url`` shows why). An unknown ticket, or another browser's, is a
    404 JSON error.
    """
    svc = services()
    tickets = svc.wait_tickets
    parsed = tickets.read_status(ticket, _visitor())
    if parsed is None:
        return json_response({"error": "not_found", "message": "Unknown status ticket."}, 404, cache="no-store")
    request_id = None
    if tickets.still_waiting(parsed) is None:
        record = svc.oidc_records.interaction(parsed.interaction_id)
        if record is None:
            return json_response({"error": "not_found", "message": "Unknown status ticket."}, 404, cache="no-store")
        request_id = record.request_id
    # The waiting pages' status (idp.pages.status): adds the estimate, waiting count and their schedule.
    payload = svc.wait_status.interaction_payload(
        parsed.event_id, request_id, tickets.wait_url(parsed), position=parsed.position
    )
    return json_response(payload, cache="no-store")


# --- token side ------------------------------------------------------------------------------------


def _failures_limited(name: str, answer: Callable[[], Response]) -> Response:
    """Answer, refusing (429) a client address that failed ``name`` too often; count this failure."""
    defence = services().defence
    address = request.remote_addr or "unknown"
    defence.check_failures(name, address)
    response = answer()
    if response.status_code in (400, 401):
        defence.count_failure(name, address)
    return response


@bp.post("/token")
def token() -> Response:
    return _failures_limited("token", lambda: _server().create_token_response())


@bp.post("/revoke")
def revoke() -> Response:
    return _server().create_endpoint_response("revocation")  # type: ignore[no-any-return]


@bp.post("/introspect")
def introspect() -> Response:
    return _failures_limited("introspect", lambda: _server().create_endpoint_response("introspection"))


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    """OpenID Connect Core §5.3: the visitor's claims for a valid access token (header or form body)."""
    return _server().create_endpoint_response("userinfo")  # type: ignore[no-any-return]


# --- logout ----------------------------------------------------------------------------------------


def _logout_page(*, confirm: bool, **context: Any) -> Response:
    body = render_template("oidc/logout.html", confirm=confirm, **context)
    return Response(body, status=200, mimetype="text/html", headers={"Cache-Control": "no-store"})


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> Response:
    """RP-initiated logout: end this browser's own admissions (its session completes, capacity frees).

    Without a hint issued to this browser (none, or another browser's token), the visitor confirms on
    our page; the confirmation carries a token bound to this browser's cookie that expires. Only this
    browser's admissions end, never the session a foreign hint names (``idp.oidc.decisions``)."""
    sign_in = services().sign_in
    server = _server()
    visitor_id = _visitor()
    confirmed = (
        request.method == "POST"
        and request.form.get("confirm") == "yes"
        and sign_in.logout_confirmed(visitor_id, request.form.get("csrf", ""))
    )
    g.logout_confirmed = confirmed
    try:
        end_request = server.validate_endpoint_request("end_session")
    except OAuth2Error as exc:
        return error_page("Sign-out request not valid", exc.description or exc.error, 400, code=exc.error)
    except ValueError:
        return error_page("Sign-out request not valid", "The request could not be read.", 400)
    client = end_request.client.config if end_request.client is not None else None
    ask = LogoutAsk(
        visitor_id,
        confirmed,
        client,
        end_request.id_token_claims,
        request.values.get("post_logout_redirect_uri", ""),
        admission_cookie_events(request.cookies, services().settings),
        _read_admission_cookie,
    )
    decision = sign_in.logout(ask)
    if isinstance(decision, NothingToEnd):
        return _logout_page(confirm=False)
    if isinstance(decision, ConfirmLogout):
        fields = [(name, request.values[name]) for name in LOGOUT_FIELDS if request.values.get(name)]
        fields.append(("csrf", decision.csrf))
        response = _logout_page(
            confirm=True, action="/logout", fields=fields, client_name=client.name if client is not None else ""
        )
        if decision.form_action_origin is not None:
            # Browsers apply form-action to the redirect that follows the form, so allow that origin.
            response.headers["Content-Security-Policy"] = (
                "default-src 'none'; style-src 'self'; img-src 'self'; "
                f"form-action 'self' {decision.form_action_origin}; frame-ancestors 'none'; base-uri 'none'"
            )
        return response
    result = server.create_endpoint_response("end_session", end_request)
    if result is None:
        result = Response(render_template("oidc/logout.html", confirm=False), status=200, mimetype="text/html")
    result = _as_303(result)
    for event_id in decision.ended:
        clear_admission_cookie(result, services().settings, event_id)
    return result


# --- HTML errors for browser pages ------------------------------------------------------------------


def html_error(code: str, message: str, status: int) -> Response | None:
    try:
        path = request.path
    except RuntimeError:
        return None
    if path.startswith("/authorize/status/") or not path.startswith(HTML_PATHS):
        return None
    if status >= 500:
        return error_page("Please try again shortly", message, status, code=code)
    if code in SALE_PAGE_CODES:
        # The client's waiting room is not open, closed, or over: the waiting pages' own page (with the
        # countdown to the opening) tells the visitor, in their language.
        from idp.pages.web import error_page as sale_page

        client = services().clients.find(request.values.get("client_id") or "")
        return sale_page(code, status, event_id=client.event_id if client is not None else None)
    return error_page("This sign-in cannot continue", message, status, code=code)


SALE_PAGE_CODES = frozenset({"event_not_open", "event_closed", "room_closed"})


# --- the demo relying party's landing page (idp serve --demo) ---------------------------------------


demo_bp = Blueprint("oidc_demo", __name__, template_folder=TEMPLATES)


@demo_bp.get("/demo/callback")
def demo_callback() -> Response:
    """Show what the demo client received; served only under ``idp serve --demo`` (IDP_DEMO), never in production."""
    params = [(name, value[:500]) for name, value in request.args.items(multi=True)][:20]
    body = render_template(
        "oidc/demo_callback.html",
        params=params,
        code=request.args.get("code", "")[:200],
        issuer=_issuer(),
        redirect_uri=request.base_url,
    )
    response = Response(body, status=200, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response
