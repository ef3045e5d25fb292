"""Operational endpoints: liveness and readiness."""

from __future__ import annotations

import logging

from flask import Blueprint, Response
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from idp.errors import UnavailableError
from idp.web.http import json_response, services

bp = Blueprint("ops", __name__)
log = logging.getLogger("idp.ops")


@bp.get("/healthz")
def healthz() -> Response:
    """The process is alive (no backing service is touched)."""
    return json_response({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """The database and the queue store answer; 503 otherwise so a load balancer stops sending traffic."""
    svc = services()
    checks: dict[str, str] = {}
    for name, ping in (("database", svc.db.ping), ("queue_store", svc.store.ping)):
        try:
            ping()
            checks[name] = "ok"
        except (UnavailableError, RedisError, SQLAlchemyError, OSError) as exc:
            log.warning("readiness check failed", extra={"check": name, "error": type(exc).__name__})
            checks[name] = "unavailable"
    ok = all(v == "ok" for v in checks.values())
    response = json_response({"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503)
    if not ok:
        response.headers["Retry-After"] = str(svc.settings.retry_after_seconds)
    return response
