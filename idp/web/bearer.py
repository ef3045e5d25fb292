"""The one reader of bearer credentials (RFC 6750) for every endpoint that takes one.

``/userinfo`` (through Authlib's ResourceProtector), ``/verify`` and the admin API all read the
``Authorization: Bearer <token>`` header here. The scheme is case-insensitive (RFC 9110 §11.1) and
surrounding blanks are ignored; any other scheme, or a scheme without a credential, is no bearer.
"""

from __future__ import annotations

from flask import request


def bearer_token(header: str | None) -> str | None:
    """The credential of an ``Authorization: Bearer <token>`` header, or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    value = value.strip()
    return value or None


def request_bearer(*, form: bool = False) -> str | None:
    """The bearer token of the current request.

    The ``Authorization`` header first; with ``form``, a POST's ``access_token`` form field (RFC 6750
    §2.2, which OpenID Connect Core §5.3.1 allows at ``/userinfo``) when the header carries none.
    """
    token = bearer_token(request.headers.get("Authorization"))
    if token is None and form and request.method == "POST":
        token = request.form.get("access_token") or None
    return token
