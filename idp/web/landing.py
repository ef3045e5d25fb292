"""The landing page at ``/``: what the service is and where to go next.

``IDP_LANDING_PAGE`` chooses what ``/`` shows: ``full`` (the default outside production: links to the
demo sign-in, the operator console, discovery and the API description), ``minimal`` (the default in
production: the service's name and its discovery document, nothing about the deployment) or ``off``
(a 404, as if there were no page).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, abort, render_template, url_for
from werkzeug.routing import BuildError

from idp.web.http import services

if TYPE_CHECKING:
    from idp.services import Services

PAGES = Path(__file__).resolve().parents[2] / "waiting_pages"
DEMO_CLIENT_ID = "demo-rp"

bp = Blueprint(
    "landing",
    __name__,
    template_folder=str(PAGES / "templates"),
    static_folder=str(PAGES / "static" / "site"),
    static_url_path="/static/site",
)


def init_app(app: Flask, svc: Services) -> None:
    app.register_blueprint(bp)


def _demo_links(svc: Any) -> dict[str, str] | None:
    """The demo relying party's sign-in URL and its event's waiting page, when ``idp serve --demo`` made them."""
    if not svc.settings.demo or svc.settings.is_production:
        return None
    client = svc.clients.find(DEMO_CLIENT_ID)
    if client is None or not client.redirect_uris:
        return None
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": client.redirect_uris[0],
            "scope": "openid email",
            "state": "demo",
        }
    )
    return {
        "sign_in": f"/authorize?{query}",
        "event_id": client.event_id,
        "wait": f"/wait/{client.event_id}",
        "dashboard": f"/admin/dashboard/{client.event_id}",
    }


@bp.get("/")
def landing() -> Response:
    """Say what this service is; how much it says is the operator's choice (``IDP_LANDING_PAGE``)."""
    svc = services()
    mode = svc.settings.landing_mode
    if mode == "off":
        abort(404)
    demo = _demo_links(svc) if mode == "full" else None
    try:
        console: str | None = url_for("operator_pages.console")
    except BuildError:
        console = None
    body = render_template("landing.html", full=mode == "full", demo=demo, console=console, issuer=svc.settings.issuer)
    response = Response(body, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store" if demo else "public, max-age=60"
    return response
