"""The operator dashboard in headless Chromium: sign in with an admin key, charts drawn from the worker's
per-minute samples, the counter advanced and the periodic inlet paused with the buttons."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from idp.clock import FrozenClock
from tests.worker_support import make_worker

pytestmark = pytest.mark.e2e

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "dashboard.png"
MINUTES = 90


def simulate_traffic(services, clock):
    """An hour and a half of a sale, minute by minute, with the real worker writing the samples."""
    services.inlets.update("sale", {"periodic": {"enabled": True, "increment_by": 8}})
    worker = make_worker(services)
    joined: list[str] = []
    claimed = 0
    issued: list[tuple[int, str]] = []
    for minute in range(MINUTES):
        arrivals = int(9 + 8 * math.sin(minute / 15.0) + (minute % 5))
        for _ in range(max(0, arrivals)):
            joined.append(services.room.join("sale")[1].request_id)
        worker.tick()
        if minute % 15 == 7:
            services.room.increment_serving("sale", 20)  # the operator lets a batch in by hand
        serving = services.room.counters("sale", fresh=True).serving
        while claimed < min(serving, len(joined)):
            request_id = joined[claimed]
            claimed += 1
            if claimed % 5:  # four in five admitted visitors come in
                services.tokens.issue("sale", request_id)
                issued.append((minute, request_id))
        while issued and issued[0][0] < minute - 12:  # sessions last about twelve minutes
            _started, request_id = issued.pop(0)
            services.tokens.update_session("sale", request_id, 1 if int(request_id[-1], 16) % 4 else -1)
        clock.advance(60)
    worker.tick()


def test_dashboard_draws_charts_and_drives_the_room(live_server):
    from playwright.sync_api import expect, sync_playwright

    from idp.admin.keys import AdminKeyService

    server = live_server("redis", IDP_WORKERS=2)
    clock = FrozenClock(time.time() - MINUTES * 60)
    services = server.services(clock=clock)
    services.events.create({"event_id": "sale", "name": "Big sale", "enable_queue_position_expiry": False})
    _record, key = AdminKeyService(services.db, clock).create("dashboard", ["events:write"])
    simulate_traffic(services, clock)
    before = services.room.counters("sale", fresh=True).serving

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            failed: list[tuple[int, str]] = []
            page.on("response", lambda r: failed.append((r.status, r.url)) if r.status >= 400 else None)
            page.goto(server.url + "/admin/dashboard/sale")
            expect(page.locator("#sign-in")).to_be_visible()
            page.fill("#api-key", "idpk_0000000000000000_" + "x" * 43)
            page.click("#sign-in-form button[type=submit]")
            expect(page.locator("#sign-in-error")).to_have_text("The key was not accepted.")
            page.fill("#api-key", key)
            page.click("#sign-in-form button[type=submit]")
            expect(page.locator("#board")).to_be_visible()
            expect(page.locator("#c-serving")).to_have_text(f"{before:,}")
            samples = MINUTES + 1  # one per simulated minute and the minute the simulation ended in
            expect(page.locator("#chart-waiting")).to_have_attribute("data-points", str(samples))
            expect(page.locator("#chart-active")).to_have_attribute("data-points", str(samples))
            expect(page.locator("#chart-admissions")).to_have_attribute("data-points", str(samples - 1))
            assert page.locator("#chart-waiting path.line").count() == 1
            assert page.locator("#chart-admissions rect.bar").count() == samples - 1
            assert page.locator("#chart-active path.line").count() == 1
            expect(page.locator("#inlet-state")).to_have_text("running (+8/min)")
            page.screenshot(path=str(SCREENSHOT), full_page=True)

            page.fill("#advance-by", "25")
            page.click("#advance")
            expect(page.locator("#c-serving")).to_have_text(f"{before + 25:,}")
            assert services.room.counters("sale", fresh=True).serving == before + 25

            page.click("#toggle-pause")
            expect(page.locator("#inlet-state")).to_have_text("paused")
            assert services.inlets.get("sale").periodic.paused is True
            expect(page.locator("#toggle-pause")).to_have_text("Resume periodic inlet")

            # A reload keeps the key for this tab only; signing out forgets it.
            page.reload()
            expect(page.locator("#board")).to_be_visible()
            page.click("#sign-out")
            expect(page.locator("#sign-in")).to_be_visible()
            assert page.evaluate("window.sessionStorage.getItem('idp_admin_key')") is None
            # The only refused request is the wrong key's; every asset and API call of the page worked.
            assert [(status, url.split("/admin/api/")[-1]) for status, url in failed if "favicon" not in url] == [
                (401, "events/sale/dashboard?minutes=240")
            ]
        finally:
            browser.close()
