"""Mimics of the real relying parties: each sends exactly what the product sends and checks what it checks.

Sources: docs/reference notes on AWS ALB ``authenticate-oidc``, Amazon Cognito OIDC identity providers and
the WordPress "OpenID Connect Generic Client" 3.10 (see the README's relying-party sections).
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.oidc_flow import ISSUER, admit_everyone

pytestmark = pytest.mark.integration

ALB_CALLBACK = "https://shop.example.com/oauth2/idpresponse"
COGNITO_CALLBACK = "https://auth.shop.example.com/oauth2/idpresponse"
WP_CALLBACK = "https://blog.example.com/wp-admin/admin-ajax.php?action=openid-connect-authorize"


def _callback(client: Any, services: Any, params: dict[str, str], redirect_uri: str) -> dict[str, str]:
    response = client.get("/authorize", query_string=params)
    assert response.status_code == 303
    location = response.headers["Location"]
    if location.startswith("/authorize/wait/"):
        assert client.get(location).status_code == 200  # a real wait
        admit_everyone(services)
        response = client.get(location)
        assert response.status_code == 303
        location = response.headers["Location"]
    assert location.startswith(redirect_uri)
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _jwks(client: Any) -> KeySet:
    return KeySet.import_key_set(client.get("/jwks.json").get_json())


def test_aws_alb(client: Any, services: Any, event: Any) -> None:
    config, secret = services.clients.create({"client_id": "alb", "event_id": "sale", "redirect_uris": [ALB_CALLBACK]})
    state = base64.urlsafe_b64encode(b"\x01" * 120).decode()  # ALB sends a long opaque state
    callback = _callback(
        client,
        services,
        {
            "response_type": "code",
            "client_id": "alb",
            "redirect_uri": ALB_CALLBACK,
            "scope": "openid",
            "state": state,
        },
        ALB_CALLBACK,
    )
    assert callback["state"] == state and callback["iss"] == ISSUER
    token = client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": callback["code"],
            "redirect_uri": ALB_CALLBACK,
            "client_id": "alb",
            "client_secret": secret,
        },
    )
    assert token.status_code == 200
    body = token.get_json()
    assert body["token_type"] == "Bearer" and body["id_token"] and body["access_token"]
    claims = jwt.decode(body["id_token"], _jwks(client)).claims
    assert claims["iss"] == ISSUER and claims["aud"] == "alb" and "nonce" not in claims
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200
    userinfo = info.get_json()
    assert userinfo["sub"] == claims["sub"]
    # ALB refuses (AuthUserinfoResponseSizeExceeded) when claims plus access token exceed 11 KB.
    assert len(json.dumps(userinfo)) + len(body["access_token"]) < 11 * 1024


def test_amazon_cognito(client: Any, services: Any, event: Any) -> None:
    _, secret = services.clients.create(
        {
            "client_id": "cognito",
            "event_id": "sale",
            "redirect_uris": [COGNITO_CALLBACK],
            "token_endpoint_auth_methods": ["client_secret_post"],
        }
    )
    discovery = client.get("/.well-known/openid-configuration").get_json()
    assert discovery["issuer"] == ISSUER and not discovery["issuer"].endswith("/")
    jwks = client.get("/jwks.json").get_json()
    assert all(key.get("kid") for key in jwks["keys"])
    callback = _callback(
        client,
        services,
        {
            "client_id": "cognito",
            "redirect_uri": COGNITO_CALLBACK,
            "response_type": "code",
            "scope": "openid email profile",
            "state": "H4sIAAAAAAAAAE2Q",
            "nonce": "cognito-nonce",
        },
        COGNITO_CALLBACK,
    )
    token = client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "client_id": "cognito",
            "client_secret": secret,
            "redirect_uri": COGNITO_CALLBACK,
            "code": callback["code"],
        },
    )
    assert token.status_code == 200
    body = token.get_json()
    header = json.loads(base64.urlsafe_b64decode(body["id_token"].split(".")[0] + "=="))
    assert header["kid"] in {key["kid"] for key in jwks["keys"]}
    claims = jwt.decode(body["id_token"], _jwks(client)).claims
    assert claims["nonce"] == "cognito-nonce"
    # attributes_request_method POST: the access token in the Authorization header.
    info = client.post("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200
    userinfo = info.get_json()
    assert userinfo["sub"] == claims["sub"] and userinfo["email"] and userinfo["email_verified"] is False


def test_wordpress_openid_connect_generic(client: Any, services: Any, event: Any) -> None:
    _, secret = services.clients.create({"client_id": "wordpress", "event_id": "sale", "redirect_uris": [WP_CALLBACK]})
    state = "0f4c4ae3b6a5e6b7c1d2e3f4a5b6c7d8"
    callback = _callback(
        client,
        services,
        {
            "response_type": "code",
            "scope": "openid email profile",
            "client_id": "wordpress",
            "state": state,
            "redirect_uri": WP_CALLBACK,
        },
        WP_CALLBACK,
    )
    assert callback["action"] == "openid-connect-authorize" and callback["state"] == state
    token = client.post(
        "/token",
        data={
            "code": callback["code"],
            "client_id": "wordpress",
            "client_secret": secret,
            "redirect_uri": WP_CALLBACK,
            "grant_type": "authorization_code",
            "scope": "openid email profile",
        },
    )
    assert token.status_code == 200
    body = token.get_json()
    assert body["token_type"].lower() == "bearer" and body["id_token"]
    # WordPress only base64-decodes the ID token.
    claims = json.loads(base64.urlsafe_b64decode(body["id_token"].split(".")[1] + "=="))
    assert claims["sub"] and claims["preferred_username"] and claims["email"]
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}).get_json()
    assert info["sub"] == claims["sub"] and info["preferred_username"] and info["email"]
    refreshed = client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": "wordpress",
            "client_secret": secret,
        },
    )
    assert refreshed.status_code == 200 and refreshed.get_json()["access_token"]
    # The next visit of the same browser links to the same WordPress user.
    again = client.get(
        "/authorize",
        query_string={
            "response_type": "code",
            "scope": "openid email profile",
            "client_id": "wordpress",
            "state": "second",
            "redirect_uri": WP_CALLBACK,
        },
    )
    code = {k: v[0] for k, v in parse_qs(urlsplit(again.headers["Location"]).query).items()}["code"]
    second = client.post(
        "/token",
        data={
            "code": code,
            "client_id": "wordpress",
            "client_secret": secret,
            "redirect_uri": WP_CALLBACK,
            "grant_type": "authorization_code",
            "scope": "openid email profile",
        },
    ).get_json()
    assert json.loads(base64.urlsafe_b64decode(second["id_token"].split(".")[1] + "=="))["sub"] == claims["sub"]
