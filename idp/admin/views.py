"""The admin REST API under /admin/api (filled in below)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin_api", __name__, url_prefix="/admin/api")
