"""HTTP endpoints of the OpenID Connect provider: discovery, authorize (and its waiting page), token,
userinfo, revocation, introspection and logout.

The waiting page of a parked request:

* ``GET /authorize/wait/<interaction_id>`` renders the page (``render_waiting``) while the visitor waits,
  and, once the serving counter has reached the visitor's place, finishes the parked request with a 303
  to the relying party (``code``, ``state``, ``iss``). A ``<meta http-equiv="refresh">`` reloads it, so
  it works without JavaScript.
* ``GET /authorize/status/<ticket>`` is the JSON a script on that page may poll instead (see ``status``).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from authlib.oauth2.rfc6749.errors import OAuth2Error
from flask import Blueprint, Response, g, render_template, request
from itsdangerous import BadSignature, URLSafeSerializer
from joserfc import jwt
from joserfc.errors import JoseError

from idp.crypto import keyed_digest
from idp.errors import IdpError
from idp.oidc.claims import CLAIMS_SUPPORTED, Admission, pairwise_sub
from idp.oidc.interaction import (
    InteractionError,
    InteractionFinishedError,
    Progress,
    State,
    new_visitor_id,
    read_visitor_cookie,
)
from idp.oidc.records import InteractionRecord
from idp.oidc.server import AUTH_METHODS, PUBLIC_AUTH_METHODS, OidcServer, StoredRequest, append_params
from idp.web.cors import OIDC_HEADERS
from idp.web.http import apply_cors, json_response, services

log = logging.getLogger("idp.oidc")

TEMPLATES = str(Path(__file__).resolve().parents[2] / "waiting_pages" / "templates")
bp = Blueprint("oidc", __name__, template_folder=TEMPLATES)

VISITOR_COOKIE_SECONDS = 400 * 86400  # browsers cap cookie lifetimes at 400 days
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


def _secure() -> bool:
    return _issuer().startswith("https://")


def _serializer(salt: str) -> URLSafeSerializer:
    return URLSafeSerializer(services().settings.secret_key, salt=salt)


def _visitor() -> str | None:
    return read_visitor_cookie(request.cookies, services().settings)[0]


def _set_visitor(response: Response, visitor_id: str) -> None:
    response.set_cookie(
        services().settings.cookie_name(services().settings.visitor_cookie),
        visitor_id,
        max_age=VISITOR_COOKIE_SECONDS,
        httponly=True,
        samesite="Lax",
        secure=_secure(),
        path="/",
    )


def _admission_cookie_name(event_id: str) -> str:
    settings = services().settings
    return settings.cookie_name(settings.admission_cookie_prefix) + event_id


def _read_admission_cookie(event_id: str) -> dict[str, Any] | None:
    raw = request.cookies.get(_admission_cookie_name(event_id))
    if not raw or len(raw) > 2000:
        return None
    try:
        value = _serializer("idp-admission").loads(raw)
    except BadSignature:
        return None
    return value if isinstance(value, dict) else None


def _set_admission_cookie(response: Response, admission: Admission, expires_at: int) -> None:
    payload = {
        "v": admission.visitor_id,
        "e": admission.event_id,
        "r": admission.request_id,
        "q": admission.queue_position,
        "t": admission.admitted_at,
    }
    max_age = max(1, expires_at - int(services().clock.now()))
    response.set_cookie(
        _admission_cookie_name(admission.event_id),
        _serializer("idp-admission").dumps(payload),
        max_age=max_age,
        httponly=True,
        samesite="Lax",
        secure=_secure(),
        path="/",
    )


def _clear_admission_cookie(response: Response, event_id: str) -> None:
    response.delete_cookie(_admission_cookie_name(event_id), path="/", httponly=True, samesite="Lax", secure=_secure())


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


@dataclass(frozen=True)
class WaitTicket:
    """What the waiting page of a parked request needs while the visitor waits, without a database read.

    It travels in the page's URLs, signed but readable, so it holds no secret: no request id and no
    cookie value. ``owner`` is a keyed hash of the visitor cookie: it lets the cookie of the browser
    that owns the request be checked without revealing it.
    """

    interaction_id: str
    event_id: str
    owner: str
    client_id: str
    position: int
    ui_locales: str

    @property
    def params(self) -> dict[str, str]:
        return {"ui_locales": self.ui_locales} if self.ui_locales else {}


def _owner_tag(visitor_id: str) -> str:
    return keyed_digest(services().settings.secret_key, "waiting-page owner", visitor_id).hex()[:32]


def _ticket_of(record: InteractionRecord) -> WaitTicket:
    return WaitTicket(
        record.interaction_id,
        record.event_id,
        _owner_tag(record.visitor_id),
        record.client_id,
        record.queue_position,
        str(record.params.get("ui_locales", ""))[:100],
    )


def _ticket(ticket: WaitTicket, salt: str) -> str:
    return _serializer(salt).dumps(
        [ticket.interaction_id, ticket.event_id, ticket.owner, ticket.client_id, ticket.position, ticket.ui_locales]
    )


def _read_ticket(raw: str | None, salt: str) -> WaitTicket | None:
    """The ticket a signed value names (no database read); None for anything else."""
    if not raw or len(raw) > 1000:
        return None
    try:
        value = _serializer(salt).loads(raw)
    except BadSignature:
        return None
    if not (
        isinstance(value, list)
        and len(value) == 6
        and type(value[4]) is int
        and all(isinstance(v, str) for i, v in enumerate(value) if i != 4)
    ):
        return None
    return WaitTicket(*value)


def _owned(ticket: WaitTicket, visitor_id: str | None) -> bool:
    return visitor_id is not None and hmac.compare_digest(ticket.owner, _owner_tag(visitor_id))


def _status_url(ticket: WaitTicket) -> str:
    return f"/authorize/status/{_ticket(ticket, 'idp-oidc-status')}"


def wait_url(record: InteractionRecord | WaitTicket) -> str:
    """The waiting page of a parked request; its signed ``w`` lets a waiting reload skip the database."""
    ticket = record if isinstance(record, WaitTicket) else _ticket_of(record)
    return f"/authorize/wait/{ticket.interaction_id}?w={_ticket(ticket, 'idp-oidc-wait')}"


def _wait_ticket(interaction_id: str, visitor_id: str | None) -> WaitTicket | None:
    """The ticket of a valid ``w`` of this browser's request, without a database read."""
    ticket = _read_ticket(request.args.get("w"), "idp-oidc-wait")
    if ticket is None or ticket.interaction_id != interaction_id or not _owned(ticket, visitor_id):
        return None
    return ticket


