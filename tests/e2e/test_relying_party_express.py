"""express-openid-connect (npm) signs a browser in through a real wait.

The client registration and the application are read from README.md's Node.js section; only the host
and port are replaced. The app runs under node from tests/e2e/js (where ``npm ci`` put express and
express-openid-connect); headless Chromium opens its protected route, waits on the waiting page while
others are ahead, is admitted by the admin API, and comes back signed in with the waiting room's claims.
Then the initiate-login path (a parked request older than ``max_parked_seconds``) and logout.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import service_missing
from tests.e2e.server import free_port
from tests.e2e.test_relying_party_apache import README_ISSUER, README_SITE, code_block, readme_section

pytestmark = pytest.mark.e2e

JS_DIR = Path(__file__).resolve().parent / "js"


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "express-openid-connect").is_dir():
        service_missing("node with express-openid-connect (npm ci in tests/e2e/js)", FileNotFoundError("node"))
    return str(node)


@pytest.fixture
def shop(live_server: Any, tmp_path: Path) -> Any:
    from idp.admin.keys import AdminKeyService

    node = _node()
    server = live_server("redis", IDP_WORKERS=2)
    services = server.services()
    services.events.create({"event_id": "sale", "name": "Sale"})
    _record, admin_key = AdminKeyService(services.db, services.clock).create("express-e2e", ["admin"])
    admin = {"Authorization": f"Bearer {admin_key}"}

    port = free_port()
    site = f"http://127.0.0.1:{port}"
    section = readme_section("Node.js")
    registration = json.loads(code_block(section, "json").replace(README_ISSUER, server.url).replace(README_SITE, site))
    created = requests.post(server.url + "/admin/api/clients", json=registration, headers=admin, timeout=10)
    assert created.status_code == 201, created.text
    source = code_block(section, "js").replace(README_ISSUER, server.url).replace(README_SITE, site)
    assert "app.listen(3000)" in source
    source = source.replace("app.listen(3000)", f"app.listen({port}, '127.0.0.1')")
    # Beside node_modules, so the imports resolve; removed afterwards.
    app_file = JS_DIR / f".express-app-{secrets.token_hex(4)}.cjs"
    app_file.write_text(source, encoding="utf-8")
    log = tmp_path / "express.log"
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "CLIENT_SECRET": created.json()["client_secret"],
        "SESSION_SECRET": secrets.token_urlsafe(48),
    }
    with log.open("wb") as out:
        process = subprocess.Popen([node, str(app_file)], cwd=JS_DIR, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise AssertionError("the express app exited: " + log.read_text(errors="replace"))
            try:
                with urllib.request.urlopen(site + "/", timeout=2):  # noqa: S310 - loopback only
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise AssertionError("the express app did not answer: " + log.read_text(errors="replace")) from None
                time.sleep(0.1)
        yield server, site, admin, registration, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        app_file.unlink(missing_ok=True)


def _admit(server: Any, admin: dict[str, str], by: int) -> None:
    response = requests.post(
        server.url + "/admin/api/increment_serving_counter",
        json={"event_id": "sale", "increment_by": by},
        headers=admin,
        timeout=10,
    )
    assert response.status_code == 200, response.text


def test_express_openid_connect_signs_in_after_a_real_wait(shop, browser):
    from playwright.sync_api import expect

    server, site, admin, registration, log = shop
    for _ in range(2):  # two people are ahead of the browser
        assert requests.post(server.url + "/api/assign_queue_num", json={"event_id": "sale"}, timeout=10).ok
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(site + "/account")
        expect(page).to_have_url(re.compile(re.escape(server.url) + r"/authorize/wait/"))
        _admit(server, admin, 2)
        page.wait_for_timeout(3000)
        assert page.url.startswith(server.url + "/authorize/wait/"), "admitted before its turn"
        _admit(server, admin, 1)
        page.wait_for_url(site + "/account", timeout=30_000)
        claims = json.loads(page.locator("body").inner_text())
        assert claims["queue_position"] == 3, claims
        assert claims["event_id"] == "sale"
        assert claims["iss"] == server.url and claims["aud"] == registration["client_id"]
        assert claims["sub"] and claims["nonce"]

        page.goto(site + "/")
        expect(page.locator("body")).to_have_text("Signed in")
        # Logout ends the waiting-room session too and comes back to baseURL.
        page.goto(site + "/logout")
        page.wait_for_url(re.compile(re.escape(site) + r"/?$"), timeout=30_000)
        expect(page.locator("body")).to_have_text("Signed out")
        stats = requests.get(server.url + "/admin/api/events/sale/stats", headers=admin, timeout=10).json()
        assert stats["completed"] == 1
    finally:
        context.close()


def test_a_login_that_waited_too_long_restarts_at_the_initiate_login_uri(shop, browser):
    from playwright.sync_api import expect

    server, site, admin, registration, log = shop
    patched = requests.patch(
        server.url + f"/admin/api/clients/{registration['client_id']}",
        json={"max_parked_seconds": 1},
        headers=admin,
        timeout=10,
    )
    assert patched.status_code == 200, patched.text
    assert requests.post(server.url + "/api/assign_queue_num", json={"event_id": "sale"}, timeout=10).ok
    context = browser.new_context()
    try:
        page = context.new_page()
        seen: list[str] = []
        page.on("request", lambda r: seen.append(r.url) if r.is_navigation_request() else None)
        page.goto(site + "/login")
        expect(page).to_have_url(re.compile(re.escape(server.url) + r"/authorize/wait/"))
        page.wait_for_timeout(2500)  # the parked request grows older than max_parked_seconds (1 s)
        _admit(server, admin, 2)
        page.wait_for_url(re.compile(re.escape(site) + r"/?$"), timeout=30_000)
        expect(page.locator("body")).to_have_text("Signed in")
        assert any(u.startswith(site + "/login?iss=") for u in seen), seen
    finally:
        context.close()
