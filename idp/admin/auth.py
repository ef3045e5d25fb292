"""The admin API's guard: ``require_scope`` lets a request through only with an admin key holding the
scope (``idp.admin.keys`` holds the keys, their hashes and scopes)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from idp.admin.keys import (
    SCOPES,
    AdminAuthError,
    AdminKeyRecord,
    AdminKeyService,
    InsufficientScopeError,
    MissingCredentialsError,
)

F = TypeVar("F", bound=Callable[..., Any])


def current_admin_key() -> AdminKeyRecord | None:
    """The key that authenticated this request (inside a ``require_scope`` view)."""
    from flask import g

    record: AdminKeyRecord | None = g.get("admin_key")
    return record


def authenticate_request(scope: str) -> AdminKeyRecord:
    """Authenticate the current Flask request for ``scope``: 401 without a good key, 403 without the scope."""
    from flask import current_app, g, request

    from idp.web.bearer import request_bearer

    if not request.headers.get("Authorization"):
        raise MissingCredentialsError()
    token = request_bearer()
    keys: AdminKeyService = current_app.extensions["idp"].admin_keys
    record = keys.authenticate(token) if token is not None else None
    if record is None:
        # Wrong keys are limited per address (guessing); a valid key is never refused by that limit.
        defence = current_app.extensions["idp"].defence
        address = request.remote_addr or "unknown"
        defence.check_failures("admin_auth", address)
        defence.count_failure("admin_auth", address)
        raise AdminAuthError()
    if not record.has_scope(scope):
        raise InsufficientScopeError(scope)
    g.admin_key = record
    return record


def require_scope(scope: str) -> Callable[[F], F]:
    """Decorate a Flask view so only an admin key holding ``scope`` (or ``admin``) reaches it."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            authenticate_request(scope)
            return view(*args, **kwargs)

        wrapper.required_scope = scope  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator
