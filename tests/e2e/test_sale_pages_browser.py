"""The sale's pages in a real browser: the countdown before opening, the pre-queue (the draw), and the
closed pages, in English and Japanese, with and without JavaScript, axe-clean, with README screenshots."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.server import REPO_ROOT

pytestmark = pytest.mark.e2e

SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
AXE = REPO_ROOT / "tests" / "e2e" / "js" / "node_modules" / "axe-core" / "axe.min.js"
# Bounds a wait on a shared machine (the opening plus a poll or a refresh); never a speed claim.
WAIT_MS = 45_000

TEXTS = {
    "en": {
        "not_open": "The waiting room is not open yet.",
        "draw": "You are in the draw",
        "queue": "You are in the queue",
        "over": "The sale is over.",
        "closed": "The waiting room is closed for now.",
    },
    "ja": {
        "not_open": "待合室はまだ開いていません。",
        "draw": "抽選に参加しています",
        "queue": "列に並んでいます",
        "over": "販売は終了しました。",
        "closed": "待合室は現在閉じています。",
    },
}
LOCALES = {"en": "en-US", "ja": "ja-JP"}


def _axe(page: Any) -> list[dict[str, Any]]:
    if not AXE.exists():
        pytest.fail(f"axe-core is not installed: run `npm ci` in tests/e2e/js ({AXE} is missing)")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "async () => await axe.run(document, {runOnly: {type: 'tag', values: "
        "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})"
    )
    return [v for v in result["violations"] if v.get("impact") in ("serious", "critical")]


def _heading(page: Any) -> str:
    return str(page.locator("#wr-heading").inner_text()).strip()


def _check_and_shoot(browser: Any, url: str, language: str, name: str) -> None:
    """axe on the page as served (scripts may be blocked by CSP for axe, so a separate context)."""
    context = browser.new_context(locale=LOCALES[language], viewport={"width": 1280, "height": 900}, bypass_csp=True)
    try:
        page = context.new_page()
        page.goto(url)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{language}.png"), full_page=True)
        violations = _axe(page)
        assert violations == [], [(v["id"], v["help"]) for v in violations]
    finally:
        context.close()


@pytest.fixture
def server(live_server: Any) -> Any:
    return live_server("sqlite")


@pytest.mark.parametrize("language", ["en", "ja"])
@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_the_countdown_moves_on_by_itself_at_the_opening(
    browser: Any, server: Any, language: str, javascript: bool
) -> None:
    services = server.services()
    if javascript:
        # The screenshot and axe, on an event of their own, before the timed part starts.
        services.events.create({"event_id": "later", "name": "Spring concert", "opens_at": int(time.time()) + 3600})
        _check_and_shoot(browser, f"{server.url}/wait/later", language, "countdown")
    opens_at = int(time.time()) + 6
    services.events.create({"event_id": "sale", "name": "Spring concert", "opens_at": opens_at})
    context = browser.new_context(locale=LOCALES[language], java_script_enabled=javascript)
    try:
        page = context.new_page()
        answer = page.goto(f"{server.url}/wait/sale")
        assert answer is not None and answer.status == 409
        assert _heading(page) == TEXTS[language]["not_open"]
        assert page.locator("#wr-countdown").count() == 1
        assert time.time() < opens_at, "the countdown was shown before the opening"
        page.wait_for_function(
            "() => document.getElementById('wr-position') !== null", timeout=WAIT_MS
        ) if javascript else page.wait_for_selector("#wr-position", timeout=WAIT_MS)
        assert _heading(page) == TEXTS[language]["queue"]
        assert page.locator("#wr-position").inner_text().strip() == "1"
    finally:
        context.close()


@pytest.mark.parametrize("language", ["en", "ja"])
@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_the_pre_queue_page_shows_the_entry_then_the_drawn_place(
    browser: Any, server: Any, language: str, javascript: bool
) -> None:
    import hashlib

    services = server.services()
    if javascript:
        # The screenshot and axe, on an event of their own, before the timed part starts.
        later = int(time.time()) + 3600
        services.events.create(
            {"event_id": "later", "name": "Spring concert", "prequeue_opens_at": later - 3600, "opens_at": later}
        )
        _check_and_shoot(browser, f"{server.url}/wait/later", language, "prequeue")
    opens_at = int(time.time()) + 6
    services.events.create(
        {"event_id": "sale", "name": "Spring concert", "prequeue_opens_at": opens_at - 60, "opens_at": opens_at}
    )
    context = browser.new_context(locale=LOCALES[language], java_script_enabled=javascript)
    try:
        page = context.new_page()
        page.goto(f"{server.url}/wait/sale")
        assert _heading(page) == TEXTS[language]["draw"]
        entry_id = page.locator("#wr-entry").inner_text().strip()
        assert len(entry_id) == 64
        assert time.time() < opens_at, "the pre-queue page was shown before the draw"
        page.wait_for_selector("#wr-position", timeout=WAIT_MS)
        assert _heading(page) == TEXTS[language]["queue"]
        # The page's entry id is the one published with the draw, at the place the page shows.
        import requests

        published = requests.get(f"{server.url}/api/lottery", params={"event_id": "sale"}, timeout=10).json()
        position = int(page.locator("#wr-position").inner_text().strip())
        assert published["entries"].index(entry_id) + published["first_position"] == position
        assert hashlib.sha256(published["seed"].encode()).hexdigest() == published["commitment"]
    finally:
        context.close()


@pytest.mark.parametrize("language", ["en", "ja"])
@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_the_closed_pages(browser: Any, server: Any, language: str, javascript: bool) -> None:
    services = server.services()
    now = int(time.time())
    services.events.create({"event_id": "over", "name": "Spring concert", "opens_at": now - 100, "closes_at": now - 10})
    services.events.create({"event_id": "paused", "name": "Spring concert", "mode": "closed"})
    if javascript:
        _check_and_shoot(browser, f"{server.url}/wait/over", language, "sale-over")
        _check_and_shoot(browser, f"{server.url}/wait/paused", language, "room-closed")
    context = browser.new_context(locale=LOCALES[language], java_script_enabled=javascript)
    try:
        page = context.new_page()
        answer = page.goto(f"{server.url}/wait/over")
        assert answer is not None and answer.status == 410
        assert _heading(page) == TEXTS[language]["over"]
        answer = page.goto(f"{server.url}/wait/paused")
        assert answer is not None and answer.status == 409
        assert _heading(page) == TEXTS[language]["closed"]
    finally:
        context.close()


def test_the_dashboard_shows_the_targets_and_changes_them_live(browser: Any, server: Any) -> None:
    from playwright.sync_api import expect

    from idp.admin.keys import AdminKeyService

    services = server.services()
    services.events.create({"event_id": "sale", "max_active": 3})
    for _ in range(5):
        services.room.join("sale")
    services.room.increment_serving("sale", 2)
    _record, key = AdminKeyService(services.db, services.clock).create("dashboard", ["events:write"])
    context = browser.new_context(viewport={"width": 1280, "height": 1100})
    try:
        page = context.new_page()
        page.goto(f"{server.url}/admin/dashboard/sale")
        page.fill("#api-key", key)
        page.click("#sign-in-form button[type=submit]")
        expect(page.locator("#board")).to_be_visible()
        expect(page.locator("#t-max-active")).to_have_text("3")
        expect(page.locator("#t-active")).to_have_text("2")  # two admitted places not yet claimed
        expect(page.locator("#t-max-rate")).to_have_text("none")
        expect(page.locator("#t-mode")).to_have_value("queue")
        page.select_option("#t-mode", "when_busy")
        page.fill("#t-max-active-input", "5")
        page.fill("#t-max-rate-input", "120")
        page.click("#save-targets")
        expect(page.locator("#t-max-rate")).to_have_text("120")
        expect(page.locator("#t-max-active")).to_have_text("5")
        event = services.events.get_fresh("sale")
        assert (event.mode, event.max_active, event.max_per_minute) == ("when_busy", 5, 120)
        page.fill("#t-max-rate-input", "")
        page.click("#save-targets")
        expect(page.locator("#t-max-rate")).to_have_text("none")
        assert services.events.get_fresh("sale").max_per_minute is None
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "dashboard-targets.png"), full_page=True)
    finally:
        context.close()
