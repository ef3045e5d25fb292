"""``/userinfo`` refusals per RFC 6750 §3: status, ``WWW-Authenticate`` challenge and JSON reason."""

from __future__ import annotations

from typing import Any

import pytest

from tests.oidc_flow import auth_params, decode_id_token, exchange, login, make_client

pytestmark = pytest.mark.integration


@pytest.fixture
def rp(services: Any, event: Any) -> tuple[str, str]:
    config, secret = make_client(services)
    return config.client_id, secret


def _tokens(client: Any, services: Any, rp: tuple[str, str], scope: str = "openid email") -> dict[str, Any]:
    callback = login(client, services, auth_params(scope=scope))
    response = exchange(client, callback["code"], *rp)
    assert response.status_code == 200, response.data
    tokens: dict[str, Any] = response.get_json()
    return tokens


def _challenge(response: Any) -> dict[str, str]:
    """The parameters of a ``Bearer`` challenge (RFC 6750 §3)."""
    scheme, _, rest = response.headers["WWW-Authenticate"].partition(" ")
    assert scheme == "Bearer"
    params = {}
    for part in rest.split(", "):
        name, _, value = part.partition("=")
        assert value.startswith('"') and value.endswith('"'), part
        params[name] = value[1:-1]
    return params


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {},
        {"headers": {"Authorization": "Bearer"}},
        {"headers": {"Authorization": "Bearer   "}},
        {"headers": {"Authorization": "Basic cnA6c2VjcmV0"}},
        {"method": "POST", "data": {"access_token": ""}},
    ],
)
def test_missing_token_is_401_with_a_challenge_without_error_code(client: Any, rp: Any, request_kwargs: Any) -> None:
    kwargs = dict(request_kwargs)
    response = client.open("/userinfo", method=kwargs.pop("method", "GET"), **kwargs)
    assert response.status_code == 401
    assert _challenge(response) == {"realm": "userinfo"}
    assert response.get_json() == {"error": "invalid_request", "message": "A bearer token is required."}
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("not-a-jwt", "The access token is not a compact JWS."),
        ("a.b.c", "The access token header is malformed."),
        ("x" * 9000, "The access token is missing or too long."),
    ],
)
def test_malformed_token_is_401_invalid_token(client: Any, rp: Any, token: str, reason: str) -> None:
    for response in (
        client.get("/userinfo", headers={"Authorization": "Bearer " + token}),
        client.post("/userinfo", data={"access_token": token}),
    ):
        assert response.status_code == 401
        assert _challenge(response) == {"realm": "userinfo", "error": "invalid_token", "error_description": reason}
        assert response.get_json() == {"error": "invalid_token", "message": reason}


def test_tampered_token_is_401_invalid_token(client: Any, services: Any, rp: Any) -> None:
    access = _tokens(client, services, rp)["access_token"]
    header, payload, signature = access.split(".")
    forged = ".".join([header, payload, ("A" if signature[0] != "A" else "B") + signature[1:]])
    response = client.get("/userinfo", headers={"Authorization": "Bearer " + forged})
    assert response.status_code == 401
    assert _challenge(response)["error"] == "invalid_token"
    # The ID token is no access token, though it is signed by the same key.
    id_token = _tokens(client, services, rp)["id_token"]
    response = client.get("/userinfo", headers={"Authorization": "Bearer " + id_token})
    assert response.status_code == 401 and _challenge(response)["error"] == "invalid_token"


def test_expired_token_is_401_invalid_token(client: Any, services: Any, clock: Any, rp: Any) -> None:
    access = _tokens(client, services, rp)["access_token"]
    bearer = {"Authorization": "Bearer " + access}
    assert client.get("/userinfo", headers=bearer).status_code == 200
    clock.advance(3600)
    response = client.get("/userinfo", headers=bearer)
    assert response.status_code == 401
    assert _challenge(response) == {
        "realm": "userinfo",
        "error": "invalid_token",
        "error_description": "The access token has expired.",
    }


def test_revoked_token_is_401_invalid_token(client: Any, services: Any, rp: Any) -> None:
    client_id, secret = rp
    access = _tokens(client, services, rp)["access_token"]
    revoked = client.post("/revoke", data={"token": access, "client_id": client_id, "client_secret": secret})
    assert revoked.status_code == 200
    response = client.get("/userinfo", headers={"Authorization": "Bearer " + access})
    assert response.status_code == 401 and _challenge(response)["error"] == "invalid_token"


def test_token_without_openid_scope_is_403_insufficient_scope(client: Any, services: Any, rp: Any) -> None:
    tokens = _tokens(client, services, rp, scope="email")
    assert tokens["scope"] == "email" and "id_token" not in tokens
    response = client.get("/userinfo", headers={"Authorization": "Bearer " + tokens["access_token"]})
    assert response.status_code == 403
    assert _challenge(response) == {
        "realm": "userinfo",
        "error": "insufficient_scope",
        "error_description": "The access token was not granted the openid scope.",
        "scope": "openid",
    }
    assert response.get_json()["error"] == "insufficient_scope"


def test_good_token_answers_the_id_token_claims(client: Any, services: Any, rp: Any) -> None:
    tokens = _tokens(client, services, rp)
    _, claims = decode_id_token(client, tokens["id_token"])
    for response in (
        client.get("/userinfo", headers={"Authorization": "bearer " + tokens["access_token"]}),
        client.post("/userinfo", headers={"Authorization": "Bearer " + tokens["access_token"]}),
        client.post("/userinfo", data={"access_token": tokens["access_token"]}),
    ):
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
        info = response.get_json()
        expected = {"sub", "preferred_username", "queue_position", "event_id", "admitted_at", "email", "email_verified"}
        assert set(info) == expected
        assert all(info[name] == claims[name] for name in expected)


def test_an_unavailable_store_is_503_not_an_invalid_token(
    client: Any, services: Any, rp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from idp.errors import UnavailableError

    client_id, secret = rp
    tokens = _tokens(client, services, rp)

    def down(*_args: object, **_kwargs: object) -> Any:
        raise UnavailableError()

    monkeypatch.setattr(services.oidc_server.records, "grant", down)
    bearer = {"Authorization": "Bearer " + tokens["access_token"]}
    for response in (
        client.get("/userinfo", headers=bearer),
        client.post(
            "/introspect", data={"token": tokens["access_token"], "client_id": client_id, "client_secret": secret}
        ),
        client.post("/revoke", data={"token": tokens["access_token"], "client_id": client_id, "client_secret": secret}),
    ):
        assert response.status_code == 503, response.data
        assert response.headers["Retry-After"].isdigit()
        assert response.get_json()["error"] == "service_unavailable"
