"""A key is in every worker's JWKS before any worker signs with it (4 gunicorn workers, real HTTP).

A relying party that fetches the JWKS right after receiving a token may reach any worker; each must
list the token's ``kid``: for the first ES256 token (the key exists before any worker answers) and
around a rotation (every worker publishes the new key within its key refresh interval, and the key signs
only from its ``active_from``, which comes later).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt as pyjwt
import pytest
import requests

from tests.admin_support import bearer

pytestmark = pytest.mark.e2e

CALLBACK = "https://rp.example/callback"
ANSWERS = 20
REFRESH_SECONDS = 1


def _published_everywhere(server: Any, kid: str) -> None:
    """Twenty fresh connections (spread over the workers) all list ``kid``."""
    for number in range(ANSWERS):
        answer = requests.get(server.url + "/jwks.json", timeout=10, headers={"Connection": "close"})
        assert answer.status_code == 200
        kids = {k["kid"] for k in answer.json()["keys"]}
        if kid not in kids:
            stored = [(k["kid"], k["status"], k.get("active_from")) for k in server.services().keys.list_keys()]
            pytest.fail(f"answer {number} lacks {kid}: {kids}; stored {stored}; {time.time()}\n{server.log()[-4000:]}")


def _id_token(server: Any, services: Any, secret: str) -> str:
    """Sign in as a new browser through /authorize, admitted at once; the ID token from /token."""
    browser = requests.Session()
    params = {"response_type": "code", "client_id": "es", "redirect_uri": CALLBACK, "scope": "openid", "state": "s"}
    first = browser.get(server.url + "/authorize", params=params, allow_redirects=False, timeout=10)
    assert first.status_code == 303, first.text[:300]
    location = first.headers["Location"]
    counters = services.room.counters("sale", fresh=True)
    if counters.queue > counters.serving:
        services.room.increment_serving("sale", counters.queue - counters.serving)
    done = browser.get(server.url + location, allow_redirects=False, timeout=10)
    assert done.status_code == 303 and done.headers["Location"].startswith(CALLBACK), done.text[:300]
    code = parse_qs(urlsplit(done.headers["Location"]).query)["code"][0]
    token = requests.post(
        server.url + "/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK},
        auth=("es", secret),
        timeout=10,
    )
    assert token.status_code == 200, token.text
    return str(token.json()["id_token"])


def test_every_worker_publishes_a_key_before_it_signs(live_server: Any) -> None:
    from idp.admin.keys import AdminKeyService

    server = live_server("sqlite", IDP_WORKERS=4, IDP_JWKS_MAX_AGE=2, IDP_KEY_REFRESH_SECONDS=str(REFRESH_SECONDS))
    services = server.services()
    _record, key = AdminKeyService(services.db, services.clock).create("keys", ["admin"])
    assert requests.post(
        server.url + "/admin/api/events", headers=bearer(key), json={"event_id": "sale"}, timeout=10
    ).ok
    client = requests.post(
        server.url + "/admin/api/clients",
        headers=bearer(key),
        timeout=10,
        json={
            "client_id": "es",
            "event_id": "sale",
            "redirect_uris": [CALLBACK],
            "id_token_signed_response_alg": "ES256",
        },
    )
    assert client.status_code == 201, client.text
    secret = client.json()["client_secret"]

    first = pyjwt.get_unverified_header(_id_token(server, services, secret))
    assert first["alg"] == "ES256"
    _published_everywhere(server, first["kid"])

    env = {**os.environ, **server.env}
    rotated = subprocess.run(
        [sys.executable, "-m", "idp.cli", "keys", "rotate", "--alg", "ES256"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rotated.returncode == 0, rotated.stderr
    rotated_at = time.time()
    answer = json.loads(rotated.stdout)
    new_kid, active_from = answer["kid"], answer["active_from"]
    # Right after the rotation the old key still signs. Every worker publishes the new key once it
    # re-reads the key metadata (IDP_KEY_REFRESH_SECONDS=1 here), which is well before the key signs.
    assert pyjwt.get_unverified_header(_id_token(server, services, secret))["kid"] == first["kid"]
    _published_everywhere(server, first["kid"])
    time.sleep(max(0.0, rotated_at + REFRESH_SECONDS + 0.5 - time.time()))
    _published_everywhere(server, new_kid)
    assert time.time() < active_from, "the new key had to be everywhere before it signs"
    while time.time() < active_from + 0.5:
        time.sleep(0.2)
    signed = pyjwt.get_unverified_header(_id_token(server, services, secret))
    assert signed["kid"] == new_kid
    _published_everywhere(server, new_kid)
    assert server.running, server.log()
