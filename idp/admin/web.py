"""Wire the admin API into the app: the blueprint under /admin/api."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask

if TYPE_CHECKING:
    from idp.services import Services


def init_app(app: Flask, services: Services) -> None:
    from idp.admin.views import bp

    app.register_blueprint(bp)