def _still_waiting(ticket: WaitTicket) -> Progress | None:
    """The progress of a place known to be waiting from the event's cached counters; None near the front.

    Positions never change and a place above the serving counter is waiting, so a waiting visitor's
    reloads and polls read neither the database nor the queue store.
    """
    counters = services().room.counters(ticket.event_id)
    if counters.serving < ticket.position <= counters.queue:
        return Progress("waiting", ticket.position, counters.serving)
    return None


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
        "status_url": _status_url(ticket),
        "continue_url": wait_url(ticket),
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


def _hint_subject(hint: str, client_id: str) -> str:
    """The ``sub`` of an ID token we issued to this client (expired is fine); ValueError otherwise."""
    if len(hint) > 8192:
        raise ValueError("id_token_hint is too long")
    try:
        token = jwt.decode(hint, services().keys.verification_keyset(), algorithms=["RS256", "ES256"])
    except (JoseError, ValueError, TypeError, KeyError):
        raise ValueError("id_token_hint is not an ID token of this provider") from None
    claims = token.claims
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if claims.get("iss") != _issuer() or client_id not in audiences or not isinstance(claims.get("sub"), str):
        raise ValueError("id_token_hint was not issued by this provider to this client")
    return str(claims["sub"])


@bp.route("/authorize", methods=["GET", "POST"])
def authorize() -> Response:
    """Answer at once for an admitted browser; otherwise park the request and queue the visitor."""
    if request.method == "HEAD":
        # Link checkers and previews must not join the queue.
        return Response("", status=200, headers={"Cache-Control": "no-store"})
    svc = services()
    params = request.values
    client_ids, redirect_uris = params.getlist("client_id"), params.getlist("redirect_uri")
    client = svc.clients.find(client_ids[0]) if len(client_ids) == 1 else None
    if client is None:
        return error_page(
            "Unknown application",
            "The application that sent you here is not registered with this sign-in service.",
            400,
            code="invalid_client",
        )
    if len(redirect_uris) != 1 or redirect_uris[0] not in client.redirect_uris:
        return error_page(
            "Unregistered return address",
            "The application asked to send you back to an address it has not registered, so this sign-in stops here.",
            400,
            code="invalid_redirect_uri",
        )
    redirect_uri = redirect_uris[0]
    state = params.get("state")
    if any("\x00" in value for value in params.values()):
        # No database stores NUL characters; no honest request carries them.
        return _authorization_error(
            redirect_uri,
            "invalid_request",
            "Parameters must not contain NUL characters.",
            None if state is None or "\x00" in state else state,
        )
    if "request" in params:
        return _authorization_error(redirect_uri, "request_not_supported", "Request objects are not supported.", state)
    if "request_uri" in params:
        return _authorization_error(
            redirect_uri, "request_uri_not_supported", "The request_uri parameter is not supported.", state
        )

    visitor_id, legacy_cookie = read_visitor_cookie(request.cookies, svc.settings)
    if visitor_id is None and request.method == "POST":
        # A cross-site POST arrives without the SameSite=Lax visitor cookie. Minting a visitor here
        # would replace the browser's cookie (its place and its sub at the relying party); a same-site
        # GET of the same request carries the cookie, so the decision is taken there.
        return _redirect("/authorize?" + urlencode(list(params.items(multi=True))))
    new_visitor = visitor_id is None
    if visitor_id is None:
        visitor_id = new_visitor_id()
    prompts = (params.get("prompt") or "").split()
    admission = (
        None
        if new_visitor
        else svc.oidc_interactions.admission(
            visitor_id, client.event_id, _read_admission_cookie(client.event_id), claim="login" not in prompts
        )
    )

    fresh = "login" in prompts
    max_age_raw = params.get("max_age")
    if max_age_raw is not None and max_age_raw != "":
        if not max_age_raw.isdigit() or len(max_age_raw) > 12:
            return _authorization_error(redirect_uri, "invalid_request", "max_age must be a whole number.", state)
        max_age = int(max_age_raw)
        # max_age=0 is prompt=login (Core §3.1.2.1).
        if max_age == 0 or (admission is not None and int(svc.clock.now()) - admission.admitted_at > max_age):
            fresh = True
    hint = params.get("id_token_hint")
    if hint:
        try:
            hinted_sub = _hint_subject(hint, client.client_id)
        except ValueError as exc:
            return _authorization_error(redirect_uri, "invalid_request", str(exc), state)
        if admission is not None:
            sub = _server().user_claims(admission, client.client_id, "")["sub"]
            if not hmac.compare_digest(sub.encode(), hinted_sub.encode("utf-8", "replace")):
                admission = None  # another visitor than the hint names: not logged in as them
    user = None if fresh else admission
    if "none" in prompts and fresh and len(prompts) == 1:
        return _authorization_error(redirect_uri, "login_required", "The visitor must queue again to sign in.", state)

    server = _server()
    try:
        grant = server.get_consent_grant(end_user=user)
    except OAuth2Error as exc:
        return _oauth_error(exc, state)
    except ValueError:
        return error_page("This sign-in request is not valid", "The request could not be read.", 400)

    if user is not None:
        response = _as_303(server.create_authorization_response(grant_user=user, grant=grant))
        session = svc.oidc_records.session_state(user.request_id)
        if session is not None:
            _set_admission_cookie(response, user, session.expires_at)
    else:
        from idp.abuse.web import browser_guard, browser_refusal, current_return_path

        event = svc.events.get(client.event_id)
        try:
            record = svc.oidc_interactions.park(
                client.client_id,
                client.event_id,
                visitor_id,
                params.to_dict(flat=True),
                fresh=fresh,
                guard=browser_guard(event),
            )
        except IdpError as exc:
            refusal = browser_refusal(event, exc, current_return_path())
            if refusal is None:
                raise
            response = refusal
        else:
            response = _redirect(wait_url(record))
    if new_visitor or legacy_cookie:
        _set_visitor(response, visitor_id)
    return response


