"""Operator surfaces of the worker's domain: inlet settings, the MaxSize inlet, webhooks, the dashboard
and ``/metrics``.

``init_app`` registers the blueprints:
the admin API routes under ``/admin/api/events/<event_id>/...`` (guarded by admin API keys), the
dashboard page under ``/admin/dashboard/<event_id>`` (its data comes from the admin API with the key the
operator pastes in), and the Prometheus endpoint.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, Response, render_template, request

from idp.admin.auth import current_admin_key, require_scope
from idp.errors import ValidationError
from idp.inlet.max_size import MaxSizeRequest
from idp.web.http import json_body, json_response, services

if TYPE_CHECKING:
    from idp.services import Services

PAGES = Path(__file__).resolve().parents[2] / "waiting_pages"

api = Blueprint("operator_api", __name__, url_prefix="/admin/api")
pages = Blueprint(
    "operator_pages",
    __name__,
    template_folder=str(PAGES / "templates"),
    static_folder=str(PAGES / "static" / "admin"),
    static_url_path="/admin/static",
)

MAX_CHART_MINUTES = 24 * 60
DASHBOARD_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def init_app(app: Flask, svc: Services) -> None:
    app.register_blueprint(api)
    app.register_blueprint(pages)
    from idp.web import metrics

    metrics.init_app(app, svc)


def _audit(action: str, target: str, detail: dict[str, Any] | None = None) -> None:
    key = current_admin_key()
    services().audit.record(key_id=key.key_id if key else None, action=action, target=target, detail=detail or {})


def _event_id(event_id: str) -> str:
    """The event's id, after a 400 for a malformed id and a 404 for an unknown one."""
    return str(services().events.get(event_id).event_id)


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    """An optional integer query parameter; given twice, or outside [low, high], it is a 400."""
    if request.content_length or request.get_data(cache=True):
        # Parameters sent as a body would be silently ignored: say so instead.
        raise ValidationError("This endpoint takes query parameters, not a body.", code="unexpected_body")
    values = request.args.getlist(name)
    if len(values) > 1:
        raise ValidationError(f"{name} must be given once.", code="invalid_parameter")
    raw = values[0] if values else None
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"[0-9]{1,9}", raw) or not low <= int(raw) <= high:
        raise ValidationError(f"{name} must be an integer from {low} to {high}.", code="invalid_parameter")
    return int(raw)


# --- inlet settings and the MaxSize inlet --------------------------------------------------------


@api.get("/events/<event_id>/inlet")
@require_scope("events:read")
def get_inlet(event_id: str) -> Response:
    return json_response(services().inlets.get(_event_id(event_id)).to_dict())


@api.put("/events/<event_id>/inlet")
@require_scope("events:write")
def put_inlet(event_id: str) -> Response:
    """Change inlet settings; fields left out keep their value (``{"periodic": {"paused": true}}``)."""
    eid = _event_id(event_id)
    data = json_body(optional=True)
    config = services().inlets.update(eid, data)
    _audit("update_inlet", eid, config.to_dict())
    return json_response(config.to_dict())


def _switch_inlet(event_id: str, paused: bool) -> Response:
    """Turn the manual pause switch on or off, audited; answers the inlet settings."""
    eid = _event_id(event_id)
    config = services().inlets.set_paused(eid, paused)
    _audit("pause_inlet" if paused else "resume_inlet", eid)
    return json_response(config.to_dict())


@api.post("/events/<event_id>/inlet/pause")
@require_scope("events:write")
def pause_inlet(event_id: str) -> Response:
    return _switch_inlet(event_id, True)


@api.post("/events/<event_id>/inlet/resume")
@require_scope("events:write")
def resume_inlet(event_id: str) -> Response:
    return _switch_inlet(event_id, False)


@api.post("/events/<event_id>/inlet/max_size")
@require_scope("events:write")
def max_size_inlet(event_id: str) -> Response:
    """Finish the reported sessions and admit as many as the site has room for."""
    eid = _event_id(event_id)
    parsed = MaxSizeRequest.parse(json_body(optional=True))
    report = services().admin.apply_max_size(eid, parsed)
    _audit("max_size_inlet", eid, {"increment": report.increment, "updated": report.updated, "exited": parsed.exited})
    return json_response(report.to_dict())


# --- webhooks ------------------------------------------------------------------------------------


@api.get("/events/<event_id>/webhooks")
@require_scope("events:read")
def list_webhooks(event_id: str) -> Response:
    return json_response({"webhooks": services().webhooks.list(_event_id(event_id))})


@api.post("/events/<event_id>/webhooks")
@require_scope("events:write")
def create_webhook(event_id: str) -> Response:
    """Subscribe a URL; the answer carries the signing ``secret``, shown this once."""
    eid = _event_id(event_id)
    subscription, secret = services().webhooks.create(eid, json_body())
    _audit("create_webhook", eid, {"webhook": subscription["id"], "url": subscription["url"]})
    response = json_response({**subscription, "secret": secret}, 201)
    return response


@api.get("/events/<event_id>/webhooks/<webhook_id>")
@require_scope("events:read")
def get_webhook(event_id: str, webhook_id: str) -> Response:
    return json_response(services().webhooks.get(_event_id(event_id), webhook_id))


@api.delete("/events/<event_id>/webhooks/<webhook_id>")
@require_scope("events:write")
def delete_webhook(event_id: str, webhook_id: str) -> Response:
    eid = _event_id(event_id)
    services().webhooks.delete(eid, webhook_id)
    _audit("delete_webhook", eid, {"webhook": webhook_id})
    return Response(status=204)


@api.get("/events/<event_id>/webhooks/<webhook_id>/deliveries")
@require_scope("events:read")
def webhook_deliveries(event_id: str, webhook_id: str) -> Response:
    """The delivery log, newest first; ``before`` (a delivery id) pages further back."""
    eid = _event_id(event_id)
    limit = _int_arg("limit", 100, 1, 1000)
    before = _int_arg("before", 0, 1, 999_999_999) or None
    return json_response({"deliveries": services().webhooks.deliveries(eid, webhook_id, limit, before)})


# --- the dashboard ---------------------------------------------------------------------------------


@api.get("/events/<event_id>/dashboard")
@require_scope("events:read")
def dashboard_data(event_id: str) -> Response:
    """Live counters, inlet settings and per-minute samples of the last ``minutes`` (default 180)."""
    minutes = _int_arg("minutes", 180, 1, MAX_CHART_MINUTES)
    return json_response(services().admin.dashboard(event_id, minutes))


@pages.get("/admin/dashboard/<event_id>")
def dashboard(event_id: str) -> Response:
    """The page holds no data: its script asks the admin API with the key the operator pastes in."""
    eid = _event_id(event_id)
    response = Response(render_template("admin/dashboard.html", event_id=eid), mimetype="text/html")
    response.headers["Content-Security-Policy"] = DASHBOARD_CSP
    response.headers["Cache-Control"] = "no-store"
    return response


@pages.get("/admin/console")
def console() -> Response:
    """The operator console: events, relying parties, signing keys and the audit log through the admin API.

    Like the dashboard, the page holds no data; its script asks the admin API with the key the operator
    pastes in, and what it may change follows that key's scopes.
    """
    response = Response(render_template("admin/console.html"), mimetype="text/html")
    response.headers["Content-Security-Policy"] = DASHBOARD_CSP
    response.headers["Cache-Control"] = "no-store"
    return response
