"""A real relying party, the npm package ``openid-client`` v6, signs in through a live gunicorn server.

Discovery, authorization with PKCE (S256) and nonce, a real wait on the waiting page (the visitor stays
parked until an admin API call advances the serving counter), the code exchange with ``client_secret_basic`` and
again with ``client_secret_post``, ID token verification against the JWKS, RFC 9207 ``iss`` checked
(and a tampered one refused), userinfo, refresh and introspection. ``scripts/install-test-deps.sh``
installs the npm packages (``npm ci`` in tests/e2e/js).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from idp.admin.keys import AdminKeyService
from tests.conftest import IN_CI

pytestmark = pytest.mark.e2e

JS_DIR = Path(__file__).resolve().parent / "js"
REDIRECT = "https://rp.example/callback"


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "openid-client").is_dir():
        message = "node or the npm packages are missing: run scripts/install-test-deps.sh"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return node


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_openid_client_signs_in_after_a_real_wait(live_server: Any, backend: str) -> None:
    node = _node()
    server = live_server(backend)
    services = server.services()
    services.events.create({"event_id": "sale", "name": "Sale"})
    services.room.join("sale")  # somebody is ahead of the relying party's visitor
    _, secret = services.clients.create({"client_id": "node-rp", "event_id": "sale", "redirect_uris": [REDIRECT]})
    _, admin_key = AdminKeyService(services.db, services.clock).create("oidc-e2e", ["events:write"])
    env = {
        **os.environ,
        "ISSUER": server.url,
        "CLIENT_ID": "node-rp",
        "CLIENT_SECRET": secret,
        "REDIRECT_URI": REDIRECT,
    }
    process = subprocess.Popen(
        [node, str(JS_DIR / "oidc_rp.mjs")],
        cwd=str(JS_DIR),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("WAITING "), (first, process.stderr.read() if process.poll() is not None else "")
        assert int(first.split()[1]) == 2
        # Still parked: the serving counter has not reached the visitor.
        assert services.room.counters("sale", fresh=True).serving == 0
        # An operator admits two people through the admin API.
        request = urllib.request.Request(
            server.url + "/admin/api/increment_serving_counter",
            method="POST",
            data=json.dumps({"event_id": "sale", "increment_by": 2}).encode(),
            headers={"Authorization": f"Bearer {admin_key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            assert json.load(response)["serving_num"] == 2
        out, err = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err + server.log()
    result_line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    result = json.loads(result_line[len("RESULT ") :])
    basic, post = result["basic"], result["post"]
    assert basic["waited"] is True
    assert post["waited"] is False  # the admitted browser is answered at once
    assert basic["sub"] == post["sub"] and basic["userinfo"]["sub"] == basic["sub"]
    assert basic["claims"]["queue_position"] == 2 and basic["claims"]["event_id"] == "sale"
    assert basic["userinfo"]["email_verified"] is False and basic["userinfo"]["preferred_username"]
    with urllib.request.urlopen(server.url + "/jwks.json", timeout=10) as response:  # noqa: S310 - loopback
        jwks = json.load(response)
    assert basic["kid"] in {key["kid"] for key in jwks["keys"]}
    assert services.room.counters("sale", fresh=True).queue == 2  # one place for the browser
