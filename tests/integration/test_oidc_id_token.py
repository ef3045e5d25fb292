"""The ID token as Authlib's OpenIDCode builds it from our hooks: header, times, hashes, subject, session."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from tests.oidc_flow import ISSUER, auth_params, basic, decode_id_token, exchange, login, make_client

pytestmark = pytest.mark.integration


@pytest.fixture
def rp(services: Any, event: Any) -> tuple[str, str]:
    config, secret = make_client(services)
    return config.client_id, secret


def _half_hash(value: str) -> str:
    digest = hashlib.sha256(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode("ascii")


def test_id_token_header_claims_and_refresh(client: Any, services: Any, clock: Any, rp: Any) -> None:
    client_id, secret = rp
    callback = login(client, services, auth_params(nonce="n-1"))
    issued_at = int(clock.now())
    tokens = exchange(client, callback["code"], client_id, secret).get_json()
    header, claims = decode_id_token(client, tokens["id_token"])
    assert header["typ"] == "JWT" and header["alg"] == "RS256"
    assert header["kid"] in {key["kid"] for key in client.get("/jwks.json").get_json()["keys"]}
    assert claims["iss"] == ISSUER and claims["aud"] == client_id
    assert claims["iat"] == issued_at and claims["exp"] == issued_at + 3600
    assert claims["nonce"] == "n-1" and claims["auth_time"] == claims["admitted_at"] <= issued_at
    assert claims["at_hash"] == _half_hash(tokens["access_token"])
    info = client.get("/userinfo", headers={"Authorization": "Bearer " + tokens["access_token"]}).get_json()
    assert info["sub"] == claims["sub"] and "sid" not in info
    assert isinstance(claims["sid"], str) and claims["sid"]

    clock.advance(120)
    refreshed = client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        headers=basic(client_id, secret),
    )
    assert refreshed.status_code == 200, refreshed.data
    body = refreshed.get_json()
    _, again = decode_id_token(client, body["id_token"])
    # Core §12.2: the refreshed ID token keeps the original authentication time; same subject and session.
    assert again["auth_time"] == claims["auth_time"] and again["iat"] == issued_at + 120
    assert again["sub"] == claims["sub"] and again["sid"] == claims["sid"] and "nonce" not in again
    assert again["at_hash"] == _half_hash(body["access_token"])
