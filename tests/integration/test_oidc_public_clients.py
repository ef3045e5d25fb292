"""Public clients (``token_endpoint_auth_method: none``): PKCE S256, no secret, rotating refresh tokens,
and CORS on the endpoints a browser app calls, for the origins of the registered clients only."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.admin_support import bearer, make_key
from tests.conftest import all_backends
from tests.oidc_flow import REDIRECT, auth_params, exchange, login, make_client, pkce_pair, query_of

pytestmark = pytest.mark.integration

SPA = "https://rp.example"  # the origin of REDIRECT
OTHER = "https://evil.example.net"
PUBLIC_CORS_PATHS = ("/.well-known/openid-configuration", "/jwks.json", "/token", "/userinfo", "/revoke")


@pytest.fixture
def spa(services: Any, event: Any) -> str:
    config, secret = make_client(services, "spa", token_endpoint_auth_method="none")
    assert secret is None
    return str(config.client_id)


def _code(client: Any, services: Any, client_id: str = "spa") -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    params = auth_params(client_id, code_challenge=challenge, code_challenge_method="S256")
    return login(client, services, params)["code"], verifier


def _public_exchange(client: Any, code: str, verifier: str | None, **extra: Any) -> Any:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": "spa", **extra}
    if verifier is not None:
        data["code_verifier"] = verifier
    return client.post("/token", data=data, headers={"Origin": SPA})


def _refresh(client: Any, refresh_token: str, client_id: str = "spa", **extra: Any) -> Any:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id, **extra}
    return client.post("/token", data=data, headers={"Origin": SPA})


def test_registration_accepts_the_rfc7591_field_and_gives_no_secret(app: Any, services: Any, event: Any) -> None:
    from tests.openapi_check import ValidatingClient

    client = ValidatingClient(app.test_client())  # every answer held to openapi.yaml
    headers = bearer(make_key(services, "admin"))
    body = {"client_id": "spa", "event_id": "sale", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
    created = client.post("/admin/api/clients", headers=headers, json=body)
    assert created.status_code == 201, created.get_json()
    data = created.get_json()
    assert "client_secret" not in data
    assert data["token_endpoint_auth_methods"] == ["none"]
    assert data["require_pkce"] is True and data["refresh_token_rotation"] is True
    assert client.post("/admin/api/clients/spa/rotate_secret", headers=headers).status_code == 409
    # The list form says the same; a public client cannot turn PKCE or rotation off.
    listed = {**body, "client_id": "spa2", "token_endpoint_auth_methods": ["none"]}
    del listed["token_endpoint_auth_method"]
    assert client.post("/admin/api/clients", headers=headers, json=listed).status_code == 201
    for bad in (
        {"require_pkce": False},
        {"refresh_token_rotation": False},
        {"token_endpoint_auth_methods": ["none", "client_secret_post"]},
        {"token_endpoint_auth_methods": ["client_secret_post"]},  # disagrees with the single field
    ):
        refused = client.post("/admin/api/clients", headers=headers, json={**body, "client_id": "spa3", **bad})
        assert refused.status_code == 400, bad
    # Confidential clients keep their secret and may opt into rotation.
    confidential = {**body, "client_id": "web", "token_endpoint_auth_method": "client_secret_post"}
    made = client.post("/admin/api/clients", headers=headers, json={**confidential, "refresh_token_rotation": True})
    assert made.status_code == 201 and len(made.get_json()["client_secret"]) >= 32
    assert made.get_json()["refresh_token_rotation"] is True


def test_discovery_lists_none(client: Any) -> None:
    doc = client.get("/.well-known/openid-configuration").get_json()
    assert "none" in doc["token_endpoint_auth_methods_supported"]
    assert {"client_secret_basic", "client_secret_post"} <= set(doc["token_endpoint_auth_methods_supported"])
    assert "none" not in doc["introspection_endpoint_auth_methods_supported"]
    assert doc["code_challenge_methods_supported"] == ["S256"]


@all_backends
def test_public_client_signs_in_with_pkce_and_rotates_refresh_tokens(client: Any, services: Any, spa: str) -> None:
    code, verifier = _code(client, services)
    tokens = _public_exchange(client, code, verifier)
    assert tokens.status_code == 200, tokens.get_json()
    body = tokens.get_json()
    assert {"access_token", "id_token", "refresh_token"} <= set(body)
    userinfo = client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}", "Origin": SPA})
    assert userinfo.status_code == 200 and userinfo.headers["Access-Control-Allow-Origin"] == SPA

    first = body["refresh_token"]
    second = _refresh(client, first)
    assert second.status_code == 200, second.get_json()
    rotated = second.get_json()["refresh_token"]
    assert rotated != first
    third = _refresh(client, rotated)
    assert third.status_code == 200
    latest = third.get_json()["refresh_token"]

    # Replaying a used refresh token fails and revokes the family: the newest one and its access token too.
    replay = _refresh(client, first)
    assert replay.status_code == 400 and replay.get_json()["error"] == "invalid_grant"
    assert _refresh(client, latest).get_json()["error"] == "invalid_grant"
    after = client.get("/userinfo", headers={"Authorization": f"Bearer {third.get_json()['access_token']}"})
    assert after.status_code == 401


def test_public_client_must_use_pkce(client: Any, services: Any, spa: str) -> None:
    # No challenge: refused at the authorization endpoint (sent back to the registered redirect URI).
    refused = client.get("/authorize", query_string=auth_params("spa"))
    assert refused.status_code == 303
    assert query_of(refused.headers["Location"])["error"] == "invalid_request"
    # A challenge, then no verifier, a wrong one, or a secret the client does not have: no tokens.
    code, verifier = _code(client, services)
    assert _public_exchange(client, code, None).status_code == 400
    code, verifier = _code(client, services)
    wrong, _ = pkce_pair()
    assert _public_exchange(client, code, wrong).get_json()["error"] == "invalid_grant"
    code, verifier = _code(client, services)
    assert _public_exchange(client, code, verifier, client_secret="x" * 40).status_code in (400, 401)


def test_confidential_clients_still_need_their_secret(client: Any, services: Any, event: Any) -> None:
    config, secret = make_client(services, "web")
    code = login(client, services, auth_params("web"))["code"]
    # Without a secret (the "none" method) a confidential client is refused.
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": "web"}
    assert client.post("/token", data=data).status_code == 401
    code = login(client, services, auth_params("web"))["code"]
    tokens = exchange(client, code, "web", secret).get_json()
    # Without rotation the refresh token stays the same and keeps working.
    data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    from tests.oidc_flow import basic

    for _ in range(2):
        again = client.post("/token", data=data, headers=basic("web", secret))
        assert again.status_code == 200 and "refresh_token" not in again.get_json()


def test_confidential_client_with_rotation(client: Any, services: Any, event: Any) -> None:
    from tests.oidc_flow import basic

    _, secret = make_client(services, "web", refresh_token_rotation=True)
    code = login(client, services, auth_params("web"))["code"]
    first = exchange(client, code, "web", secret).get_json()["refresh_token"]
    data = {"grant_type": "refresh_token", "refresh_token": first}
    second = client.post("/token", data=data, headers=basic("web", secret))
    assert second.status_code == 200 and second.get_json()["refresh_token"] != first
    assert client.post("/token", data=data, headers=basic("web", secret)).get_json()["error"] == "invalid_grant"


def test_public_client_revokes_with_its_client_id(client: Any, services: Any, spa: str) -> None:
    code, verifier = _code(client, services)
    body = _public_exchange(client, code, verifier).get_json()
    revoked = client.post("/revoke", data={"token": body["refresh_token"], "client_id": "spa"}, headers={"Origin": SPA})
    assert revoked.status_code == 200 and revoked.headers["Access-Control-Allow-Origin"] == SPA
    assert _refresh(client, body["refresh_token"]).get_json()["error"] == "invalid_grant"
    # Introspection needs a client with a secret.
    assert client.post("/introspect", data={"token": body["access_token"], "client_id": "spa"}).status_code == 401


@pytest.mark.parametrize("path", PUBLIC_CORS_PATHS)
def test_cors_for_registered_origins_only(client: Any, services: Any, spa: str, path: str) -> None:
    method = "GET" if path in ("/.well-known/openid-configuration", "/jwks.json", "/userinfo") else "POST"
    preflight = client.options(
        path,
        headers={
            "Origin": SPA,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == SPA
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "Origin" in preflight.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in preflight.headers
    answer = client.open(path, method=method, headers={"Origin": SPA})
    assert answer.headers.get("Access-Control-Allow-Origin") == SPA, answer.status_code
    for origin in (OTHER, "https://rp.example:8443", "http://rp.example", "null"):
        refused = client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": method})
        assert "Access-Control-Allow-Origin" not in refused.headers
        assert "Access-Control-Allow-Origin" not in client.open(path, method=method, headers={"Origin": origin}).headers


def test_explicit_allowed_cors_origins_replace_the_redirect_origins(client: Any, services: Any, event: Any) -> None:
    make_client(services, "app", token_endpoint_auth_method="none", allowed_cors_origins=["https://app.example.org"])
    doc = "/.well-known/openid-configuration"
    assert client.get(doc, headers={"Origin": "https://app.example.org"}).headers["Access-Control-Allow-Origin"]
    assert "Access-Control-Allow-Origin" not in client.get(doc, headers={"Origin": SPA}).headers
    # Other endpoints (authorize, introspect, the admin API) send no CORS headers at all.
    for path in ("/introspect", "/admin/api/clients"):
        answer = client.post(path, headers={"Origin": "https://app.example.org"}, data=json.dumps({}))
        assert "Access-Control-Allow-Origin" not in answer.headers, path


def test_a_client_made_public_loses_its_secret(client: Any, services: Any, event: Any) -> None:
    config, secret = make_client(services, "web")
    assert config.check_secret(secret)
    public = services.clients.update("web", {"token_endpoint_auth_method": "none"})
    assert public.is_public and public.require_pkce and public.refresh_token_rotation
    assert not public.check_secret(secret)
    # Back to confidential: it has no secret until one is made.
    back = services.clients.update("web", {"token_endpoint_auth_methods": ["client_secret_basic"]})
    assert not back.is_public and not back.check_secret(secret)
    _, fresh = services.clients.rotate_secret("web")
    assert services.clients.get("web").check_secret(fresh)


@all_backends
def test_two_refreshes_racing_with_one_token_cannot_both_win(client: Any, services: Any, spa: str) -> None:
    code, verifier = _code(client, services)
    first = _public_exchange(client, code, verifier).get_json()["refresh_token"]
    records = services.oidc_records
    grant = records.grant_by_refresh(first)
    # Both requests found the grant by the same token; only one compare-and-set succeeds.
    assert records.rotate_refresh(grant, first, "a" * 43) is True
    assert records.rotate_refresh(grant, first, "b" * 43) is False
    assert records.grant_of_used_refresh(first) == grant.grant_id
    assert records.grant_by_refresh("a" * 43) is not None and records.grant_by_refresh("b" * 43) is None
