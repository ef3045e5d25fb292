"""A waiting page on another origin drives the public queue API with ``fetch`` in headless Chromium.

The page (``tests/e2e/sites/waiting``) is written as a page for "Virtual Waiting Room on AWS" is: join,
poll ``queue_num``, ``serving_num`` and ``waiting_num``, then ``generate_token`` once served. It is served
from a second loopback origin (another port); an admin API call advances the serving counter while it
waits. The browser itself enforces CORS: the listed origin completes with no console error, a page on an
origin that is not listed cannot even join (its preflight is refused).
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from idp.admin.keys import AdminKeyService
from tests.e2e.static_site import SITES, static_site

pytestmark = pytest.mark.e2e

DEADLINE_SECONDS = 30.0


def _advance(server: Any, admin_key: str, by: int) -> None:
    request = urllib.request.Request(
        server.url + "/admin/api/increment_serving_counter",
        data=json.dumps({"event_id": "sale", "increment_by": by}).encode(),
        headers={"Authorization": f"Bearer {admin_key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def _wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _open(browser: Any, url: str) -> tuple[Any, Any, list[str]]:
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    return context, page, errors


def _drive_to_done(browser: Any, server: Any, site: str, admin_key: str) -> list[str]:
    context, page, errors = _open(browser, f"{site}/index.html?api={server.url}&event=sale")
    try:
        _wait_for(lambda: page.text_content("#state") == "waiting", "the page to join and show its place")
        assert page.text_content("#position") == "2"  # somebody joined before the page
        _wait_for(lambda: page.text_content("#waiting") == "2", "the page to show how many wait")
        # Still waiting while the serving counter stays below the page's number.
        _advance(server, admin_key, 1)
        _wait_for(lambda: page.text_content("#serving") == "1", "the page to see the counter move")
        assert page.text_content("#state") == "waiting"
        _advance(server, admin_key, 1)
        _wait_for(lambda: page.text_content("#state") in ("done", "failed"), "the page to finish")
        assert page.text_content("#state") == "done", page.text_content("#error")
        token_set = page.evaluate("window.tokenSet")
        assert set(token_set) >= {"access_token", "refresh_token", "id_token", "token_type", "expires_in"}
    finally:
        context.close()
    return errors


def _start(live_server: Any, **env: Any) -> tuple[Any, str]:
    server = live_server("redis", **env)
    services = server.services()
    services.events.create({"event_id": "sale", "name": "Sale"})
    services.room.join("sale")
    _, admin_key = AdminKeyService(services.db, services.clock).create("cors-e2e", ["events:write"])
    return server, admin_key


def test_an_aws_style_waiting_page_works_from_any_origin_by_default(live_server: Any, browser: Any) -> None:
    with static_site(SITES / "waiting") as site:
        server, admin_key = _start(live_server)
        errors = _drive_to_done(browser, server, site, admin_key)
    assert errors == []


def test_only_listed_origins_may_call_and_the_browser_refuses_others(live_server: Any, browser: Any) -> None:
    with static_site(SITES / "waiting") as allowed, static_site(SITES / "waiting") as other:
        server, admin_key = _start(live_server, IDP_CORS_ORIGINS=allowed)
        errors = _drive_to_done(browser, server, allowed, admin_key)
        assert errors == []

        context, page, refused_errors = _open(browser, f"{other}/index.html?api={server.url}&event=sale")
        try:
            _wait_for(lambda: page.text_content("#state") == "failed", "the refused page to fail")
            assert "TypeError" in (page.text_content("#error") or "")  # fetch rejects: a network error
            _wait_for(lambda: any("CORS policy" in e for e in refused_errors), "Chromium's CORS console error")
        finally:
            context.close()
    # The refused preflight stopped the join from being sent: only the allowed page and the first visitor.
    counters = server.services().room.counters("sale", fresh=True)
    assert counters.queue == 2
