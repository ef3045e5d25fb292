"""A single-page app built on ``oidc-client-ts`` (npm) signs in as a public client, in headless Chromium.

The app (``tests/e2e/sites/spa`` plus the library's browser build from ``tests/e2e/js/node_modules``) is
served from a second loopback origin. It registers no secret and uses PKCE S256; the visitor waits on the
waiting page until an admin API call admits them. Discovery, JWKS, token and userinfo are all fetched by
the app across origins (CORS for the origin of its redirect URI). A refresh rotates the refresh token, and
replaying the first one fails and ends the grant.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from idp.admin.keys import AdminKeyService
from tests.conftest import IN_CI
from tests.e2e.static_site import SITES, static_site

pytestmark = pytest.mark.e2e

BROWSER_BUILD = Path(__file__).resolve().parent / "js" / "node_modules" / "oidc-client-ts" / "dist" / "browser"
DEADLINE_SECONDS = 45.0


def _site(tmp_path: Path) -> Path:
    library = BROWSER_BUILD / "oidc-client-ts.min.js"
    if not library.is_file():
        message = "oidc-client-ts is missing: run scripts/install-test-deps.sh"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    folder = tmp_path / "spa"
    shutil.copytree(SITES / "spa", folder)
    shutil.copy(library, folder / library.name)
    return folder


def _advance(server: Any, admin_key: str, by: int) -> None:
    request = urllib.request.Request(
        server.url + "/admin/api/increment_serving_counter",
        data=json.dumps({"event_id": "sale", "increment_by": by}).encode(),
        headers={"Authorization": f"Bearer {admin_key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def _wait_until(page: Any, check: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001, S110 - the page is navigating; look again
            pass
        page.wait_for_timeout(200)  # lets Playwright take in the page's events (navigations)
    raise AssertionError(f"timed out waiting for {what}; page at {page.url}")


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_spa_signs_in_with_pkce_through_a_real_wait_and_rotates_refresh_tokens(
    live_server: Any, browser: Any, tmp_path: Path, backend: str
) -> None:
    folder = _site(tmp_path)
    with static_site(folder) as spa:
        server = live_server(backend)
        services = server.services()
        services.events.create({"event_id": "sale", "name": "Sale"})
        services.room.join("sale")  # somebody is ahead of the app's visitor
        config, secret = services.clients.create(
            {
                "client_id": "spa",
                "event_id": "sale",
                "redirect_uris": [f"{spa}/index.html"],
                "token_endpoint_auth_method": "none",
                "scope": "openid email",
            }
        )
        assert secret is None and config.is_public
        _, admin_key = AdminKeyService(services.db, services.clock).create("spa-e2e", ["events:write"])

        context = browser.new_context()
        page = context.new_page()
        console_errors: list[str] = []
        page_errors: list[str] = []
        cross_origin: dict[str, str | None] = {}
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))

        def seen(response: Any) -> None:
            request = response.request
            if request.resource_type in ("fetch", "xhr") and response.url.startswith(server.url):
                path = response.url[len(server.url) :].split("?")[0]
                cross_origin[path] = response.headers.get("access-control-allow-origin")

        page.on("response", seen)
        try:
            page.goto(f"{spa}/index.html?authority={server.url}&client_id=spa&start=1")
            # Parked on the waiting page: the visitor queues behind the first one.
            _wait_until(page, lambda: page.url.startswith(server.url + "/authorize/wait/"), "the waiting page")
            page.wait_for_timeout(1000)
            assert page.url.startswith(server.url + "/authorize/wait/")
            _advance(server, admin_key, 2)
            _wait_until(page, lambda: page.text_content("#state") in ("done", "failed"), "the app to finish")
            assert page.text_content("#state") == "done", page.text_content("#error")
            result = page.evaluate("window.result")
        finally:
            context.close()

    assert result["idTokenVerified"] is True
    assert result["sub"] and result["refreshedSub"] == result["sub"]
    assert result["email"].endswith("@visitors.invalid")  # from userinfo
    assert result["queuePosition"] == 2
    assert result["rotated"] is True and result["accessTokenChanged"] is True
    assert result["replayStatus"] == 400 and result["replayError"] == "invalid_grant"
    assert result["afterReplay"] == "refused"  # the replay revoked the whole grant
    for path in ("/.well-known/openid-configuration", "/jwks.json", "/token", "/userinfo"):
        assert cross_origin.get(path) == spa, (path, cross_origin)
    assert page_errors == []
    assert not [e for e in console_errors if "CORS" in e], console_errors
