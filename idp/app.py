"""The application factory: settings -> logging -> services (built once, typed) -> blueprints -> errors."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from idp.clock import Clock
from idp.config import Settings
from idp.errors import IdpError
from idp.logging import access_log, configure_logging, monotonic_ms
from idp.services import Services, build_services, build_store
from idp.storage.db import SchemaNotCurrentError, require_current_schema
from idp.web import edge
from idp.web.fastpath import FastPath
from idp.web.http import CachedSessionInterface

log = logging.getLogger("idp.http")

__all__ = ["Services", "build_services", "build_store", "create_app"]


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> Flask:
    settings = (settings or Settings.from_env()).validate()
    configure_logging(settings.log_level)
    if settings.secret_is_generated:
        logging.getLogger("idp").warning(
            "IDP_SECRET_KEY is not set: using a development secret generated into the instance "
            "folder (dev_secret_key). Never run like this in production: set IDP_SECRET_KEY."
        )
    app = Flask("idp", static_folder=None)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        SECRET_KEY=settings.secret_key,
        # What a previous IDP_SECRET_KEY signed still verifies.
        SECRET_KEY_FALLBACKS=list(settings.secret_keys[1:]),
    )
    app.session_interface = CachedSessionInterface()
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if settings.proxy_hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops, x_host=settings.proxy_hops
        )
    services = build_services(settings, clock)
    try:
        require_current_schema(services.db)
    except SchemaNotCurrentError as exc:
        logging.getLogger("idp").critical("refusing to start: %s", exc)
        services.close()
        raise
    app.extensions["idp"] = services

    from idp.api.views import bp as api_bp
    from idp.web.ops import bp as ops_bp

    app.register_blueprint(ops_bp)
    app.register_blueprint(api_bp)
    for module in EXTENSIONS:
        importlib.import_module(module).init_app(app, services)
    _register_request_hooks(app)
    _register_error_handlers(app)
    metrics = app.extensions.get("idp_metrics")
    app.wsgi_app = FastPath(  # type: ignore[method-assign]
        app.wsgi_app,
        services,
        settings.max_body_bytes,
        metrics.observe if metrics is not None else None,
        retry_after=settings.retry_after_seconds,
    )
    return app


# Parts of the service with their own blueprints; each module's ``init_app(app, services)`` registers
# its routes (and error pages) and changes nothing in ``services``.
EXTENSIONS: list[str] = [
    "idp.tokens.web",
    "idp.admin.web",
    "idp.pages.web",
    "idp.oidc.web",
    "idp.admin.operator",
    "idp.web.landing",
    "idp.abuse.web",
]


def _register_request_hooks(app: Flask) -> None:
    # These run on every request: each goes through the request and g proxies once (every proxy
    # access costs about a microsecond) and skips building the log line when INFO is off.
    config = app.config
    # Under an https issuer browsers are told to come back over https only (HSTS).
    transport = edge.transport_headers(app.extensions["idp"].settings.issuer)

    @app.before_request
    def _start() -> None:
        req = request._get_current_object()  # type: ignore[attr-defined]
        ctx = g._get_current_object()
        ctx.request_started = monotonic_ms()
        ctx.request_id = edge.request_id(req.headers.get(edge.REQUEST_ID_HEADER))
        # Refuse an oversized body up front, also on views that never read it (GET with a body).
        limit = config["MAX_CONTENT_LENGTH"]
        if limit is not None and (req.content_length or 0) > limit:
            raise RequestEntityTooLarge()

    @app.after_request
    def _finish(response: Response) -> Response:
        ctx = g._get_current_object()
        request_id = ctx.get("request_id", "")
        headers = response.headers
        headers.setdefault(edge.REQUEST_ID_HEADER, request_id)
        for name, value in edge.SECURITY_HEADERS:
            headers.setdefault(name, value)
        if response.mimetype == "text/html":
            for name, value in edge.PAGE_SECURITY_HEADERS:
                headers.setdefault(name, value)
        for name, value in transport:
            headers.setdefault(name, value)
        req = request._get_current_object()  # type: ignore[attr-defined]
        started = ctx.get("request_started")
        # The route template, never the raw path or query string: they carry handles and codes.
        rule = req.url_rule
        access_log(
            request_id,
            req.method,
            rule.rule if rule is not None else "unmatched",
            response.status_code,
            round(monotonic_ms() - started, 2) if started else None,
        )
        return response


def _error_response(answer: edge.ErrorAnswer) -> Response:
    response = Response(answer.body(), status=answer.status, mimetype=edge.JSON_MIMETYPE)
    response.headers["Cache-Control"] = edge.NO_STORE
    for key, value in answer.headers:
        response.headers[key] = value
    return response


def _http_code(exc: HTTPException) -> str:
    name = (exc.name or "error").lower().replace(" ", "_").replace("'", "")
    return {"request_entity_too_large": "body_too_large"}.get(name, name)


def _register_error_handlers(app: Flask) -> None:
    render_hooks: list[Any] = app.extensions.setdefault("idp_error_renderers", [])
    retry_after = app.extensions["idp"].settings.retry_after_seconds

    def render(answer: edge.ErrorAnswer) -> Response:
        # A later part (the browser pages) may render an HTML page for its own routes.
        for hook in render_hooks:
            page = hook(answer.code, answer.message, answer.status)
            if page is not None:
                for key, value in answer.headers:
                    page.headers[key] = value
                return page  # type: ignore[no-any-return]
        return _error_response(answer)

    @app.errorhandler(IdpError)
    def _idp_error(exc: IdpError) -> Response:
        return render(edge.ErrorAnswer.from_error(exc))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        description = exc.description or exc.name
        response = render(edge.ErrorAnswer(status, _http_code(exc), description))
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # The same answer the fast path gives: 503 with Retry-After for an unavailable store, else a 500.
        return render(edge.answer_for(exc, retry_after=retry_after, request_id=g.get("request_id")))
