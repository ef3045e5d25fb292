"""The admin REST API under /admin/api: the AWS private operations (same names) and the resources.

Every view is guarded by ``require_scope``; every write leaves an audit record with the acting key id.
Views parse, call one service, record, and render. ``openapi.yaml`` beside this file describes them all.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, Response, current_app, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from idp.admin.auth import current_admin_key, require_scope
from idp.admin.keys import SCOPES
from idp.errors import ValidationError
from idp.events.service import MAX_PERIOD
from idp.queue.engine import validate_request_id
from idp.validation import IDENTIFIER_RE
from idp.web.http import json_body, json_response, query, required, services

bp = Blueprint("admin_api", __name__, url_prefix="/admin/api")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
ID_CURSOR_RE = IDENTIFIER_RE
OPAQUE_CURSOR_RE = re.compile(r"\A[\x21-\x7e]{1,500}\Z")
SIGNING_ALGS = ("RS256", "ES256")


# --- helpers -------------------------------------------------------------------------------------


@bp.before_request
def _check_request_shape() -> None:
    """Refuse oversized bodies, bodies on reads and repeated parameters, before any work or authentication."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit is not None and (request.content_length or 0) > limit:
        raise RequestEntityTooLarge()
    # Reads and deletes take their input from the path and query; a body there is a misplaced request.
    has_body = request.content_length or request.headers.get("Transfer-Encoding")
    if request.method in ("GET", "HEAD", "DELETE") and has_body:
        raise ValidationError(
            "This method takes no request body; pass parameters in the query.", code="unexpected_body"
        )
    # A parameter given twice is ambiguous (proxies and frameworks disagree on which copy wins).
    for name, values in request.args.lists():
        if len(values) > 1:
            raise ValidationError(f"{name} is given more than once.", code="repeated_parameter")


def _actor() -> str | None:
    key = current_admin_key()
    return key.key_id if key is not None else None


def _audit(action: str, target: str = "", detail: dict[str, Any] | None = None) -> None:
    services().audit.record(key_id=_actor(), action=action, target=target, detail=detail or {})