@bp.get("/authorize/wait/<interaction_id>")
def wait(interaction_id: str) -> Response:
    """The waiting page: shows the place while waiting, finishes the sign-in once admitted."""
    svc = services()
    interactions = svc.oidc_interactions
    visitor_id = _visitor()
    ticket = _wait_ticket(interaction_id, visitor_id)
    if ticket is not None:
        # Still waiting? Then only the cached counters are read; the database once near the front.
        waiting = _still_waiting(ticket)
        if waiting is not None:
            return render_waiting(waiting_context(ticket, waiting))
    record = interactions.load(interaction_id, visitor_id)
    client = svc.clients.find(record.client_id)
    if client is None:
        return error_page("Unknown application", "The application is no longer registered.", 400)
    if record.state == State.CODE_ISSUED.value:
        raise InteractionFinishedError()
    if record.state in (State.EXPIRED.value, State.ABANDONED.value):
        return _expired_page(client)
    progress = interactions.progress(record.event_id, record.request_id)
    if progress.state == "expired":
        try:
            interactions.move(record, State.EXPIRED)
        except InteractionError:
            pass
        return _expired_page(client)
    if progress.state == "waiting":
        return render_waiting(waiting_context(_ticket_of(record), progress))
    return _finish(record, client)


def _expired_page(client: Any) -> Response:
    return error_page(
        "Your place has expired",
        "You were admitted but did not come back in time, so your "
        "place went to the next visitor. Start again from the site to queue again.",
        410,
        code="place_expired",
        link=client.initiate_login_uri,
        link_text="Sign in again",
    )


def _finish(record: InteractionRecord, client: Any) -> Response:
    """Admitted: claim the place, set the admitted cookie, send the visitor back to the relying party."""
    svc = services()
    interactions = svc.oidc_interactions
    try:
        admission, session_end = interactions.admit(record)
    except InteractionError:
        raise
    except IdpError as exc:
        return error_page(
            "Your place cannot be used", exc.message, exc.status if exc.status < 500 else 400, code=exc.code
        )
    if client.initiate_login_uri and interactions.parked_too_long(record, client.max_parked_seconds):
        # The relying party has likely forgotten this request; it starts a fresh one, answered at once.
        interactions.move(record, State.EXPIRED)
        response = _redirect(append_params(client.initiate_login_uri, [("iss", _issuer())]))
    else:
        interactions.move(record, State.CODE_ISSUED)
        server = _server()
        stored = StoredRequest(_issuer(), record.params)
        state = record.params.get("state")
        try:
            grant = server.get_consent_grant(request=stored, end_user=admission)
        except OAuth2Error as exc:
            response = _oauth_error(exc, state)
        else:
            response = _as_303(server.create_authorization_response(request=stored, grant_user=admission, grant=grant))
    _set_admission_cookie(response, admission, session_end)
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
    parsed = _read_ticket(ticket, "idp-oidc-status")
    if parsed is None or not _owned(parsed, _visitor()):
        return json_response({"error": "not_found", "message": "Unknown status ticket."}, 404, cache="no-store")
    svc = services()
    request_id = None
    if _still_waiting(parsed) is None:
        record = svc.oidc_records.interaction(parsed.interaction_id)
        if record is None:
            return json_response({"error": "not_found", "message": "Unknown status ticket."}, 404, cache="no-store")
        request_id = record.request_id
    # The waiting pages' status (idp.pages.status): adds the estimate, waiting count and their schedule.
    payload = svc.wait_status.interaction_payload(
        parsed.event_id, request_id, wait_url(parsed), position=parsed.position
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


LOGOUT_FIELDS = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state", "ui_locales", "logout_hint")
# How long a sign-out confirmation may wait for its click.
LOGOUT_CONFIRM_SECONDS = 600


def _logout_mac(visitor_id: str, expires: int) -> str:
    return keyed_digest(services().settings.secret_key, "logout confirmation", f"{visitor_id}\x00{expires}").hex()


def _logout_csrf(visitor_id: str) -> str:
    """A confirmation token bound to this browser's visitor cookie, expiring after a few minutes."""
    expires = int(services().clock.now()) + LOGOUT_CONFIRM_SECONDS
    return f"{expires}.{_logout_mac(visitor_id, expires)}"


def _logout_csrf_valid(visitor_id: str | None, token: str) -> bool:
    expires_text, _, mac = token.partition(".")
    if visitor_id is None or not expires_text.isdigit() or len(expires_text) > 12:
        return False
    expires = int(expires_text)
    if expires < int(services().clock.now()):
        return False
    return hmac.compare_digest(mac.encode("utf-8", "replace"), _logout_mac(visitor_id, expires).encode("ascii"))


def _hint_is_this_browsers(claims: dict[str, Any] | None, visitor_id: str | None) -> bool:
    """True when the id_token_hint was issued to this browser (its pairwise ``sub`` for the audience)."""
    if not claims or visitor_id is None:
        return False
    aud = claims.get("aud")
    audiences = (
        [aud] if isinstance(aud, str) else [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []
    )
    sub = claims.get("sub")
    if not isinstance(sub, str):
        return False
    expected = (pairwise_sub(services().settings.secret_key, visitor_id, client_id) for client_id in audiences)
    return any(hmac.compare_digest(value.encode(), sub.encode("utf-8", "replace")) for value in expected)


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> Response:
    """RP-initiated logout: end this browser's own admission (its session completes, capacity frees).

    Without a hint issued to this browser (none, or another browser's token), the visitor confirms on
    our page; the confirmation carries a token bound to this browser's cookie that expires. Only this
    browser's admissions end, never the session a foreign hint names."""
    svc = services()
    server = _server()
    visitor_id = _visitor()
    confirmed = (
        request.method == "POST"
        and request.form.get("confirm") == "yes"
        and _logout_csrf_valid(visitor_id, request.form.get("csrf", ""))
    )
    g.logout_confirmed = confirmed
    try:
        end_request = server.validate_endpoint_request("end_session")
    except OAuth2Error as exc:
        return error_page("Sign-out request not valid", exc.description or exc.error, 400, code=exc.error)
    except ValueError:
        return error_page("Sign-out request not valid", "The request could not be read.", 400)
    claims = end_request.id_token_claims or {}
    own_hint = _hint_is_this_browsers(end_request.id_token_claims, visitor_id)
    if not own_hint and not confirmed:
        if visitor_id is None:
            # No visitor cookie (a new browser, or a cross-site request that does not carry it):
            # nothing of this browser to end, and nothing to confirm.
            body = render_template("oidc/logout.html", confirm=False)
            return Response(body, status=200, mimetype="text/html", headers={"Cache-Control": "no-store"})
        fields = [(name, request.values[name]) for name in LOGOUT_FIELDS if request.values.get(name)]
        fields.append(("csrf", _logout_csrf(visitor_id)))
        client = end_request.client
        body = render_template(
            "oidc/logout.html",
            confirm=True,
            action="/logout",
            fields=fields,
            client_name=client.config.name if client is not None else "",
        )
        response = Response(body, status=200, mimetype="text/html")
        response.headers["Cache-Control"] = "no-store"
        target = request.values.get("post_logout_redirect_uri", "")
        if client is not None and target in client.config.post_logout_redirect_uris:
            # Browsers apply form-action to the redirect that follows the form, so allow that origin.
            parts = urlsplit(target)
            response.headers["Content-Security-Policy"] = (
                "default-src 'none'; style-src 'self'; img-src 'self'; "
                f"form-action 'self' {parts.scheme}://{parts.netloc}; frame-ancestors 'none'; base-uri 'none'"
            )
        return response
    events: set[str] = set()
    if end_request.client is not None:
        events.add(end_request.client.config.event_id)
    if own_hint and isinstance(claims.get("event_id"), str):
        events.add(claims["event_id"])
    prefix = _admission_cookie_name("")
    if not events:
        # A confirmed sign-out that names no application ends every admission this browser holds.
        events.update(
            name[len(prefix) :] for name in request.cookies if name.startswith(prefix) and len(name) > len(prefix)
        )
    ended: list[str] = []
    for event_id in sorted(events):
        admission = None
        if visitor_id is not None:
            try:
                admission = svc.oidc_interactions.admission(
                    visitor_id, event_id, _read_admission_cookie(event_id), claim=False
                )
            except IdpError:
                admission = None
        if admission is not None:
            server.finish_session(event_id, admission.request_id, 1)
        ended.append(event_id)
    result = server.create_endpoint_response("end_session", end_request)
    if result is None:
        result = Response(render_template("oidc/logout.html", confirm=False), status=200, mimetype="text/html")
    result = _as_303(result)
    for event_id in sorted(set(ended)):
        _clear_admission_cookie(result, event_id)
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
