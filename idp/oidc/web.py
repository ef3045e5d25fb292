"""Wire the OpenID Connect provider into the app: its blueprints and its HTML error pages."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask

if TYPE_CHECKING:
    from idp.services import Services


def init_app(app: Flask, svc: Services) -> None:
    from idp.oidc import views

    app.register_blueprint(views.bp)
    if svc.settings.demo and not svc.settings.is_production:
        app.register_blueprint(views.demo_bp)
    app.extensions.setdefault("idp_error_renderers", []).append(views.html_error)
