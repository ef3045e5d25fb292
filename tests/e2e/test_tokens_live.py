"""Tokens from a real gunicorn server, verified by independent libraries at real time through /jwks.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import jwt as pyjwt
import pytest
import requests
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jwt as jwcrypto_jwt

from idp.tokens.issuer import TokenService

pytestmark = pytest.mark.e2e


def start(live_server: Any, backend: str, jwks_max_age: int = 1) -> tuple[Any, Any]:
    # Re-read key metadata on every request and let caches keep the JWKS ``jwks_max_age`` seconds, so a
    # rotation made here is published at once and signs that long (plus a second) later.
    server = live_server(backend, IDP_KEY_REFRESH_SECONDS=0, IDP_JWKS_MAX_AGE=jwks_max_age)
    services = server.services()
    services.events.create({"event_id": "sale", "name": "Sale"})
    return server, services


def admitted_token_set(server: Any, services: Any) -> tuple[str, dict[str, Any]]:
    joined = requests.post(server.url + "/api/assign_queue_num", json={"event_id": "sale"}, timeout=10).json()
    rid = joined["api_request_id"]
    services.room.increment_serving("sale", 1)
    answer = requests.post(server.url + "/api/generate_token", json={"event_id": "sale", "request_id": rid}, timeout=10)
    assert answer.status_code == 200, answer.text
    return rid, answer.json()


def pyjwt_verify(server: Any, token: str) -> dict[str, Any]:
    signing_key = pyjwt.PyJWKClient(server.url + "/jwks.json", cache_jwk_set=False).get_signing_key_from_jwt(token)
    return pyjwt.decode(token, signing_key.key, algorithms=["RS256", "ES256"], audience="sale", issuer=server.url)


def jwcrypto_verify(server: Any, token: str) -> dict[str, Any]:
    keyset = jwcrypto_jwk.JWKSet.from_json(requests.get(server.url + "/jwks.json", timeout=10).text)
    checked = jwcrypto_jwt.JWT(
        jwt=token, key=keyset, expected_type="JWS", check_claims={"aud": "sale", "iss": server.url}
    )
    return json.loads(checked.claims)


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "redis"])
def test_rs256_and_es256_tokens_verify_with_pyjwt_and_jwcrypto(live_server, backend):
    server, services = start(live_server, backend)
    rid, body = admitted_token_set(server, services)
    for use in ("access", "refresh", "id"):
        claims = pyjwt_verify(server, body[f"{use}_token"])
        assert claims == jwcrypto_verify(server, body[f"{use}_token"])
        assert claims["sub"] == rid and claims["token_use"] == use and claims["queue_position"] == 1
        assert claims["exp"] - claims["iat"] == 3600
    assert pyjwt.get_unverified_header(body["access_token"])["alg"] == "RS256"

    # ES256: a token service on the same stores signs; the server publishes the key and accepts the token.
    es_tokens = TokenService(services.db, services.room, services.keys, services.clock, services.settings, alg="ES256")
    joined = requests.post(server.url + "/api/assign_queue_num", json={"event_id": "sale"}, timeout=10).json()
    services.room.increment_serving("sale", 1)
    es_body = es_tokens.issue("sale", joined["api_request_id"])
    es_token = es_body["access_token"]
    assert pyjwt.get_unverified_header(es_token)["alg"] == "ES256"
    assert pyjwt_verify(server, es_token)["sub"] == joined["api_request_id"]
    assert jwcrypto_verify(server, es_token)["token_use"] == "access"
    gate = requests.get(
        server.url + "/verify?event_id=sale", headers={"Authorization": f"Bearer {es_token}"}, timeout=10
    )
    assert gate.status_code == 200
    assert gate.headers["X-Queue-Place"] == services.tokens.place_reference("sale", joined["api_request_id"])
    assert joined["api_request_id"] not in str(gate.headers) + gate.text
    assert gate.headers["X-Queue-Position"] == "2"


def test_a_token_signed_before_idp_keys_rotate_still_verifies_after_it(live_server):
    # The command line starts a Python process; on a busy machine that alone takes seconds, so the new
    # key must not be due to sign before the checks that the old one still signs have run.
    server, services = start(live_server, "sqlite", jwks_max_age=8)
    old_rid, old = admitted_token_set(server, services)
    old_kid = pyjwt.get_unverified_header(old["access_token"])["kid"]
    env = {**os.environ, **server.env}
    rotated = subprocess.run(
        [sys.executable, "-m", "idp.cli", "keys", "rotate"], env=env, capture_output=True, text=True, timeout=120
    )
    assert rotated.returncode == 0, rotated.stderr
    answer = json.loads(rotated.stdout)
    new_kid, active_from = answer["kid"], answer["active_from"]
    assert new_kid != old_kid and active_from > time.time()
    published = {k["kid"] for k in requests.get(server.url + "/jwks.json", timeout=10).json()["keys"]}
    assert {old_kid, new_kid} <= published
    # Until active_from the old key signs; the new one is already in every JWKS.
    assert pyjwt.get_unverified_header(admitted_token_set(server, services)[1]["access_token"])["kid"] == old_kid
    while time.time() < active_from + 0.5:
        time.sleep(0.2)
    assert pyjwt_verify(server, old["access_token"])["sub"] == old_rid
    assert jwcrypto_verify(server, old["id_token"])["sub"] == old_rid
    gate = requests.get(
        server.url + "/verify?event_id=sale", headers={"Authorization": f"Bearer {old['access_token']}"}, timeout=10
    )
    assert gate.status_code == 200
    # Asking again for the old request id gives the same tokens; a new visitor gets the new key.
    again = requests.post(
        server.url + "/api/generate_token", json={"event_id": "sale", "request_id": old_rid}, timeout=10
    ).json()
    assert again["access_token"] == old["access_token"]
    new_rid, new = admitted_token_set(server, services)
    assert pyjwt.get_unverified_header(new["access_token"])["kid"] == new_kid
    assert pyjwt_verify(server, new["access_token"])["sub"] == new_rid
    listed = subprocess.run(
        [sys.executable, "-m", "idp.cli", "keys", "list"], env=env, capture_output=True, text=True, timeout=120
    )
    statuses = {k["kid"]: k["status"] for k in json.loads(listed.stdout) if k["alg"] == "RS256"}
    assert statuses == {old_kid: "retiring", new_kid: "active"}


def test_garbage_and_oversized_credentials_never_get_a_5xx(live_server):
    server, services = start(live_server, "redis")
    _rid, body = admitted_token_set(server, services)
    head, payload, signature = body["access_token"].split(".")
    for authorization in (
        "Bearer " + "a" * 20_000,  # beyond the server's header limit
        "Bearer " + "a" * 8000,
        f"Bearer {head}.{payload}.{signature[:-4]}AAAA",
        "Bearer W10.e30.c2ln",  # header is a JSON array
        "Bearer eyJhbGciOiJub25lIn0.e30.",
    ):
        answer = requests.get(
            server.url + "/verify?event_id=sale", headers={"Authorization": authorization}, timeout=10
        )
        assert 400 <= answer.status_code < 500, (authorization[:40], answer.status_code)
    cookie = requests.get(
        server.url + "/verify?event_id=sale", cookies={"idp_access": body["access_token"]}, timeout=10
    )
    assert cookie.status_code == 200
    assert server.running, server.log()
