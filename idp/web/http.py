"""Request parsing helpers shared by the JSON blueprints."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, current_app, request
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer

from idp.errors import ValidationError
from idp.web import edge
from idp.web.cors import Origins, preflight_headers, response_headers

if TYPE_CHECKING:
    from idp.services import Services


def services() -> Services:
    """The application's service graph (see ``idp.services.Services``)."""
    graph: Services = current_app.extensions["idp"]
    return graph


def json_body(*, optional: bool = False) -> dict[str, Any]:
    """Parse the body as a JSON object; anything else is a 400 with a clear code.

    ``optional``: the action's fields are all optional, so no body at all means ``{}``.
    """
    raw = request.get_data(cache=True)
    if not raw:
        if optional:
            return {}
        raise ValidationError("A JSON object body is required.", code="missing_body")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: nesting deeper than the parser's stack (a few kilobytes of "[" suffice).
        raise ValidationError("The body is not valid JSON.", code="malformed_json") from exc
    if not isinstance(data, dict):
        raise ValidationError("The body must be a JSON object.", code="invalid_body")
    try:
        # JSON may escape a lone UTF-16 surrogate ("\ud800"): valid JSON, but no text any database or
        # log can hold. Refused here, once, rather than failing wherever the string goes.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("Strings must be valid Unicode (no lone surrogates).", code="invalid_unicode") from None
    return data


def required(data: Any, name: str) -> Any:
    if name not in data or data[name] is None:
        raise ValidationError(f"{name} is required.", code="missing_field")
    return data[name]


def query(name: str) -> str:
    value = request.args.get(name)
    if value is None or value == "":
        raise ValidationError(f"{name} is required.", code="missing_field")
    return value


def json_response(payload: Any, status: int = 200, *, cache: str = edge.NO_STORE) -> Response:
    """A JSON answer with the body encoding the fast path uses too (``idp.web.edge``)."""
    response = current_app.response_class(edge.json_text(payload), status=status, mimetype=edge.JSON_MIMETYPE)
    response.headers["Cache-Control"] = cache
    return response


def apply_cors(response: Response, allowed: Origins, allow_headers: str) -> Response:
    """Add the CORS headers of ``idp.web.cors`` to a Flask answer; ``OPTIONS`` (a preflight) becomes an empty 204."""
    origin = request.headers.get("Origin")
    if request.method == "OPTIONS" and response.status_code in (200, 204):
        response.status_code = 204
        response.set_data(b"")
        response.headers.pop("Content-Type", None)
        headers = preflight_headers(allowed, origin, allow_headers)
    else:
        headers = response_headers(allowed, origin)
    for name, value in headers:
        if name == "Vary":
            response.vary.add(value)
        else:
            response.headers[name] = value
    return response


class CachedSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the signing serializer built once per key set.

    Flask builds it on every request (it derives keys), even when no session cookie is sent; the
    serializer holds no per-request state, so one per secret key (and fallbacks) is enough.
    """

    def __init__(self) -> None:
        self._cached: tuple[object, URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        key = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        cached = self._cached
        if cached is None or cached[0] != key:
            cached = (key, super().get_signing_serializer(app))
            self._cached = cached
        return cached[1]
