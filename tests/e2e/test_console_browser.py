"""The operator console in headless Chromium, against a real gunicorn: sign in with an admin key, create
an event and edit its settings, change an admission target, register a relying party (its secret shown
once) and rotate its secret, rotate the signing key, and find every change in the audit log. Takes the
README's console screenshots and runs axe-core on each view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
AXE = REPO_ROOT / "tests" / "e2e" / "js" / "node_modules" / "axe-core" / "axe.min.js"


def _axe(page: Any) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "async () => await axe.run(document, {runOnly: {type: 'tag', values: "
        "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})"
    )
    return [v["id"] for v in result["violations"] if v.get("impact") in ("serious", "critical")]


def test_the_console_runs_an_event_from_the_browser(live_server, browser):
    from playwright.sync_api import expect

    from idp.admin.keys import AdminKeyService

    if not AXE.exists():
        pytest.fail(f"axe-core is not installed: run `npm ci` in tests/e2e/js ({AXE} is missing)")
    server = live_server("redis", IDP_WORKERS=2)
    services = server.services()
    _record, key = AdminKeyService(services.db, services.clock).create("console", ["admin"])
    services.events.create({"event_id": "spring-sale", "name": "Spring sale"})
    for _ in range(3):
        requests.post(server.url + "/api/assign_queue_num", json={"event_id": "spring-sale"}, timeout=10)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def admin_get(path: str) -> Any:
        response = requests.get(
            server.url + "/admin/api" + path, headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        assert response.status_code == 200, response.text
        return response.json()

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        problems: list[str] = []
        # Script errors and CSP violations; refused requests are checked below, from the responses.
        page.on(
            "console",
            lambda m: (
                problems.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource")
                else None
            ),
        )
        refused: list[tuple[int, str]] = []
        page.on("response", lambda r: refused.append((r.status, r.url)) if r.status >= 400 else None)
        page.on("dialog", lambda dialog: dialog.accept())

        page.goto(server.url + "/admin/console")
        page.fill("#api-key", "idpk_0000000000000000_" + "x" * 43)
        page.click("#sign-in-form button[type=submit]")
        expect(page.locator("#sign-in-error")).to_have_text("The key was not accepted.")
        page.fill("#api-key", key)
        page.click("#sign-in-form button[type=submit]")

        # Events with live figures: the three visitors who joined are waiting.
        row = page.locator('#events-table tr[data-event-id="spring-sale"]')
        expect(row.locator('[data-field="waiting"]')).to_have_text("3")
        requests.post(server.url + "/api/assign_queue_num", json={"event_id": "spring-sale"}, timeout=10)
        expect(row.locator('[data-field="waiting"]')).to_have_text("4", timeout=15_000)

        # Create an event, then edit its settings.
        page.click("#new-event")
        page.fill("#new-event-id", "summer-sale")
        page.fill("#new-event-name", "Summer sale")
        page.click("#new-event-form button[type=submit]")
        expect(page.locator("#event-title")).to_have_text("summer-sale")
        expect(page.locator("#event-form-name")).to_have_value("Summer sale")
        page.fill("#event-form-name", "Summer sale: tickets")
        page.fill("#event-form-queue_position_expiry_period", "600")
        page.fill("#event-form-branding", '{"title": "Summer tickets", "primary_color": "#0f766e"}')
        page.fill("#event-form-allowed_return_urls", '["https://shop.example/summer"]')
        page.click("#save-event")
        expect(page.locator("#status")).to_contain_text("Event saved")
        event = services.events.get_fresh("summer-sale")
        assert event.name == "Summer sale: tickets"
        assert event.queue_position_expiry_period == 600
        assert event.branding["title"] == "Summer tickets"
        assert event.allowed_return_urls == ["https://shop.example/summer"]
        # A value the API refuses is reported, and nothing is saved.
        page.fill("#event-form-queue_position_expiry_period", "-5")
        page.click("#save-event")
        expect(page.locator("#status")).to_have_class("status bad")
        assert services.events.get_fresh("summer-sale").queue_position_expiry_period == 600
        page.fill("#event-form-queue_position_expiry_period", "600")

        # Fields the API adds appear by themselves: the sale's targets and mode are edited like the rest.
        page.fill("#event-form-max_active", "500")
        page.fill("#event-form-mode", "when_busy")
        page.click("#save-event")
        expect(page.locator("#status")).to_contain_text("Event saved: mode, max_active")
        event = services.events.get_fresh("summer-sale")
        assert event.max_active == 500 and event.mode == "when_busy"

        # Change the inlets' targets: the MaxSize capacity and the periodic inlet's rate.
        page.fill("#inlet-form-max_size", "250")
        page.fill("#inlet-form-periodic-increment_by", "40")
        page.check("#inlet-form-periodic-enabled")
        page.click("#save-inlet")
        expect(page.locator("#status")).to_contain_text("Targets saved")
        inlet = admin_get("/events/summer-sale/inlet")
        assert inlet["max_size"] == 250
        assert inlet["periodic"]["increment_by"] == 40 and inlet["periodic"]["enabled"] is True
        page.screenshot(path=str(SCREENSHOTS / "console-event.png"), full_page=True)

        # Register a relying party: the secret is shown once and works.
        page.click('#nav a[data-view="clients"]')
        page.select_option("#client-event", "summer-sale")
        page.fill("#client-name", "Summer shop")
        page.fill("#client-redirects", "https://shop.example/oidc/callback\n")
        page.fill("#client-login", "https://shop.example/login")
        page.click("#register-client")
        expect(page.locator("#secret-once")).to_be_visible()
        client_id = page.locator("#secret-client-id").inner_text()
        secret = page.locator("#secret-value").inner_text()
        assert services.clients.get(client_id).check_secret(secret)
        assert services.clients.get(client_id).initiate_login_uri == "https://shop.example/login"
        page.click("#secret-done")
        expect(page.locator("#secret-once")).to_be_hidden()
        assert secret not in page.content()
        client_row = page.locator(f'#clients-table tr[data-client-id="{client_id}"]')
        expect(client_row).to_contain_text("Summer shop")

        # Rotate its secret: a new one, shown once; the old one stops working.
        client_row.locator(".rotate-secret").click()
        expect(page.locator("#secret-once")).to_be_visible()
        rotated = page.locator("#secret-value").inner_text()
        assert rotated != secret
        assert services.clients.get(client_id).check_secret(rotated)
        assert not services.clients.get(client_id).check_secret(secret)
        page.click("#secret-done")
        page.screenshot(path=str(SCREENSHOTS / "console-clients.png"), full_page=True)

        # Rotate the signing key with no choice made (the API call has no body). The new key is published
        # at once; it signs at once only when no RS256 key signs yet, else once every cache has it.
        before = admin_get("/keys")["keys"]
        signing = any(k["alg"] == "RS256" and k["status"] == "active" for k in before)
        page.click('#nav a[data-view="keys"]')
        page.click("#rotate-key")
        expect(page.locator("#status")).to_contain_text("published; it signs from")
        kid = page.locator("#status").inner_text().split("New key ")[1].split(" ")[0]
        assert kid not in {k["kid"] for k in before}
        row = page.locator(f'#keys-table tr[data-kid="{kid}"]')
        expect(row.locator('[data-field="status"]')).to_have_text("next" if signing else "active")
        rotated_key = next(k for k in admin_get("/keys")["keys"] if k["kid"] == kid)
        assert rotated_key["alg"] == "RS256" and rotated_key["active_from"]
        assert kid in {k["kid"] for k in requests.get(server.url + "/jwks.json", timeout=10).json()["keys"]}

        # Every change is in the audit log, with the acting key.
        page.click('#nav a[data-view="audit"]')
        actions = page.locator("#audit-table tbody tr")
        expect(actions.first).to_be_visible()
        seen = set(page.locator("#audit-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.action)"))
        assert {
            "event.create",
            "event.update",
            "update_inlet",
            "client.create",
            "client.rotate_secret",
            "keys.rotate",
        } <= seen
        expect(page.locator('#audit-table tr[data-action="update_inlet"]').first).to_contain_text("summer-sale")
        expect(page.locator('#audit-table tr[data-action="event.update"]').first).to_contain_text('"max_active":500')
        page.screenshot(path=str(SCREENSHOTS / "console-audit.png"), full_page=True)

        page.click('#nav a[data-view="events"]')
        expect(page.locator('#events-table tr[data-event-id="summer-sale"]')).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / "console-events.png"), full_page=True)

        # The key lives in this tab only; signing out forgets it.
        page.click("#sign-out")
        expect(page.locator("#sign-in")).to_be_visible()
        assert page.evaluate("window.sessionStorage.getItem('idp_admin_key')") is None

        assert problems == []  # no script errors and no CSP violations
        assert [(status, url.split("/admin/api/")[-1]) for status, url in refused if "favicon" not in url] == [
            (401, "events?limit=1"),
            (400, "events/summer-sale"),
        ]
    finally:
        context.close()

    # Accessibility of each view (axe needs its script injected, so this context bypasses the CSP).
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    try:
        page = context.new_page()
        page.goto(server.url + "/admin/console")
        page.fill("#api-key", key)
        page.click("#sign-in-form button[type=submit]")
        expect(page.locator('#events-table tr[data-event-id="summer-sale"]')).to_be_visible()
        for view, ready in (
            ("#/events", "#events-table tbody tr"),
            ("#/events/summer-sale", "#event-form-name"),
            ("#/clients", "#clients-table tbody tr"),
            ("#/keys", "#keys-table tbody tr"),
            ("#/audit", "#audit-table tbody tr"),
        ):
            page.evaluate(f"window.location.hash = '{view}'")
            expect(page.locator(ready).first).to_be_visible()
            assert _axe(page) == [], view
    finally:
        context.close()