def _limit() -> int:
    raw = request.args.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not re.fullmatch(r"[0-9]{1,7}", raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValidationError(f"limit must be an integer from 1 to {MAX_LIMIT}.", code="invalid_limit")
    return int(raw)


def _cursor(pattern: re.Pattern[str] = ID_CURSOR_RE) -> str | None:
    raw = request.args.get("cursor")
    if raw is None:
        return None
    if not pattern.match(raw):
        raise ValidationError("cursor is not valid.", code="invalid_cursor")
    return raw


def _page(items: list[Any], limit: int, key: str) -> tuple[list[Any], str | None]:
    """Trim a limit+1 fetch to ``limit`` and name the cursor that continues after it."""
    if len(items) > limit:
        items = items[:limit]
        return items, str(getattr(items[-1], key))
    return items, None


def _issuer(value: object) -> str:
    if not isinstance(value, str) or len(value) > 300 or any(c.isspace() for c in value):
        raise ValidationError(
            "issuer must be an absolute http(s) URL of at most 300 characters.", code="invalid_issuer"
        )
    parts = urlsplit(value)
    if parts.scheme not in {"https", "http"} or not parts.netloc or parts.query or parts.fragment:
        raise ValidationError(
            "issuer must be an absolute http(s) URL without query or fragment.", code="invalid_issuer"
        )
    return value


def _validity(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PERIOD:
        raise ValidationError(
            f"validity_period must be an integer number of seconds from 1 to {MAX_PERIOD}.", code="invalid_validity"
        )
    return value


def _session_status(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in (1, -1):
        raise ValidationError("status must be 1 (completed) or -1 (abandoned).", code="invalid_status")
    return value


# --- the AWS private operations ------------------------------------------------------------------


@bp.post("/increment_serving_counter")
@require_scope("events:write")
def increment_serving_counter() -> Response:
    """Admit ``increment_by`` more positions; a positive JSON integer, the total at most 2^63-1."""
    data = json_body()
    event_id = required(data, "event_id")
    by = required(data, "increment_by")
    serving = services().room.increment_serving(event_id, by)
    _audit("increment_serving_counter", str(event_id), {"increment_by": by, "serving_num": serving})
    return json_response({"serving_num": serving})


@bp.post("/update_session")
@require_scope("events:write")
def update_session() -> Response:
    """Mark a session completed (1) or abandoned (-1), once: unknown 404, already set 409."""
    data = json_body()
    event = services().events.get(required(data, "event_id"))
    request_id = validate_request_id(required(data, "request_id"))
    status = _session_status(required(data, "status"))
    result = services().tokens.update_session(event.event_id, request_id, status)
    # The request id is a visitor's credential: it stays out of the audit log.
    _audit("update_session", event.event_id, {"status": status})
    return json_response(result)


@bp.get("/num_active_tokens")
@require_scope("events:read")
def num_active_tokens() -> Response:
    event = services().events.get(query("event_id"))
    return json_response({"active_tokens": int(services().tokens.active_count(event.event_id))})


@bp.get("/expired_tokens")
@require_scope("events:read")
def expired_tokens() -> Response:
    """A bare JSON array of request ids (AWS shape); the next page's cursor is in headers."""
    event = services().events.get(query("event_id"))
    limit = _limit()
    cursor = _cursor(OPAQUE_CURSOR_RE)
    ids, next_cursor = services().tokens.expired_request_ids(event.event_id, limit=limit, cursor=cursor)
    response = json_response(list(ids))
    if next_cursor:
        params = urlencode({"event_id": event.event_id, "limit": limit, "cursor": next_cursor})
        response.headers["X-Next-Cursor"] = str(next_cursor)
        response.headers["Link"] = f'<{url_for("admin_api.expired_tokens")}?{params}>; rel="next"'
    return response


@bp.post("/reset_initial_state")
@require_scope("events:write")
def reset_initial_state() -> Response:
    """Start the event over, synchronously: counters zero, earlier places and tokens gone."""
    event_id = services().admin.reset_event(required(json_body(), "event_id"), _actor())
    return json_response({"event_id": event_id, "message": "The event's queue and tokens are reset."})


@bp.post("/generate_token")
@require_scope("events:write")
def generate_token() -> Response:
    """Issue (or return) a request id's token set; ``issuer`` and ``validity_period`` apply to this call only."""
    data = json_body()
    event = services().events.get(required(data, "event_id"))
    request_id = validate_request_id(required(data, "request_id"))
    issuer = _issuer(data["issuer"]) if data.get("issuer") is not None else None
    validity = _validity(data["validity_period"]) if data.get("validity_period") is not None else None
    tokens = services().tokens.issue(event.event_id, request_id, issuer=issuer, validity=validity)
    _audit("generate_token", event.event_id, {"issuer": issuer, "validity_period": validity})
    return json_response(tokens)


# --- events --------------------------------------------------------------------------------------


@bp.get("/events")
@require_scope("events:read")
def list_events() -> Response:
    limit = _limit()
    events, next_cursor = _page(services().events.list(limit=limit + 1, after=_cursor()), limit, "event_id")
    return json_response({"events": [e.to_dict() for e in events], "next_cursor": next_cursor})


@bp.post("/events")
@require_scope("events:write")
def create_event() -> Response:
    data = json_body()
    event = services().events.create(data)
    _audit("event.create", event.event_id, {k: v for k, v in data.items() if k != "event_id"})
    response = json_response(event.to_dict(), 201)
    response.headers["Location"] = url_for("admin_api.get_event", event_id=event.event_id)
    return response


@bp.get("/events/<event_id>")
@require_scope("events:read")
def get_event(event_id: str) -> Response:
    return json_response(services().events.get_fresh(event_id).to_dict())


@bp.patch("/events/<event_id>")
@require_scope("events:write")
def update_event(event_id: str) -> Response:
    data = json_body(optional=True)
    event = services().events.update(event_id, data)
    _audit("event.update", event.event_id, data)
    return json_response(event.to_dict())


@bp.delete("/events/<event_id>")
@require_scope("events:write")
def delete_event(event_id: str) -> Response:
    """Delete an event with its queue and tokens; refused (409) while clients still queue for it."""
    services().admin.delete_event(event_id, _actor())
    return Response(status=204)


@bp.get("/events/<event_id>/stats")
@require_scope("events:read")
def event_stats(event_id: str) -> Response:
    return json_response(services().admin.event_stats(event_id))


# --- clients (reads need clients:write too: they are security-relevant) --------------------------


@bp.get("/clients")
@require_scope("clients:write")
def list_clients() -> Response:
    event_id = request.args.get("event_id")
    if event_id is not None:
        event_id = services().events.get(event_id).event_id  # 400 malformed, 404 unknown
    limit = _limit()
    clients, next_cursor = _page(
        services().clients.list(event_id=event_id, limit=limit + 1, after=_cursor()), limit, "client_id"
    )
    return json_response({"clients": [c.to_dict() for c in clients], "next_cursor": next_cursor})


@bp.post("/clients")
@require_scope("clients:write")
def create_client() -> Response:
    data = json_body()
    client, secret = services().clients.create(data)
    _audit("client.create", client.client_id, {k: v for k, v in data.items() if k != "client_id"})
    # A public client (token_endpoint_auth_method none) has no secret to show.
    body = client.to_dict() if secret is None else {**client.to_dict(), "client_secret": secret}
    response = json_response(body, 201)
    response.headers["Location"] = url_for("admin_api.get_client", client_id=client.client_id)
    return response


@bp.get("/clients/<client_id>")
@require_scope("clients:write")
def get_client(client_id: str) -> Response:
    return json_response(services().clients.get(client_id).to_dict())


@bp.patch("/clients/<client_id>")
@require_scope("clients:write")
def update_client(client_id: str) -> Response:
    data = json_body(optional=True)
    services().clients.get(client_id)
    client = services().clients.update(client_id, data)
    _audit("client.update", client.client_id, data)
    return json_response(client.to_dict())


@bp.delete("/clients/<client_id>")
@require_scope("clients:write")
def delete_client(client_id: str) -> Response:
    services().clients.get(client_id)
    services().clients.delete(client_id)
    _audit("client.delete", client_id)
    return Response(status=204)


@bp.post("/clients/<client_id>/rotate_secret")
@require_scope("clients:write")
def rotate_client_secret(client_id: str) -> Response:
    services().clients.get(client_id)
    client, secret = services().clients.rotate_secret(client_id)
    _audit("client.rotate_secret", client.client_id)
    return json_response({**client.to_dict(), "client_secret": secret})


# --- signing keys --------------------------------------------------------------------------------


def _public_key_info(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if "private" not in k}


@bp.get("/keys")
@require_scope("keys:write")
def list_signing_keys() -> Response:
    return json_response({"keys": [_public_key_info(dict(k)) for k in services().keys.list_keys()]})


@bp.post("/keys/rotate")
@require_scope("keys:write")
def rotate_signing_key() -> Response:
    """Publish a new key; it signs from ``active_from``, the previous one until then and verifies after."""
    data = json_body(optional=True)
    unknown = set(data) - {"alg"}
    if unknown:
        raise ValidationError(f"Unknown field(s): {', '.join(sorted(unknown))}.", code="unknown_field")
    alg = data.get("alg", "RS256")
    if alg not in SIGNING_ALGS:
        raise ValidationError("alg must be RS256 or ES256.", code="invalid_alg")
    keys = services().keys
    kid = keys.rotate(alg=alg)
    active_from = keys.active_from(kid)
    _audit("keys.rotate", str(kid), {"alg": alg, "active_from": active_from})
    # Published at once; it signs from active_from, once every instance and cache has it.
    return json_response({"kid": kid, "alg": alg, "active_from": active_from}, 201)


# --- admin keys ----------------------------------------------------------------------------------


@bp.get("/admin_keys")
@require_scope("admin")
def list_admin_keys() -> Response:
    limit = _limit()
    keys, next_cursor = _page(services().admin_keys.list(limit=limit + 1, after=_cursor()), limit, "key_id")
    return json_response({"admin_keys": [k.to_dict() for k in keys], "next_cursor": next_cursor})


@bp.post("/admin_keys")
@require_scope("admin")
def create_admin_key() -> Response:
    data = json_body()
    unknown = set(data) - {"name", "scopes"}
    if unknown:
        raise ValidationError(f"Unknown field(s): {', '.join(sorted(unknown))}.", code="unknown_field")
    record, plaintext = services().admin.create_admin_key(required(data, "name"), required(data, "scopes"), _actor())
    return json_response({**record.to_dict(), "key": plaintext}, 201)


@bp.delete("/admin_keys/<key_id>")
@require_scope("admin")
def revoke_admin_key(key_id: str) -> Response:
    return json_response(services().admin.revoke_admin_key(key_id, _actor()).to_dict())


# --- audit log and the description of the API ----------------------------------------------------


@bp.get("/audit")
@require_scope("admin")
def audit_log() -> Response:
    entries, next_cursor = services().audit.list(limit=_limit(), cursor=_cursor())
    return json_response({"entries": [e.to_dict() for e in entries], "next_cursor": next_cursor})


@bp.get("/openapi.yaml")
def openapi_document() -> Response:
    """The OpenAPI description of every endpoint; public, like the API's shape itself."""
    text = (resources.files("idp.admin") / "openapi.yaml").read_text(encoding="utf-8")
    response = current_app.response_class(text, mimetype="text/yaml")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


__all__ = ["bp", "SCOPES"]
