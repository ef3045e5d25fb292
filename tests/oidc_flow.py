"""Helpers that drive the OpenID Connect flow through a Flask test client (shared by the OIDC tests)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

from joserfc import jwt
from joserfc.jwk import KeySet

REDIRECT = "https://rp.example/callback"
ISSUER = "http://127.0.0.1:8000"


def make_client(services: Any, client_id: str = "rp", **fields: Any) -> tuple[Any, str]:
    data = {"client_id": client_id, "event_id": "sale", "redirect_uris": [REDIRECT], **fields}
    return services.clients.create(data)  # type: ignore[no-any-return]


def auth_params(client_id: str = "rp", **extra: Any) -> dict[str, Any]:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": "openid email",
        "state": "state-" + secrets.token_hex(4),
    }
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None}


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query, keep_blank_values=True).items()}


def admit_everyone(services: Any, event_id: str = "sale") -> None:
    counters = services.room.counters(event_id, fresh=True)
    if counters.queue > counters.serving:
        services.room.increment_serving(event_id, counters.queue - counters.serving)


def login(client: Any, services: Any, params: dict[str, Any], *, method: str = "GET") -> dict[str, str]:
    """Authorize, wait if parked (admitting everyone), and return the callback's query parameters."""
    if method == "POST":
        response = client.post("/authorize", data=params)
    else:
        response = client.get("/authorize", query_string=params)
    assert response.status_code == 303, response.data[:500]
    location = response.headers["Location"]
    if location.startswith("/authorize?"):
        # A POST from a browser without a visitor cookie is looked at again as a same-site GET.
        response = client.get(location)
        assert response.status_code == 303, response.data[:500]
        location = response.headers["Location"]
    if location.startswith("/authorize/wait/"):
        page = client.get(location)
        if page.status_code == 200:
            admit_everyone(services)
            page = client.get(location)
        assert page.status_code == 303, page.data[:500]
        location = page.headers["Location"]
    assert location.startswith(REDIRECT), location
    return query_of(location)


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def exchange(client: Any, code: str, client_id: str, secret: str, *, method: str = "basic", **extra: Any) -> Any:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, **extra}
    if method == "basic":
        return client.post("/token", data=data, headers=basic(client_id, secret))
    return client.post("/token", data={**data, "client_id": client_id, "client_secret": secret})


def decode_id_token(client: Any, id_token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    jwks = client.get("/jwks.json").get_json()
    token = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=["RS256", "ES256"])
    return dict(token.header), dict(token.claims)
