"""Wire the admin API into the app: the key and audit services, and the blueprint under /admin/api."""

from __future__ import annotations

from typing import Any

from flask import Flask

from idp.admin.audit import AuditLog
from idp.admin.auth import AdminKeyService


def init_app(app: Flask, services: Any) -> None:
    services.admin_keys = AdminKeyService(services.db, services.clock, services.settings.cache_ttl_ms / 1000.0)
    services.audit = AuditLog(services.db, services.clock)

    from idp.admin.views import bp

    app.register_blueprint(bp)
