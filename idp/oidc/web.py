"""Wire the OpenID Connect provider into the app: services, the Authlib server, blueprints, HTML errors."""

from __future__ import annotations

from typing import Any

from flask import Flask

from idp.oidc.interaction import Interactions
from idp.oidc.records import OidcRecords
from idp.oidc.server import OidcServer


def init_app(app: Flask, svc: Any) -> None:
    from idp.oidc import views

    svc.oidc_records = OidcRecords(svc.db, svc.clock)
    svc.oidc_interactions = Interactions(svc, svc.oidc_records)
    svc.oidc_server = OidcServer(svc)
    svc.tokens.grant_places = svc.oidc_server.grant_place
    app.register_blueprint(views.bp)
    if svc.settings.demo and not svc.settings.is_production:
        app.register_blueprint(views.demo_bp)
    app.extensions.setdefault("idp_error_renderers", []).append(views.html_error)
