"""HTTP surface of the tokens: the JWKS, the AWS public key and token endpoints, and forward auth."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flask import Blueprint, Flask, Response, request
from sqlalchemy.exc import OperationalError

from idp.errors import IdpError
from idp.queue.waiting_room import NotServedError
from idp.storage.lookup import StoredLookupKey
from idp.tokens.issuer import InvalidTokenError
from idp.tokens.keys import JWKS_MAX_AGE
from idp.web.bearer import request_bearer
from idp.web.http import json_body, json_response, query, required, services

if TYPE_CHECKING:
    from idp.services import Services

log = logging.getLogger("idp.tokens")
bp = Blueprint("tokens", __name__)

JWKS_CACHE = f"public, max-age={JWKS_MAX_AGE}"  # the default; IDP_JWKS_MAX_AGE sets it
# Forward auth is asked with the method of the request it guards; OPTIONS must not be answered by Flask.
VERIFY_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def init_app(app: Flask, svc: Services) -> None:
    app.register_blueprint(bp)
    try:
        # Keys of both algorithms exist before this process answers (a lock serialises the workers),
        # so no key is made by the first /token and signs before the other workers publish it.
        svc.keys.ensure_all()
        if isinstance(svc.lookup, StoredLookupKey):
            svc.lookup.ensure()
    except (OperationalError, IdpError) as exc:
        # The database may be down while the service starts: answer 503 until it is back.
        log.warning("signing and lookup keys not checked at start", extra={"error": type(exc).__name__})


@bp.get("/jwks.json")
def jwks() -> Response:
    return json_response(services().keys.jwks(), cache=f"public, max-age={services().settings.jwks_max_age}")


@bp.get("/api/public_key")
def public_key() -> Response:
    services().events.get(query("event_id"))
    return json_response(services().keys.public_jwk(), cache=f"public, max-age={services().settings.jwks_max_age}")


@bp.post("/api/generate_token")
def generate_token() -> Response:
    data = json_body()
    svc = services()
    event = svc.events.get(required(data, "event_id"))
    request_id = required(data, "request_id")
    if svc.defence.decoy_position(request_id) is not None:
        raise NotServedError()  # a decoy place of the infinite queue is never served
    if not svc.tokens.has_tokens(request_id):
        # Only first issuances count: asking again for a request id's tokens is free.
        svc.defence.limit("generate_token", event, request.remote_addr or "unknown")
    token_set = svc.tokens.issue(event.event_id, request_id)
    return json_response(token_set)


def _credential() -> str | None:
    """The bearer token; only a request without an ``Authorization`` header falls back to the cookie."""
    if request.headers.get("Authorization"):
        return request_bearer()
    return request.cookies.get(services().settings.verify_cookie) or None


def _refuse(exc: InvalidTokenError) -> Response:
    response = json_response({"error": exc.code, "message": exc.message}, 401, cache="no-store")
    response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response


@bp.route("/verify", methods=VERIFY_METHODS, provide_automatic_options=False)
def verify() -> Response:
    """Answer 200 with the visitor's event, position and opaque place for a valid access token, else 401.

    The accepted events are explicit: ``?event_id=E``, or the operator's ``IDP_VERIFY_EVENTS`` when the
    guard names none. The request id never leaves the service: ``X-Queue-Place`` is an opaque value
    per place that no endpoint accepts as a credential."""
    token = _credential()
    if token is None:
        return _refuse(InvalidTokenError("A Bearer access token or the access cookie is required."))
    events = request.args.getlist("event_id")
    if len(events) > 1 or (events and not events[0]):
        # A guard misconfigured to send an empty or repeated event fails closed.
        return _refuse(InvalidTokenError("event_id must be given once and not empty."))
    svc = services()
    accepted = tuple(events) or svc.settings.verify_events
    if not accepted:
        return _refuse(InvalidTokenError("Name the accepted event: ?event_id=E, or set IDP_VERIFY_EVENTS."))
    try:
        claims, request_id = svc.tokens.verify_place_token(token, events[0] if events else None)
    except InvalidTokenError as exc:
        return _refuse(exc)
    if claims["aud"] not in accepted:
        return _refuse(InvalidTokenError("The access token is for another event."))
    event_id = str(claims["aud"])
    if not svc.room.session_seen(event_id, svc.tokens.request_tag(request_id)):
        return _refuse(InvalidTokenError("The session ended: it was idle longer than the event allows."))
    place = svc.tokens.place_reference(event_id, request_id)
    position = claims.get("queue_position")
    response = json_response({"place": place, "event_id": event_id, "queue_position": position}, cache="no-store")
    response.headers["X-Queue-Place"] = place
    response.headers["X-Queue-Position"] = str(position if position is not None else "")
    response.headers["X-Queue-Event-Id"] = event_id
    return response
