"""The waiting page in a real browser (headless Chromium) against a real gunicorn server.

A visitor queues (first on the queue-first page, or arriving through ``/authorize`` from a relying
party), waits while the serving counter is advanced through the admin API, and lands on the relying
party with JavaScript on and off. Also: the same place across reloads and tabs, the Japanese page,
screenshots for the README, and an axe-core accessibility check.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from idp.pages.schedule import PollSchedule
from tests.admin_support import bearer
from tests.e2e.server import REPO_ROOT
from tests.e2e.static_site import StubPages, stub_pages

pytestmark = pytest.mark.e2e

SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
AXE = REPO_ROOT / "tests" / "e2e" / "js" / "node_modules" / "axe-core" / "axe.min.js"
# Long enough for a poll near the front (about 2 s, jittered) on a busy machine; never a speed claim.
WAIT_MS = 30_000


@pytest.fixture
def rp() -> Iterator[StubPages]:
    """A tiny relying party on loopback: it answers every GET with a page and remembers the paths."""
    with stub_pages() as pages:
        yield pages


class Room:
    """A live server with an event, a relying-party client and an admin key, driven over HTTP."""

    def __init__(self, server: Any, rp: Any) -> None:
        self.server = server
        self.url = server.url
        from idp.admin.keys import AdminKeyService

        self.services = server.services()
        _record, self.key = AdminKeyService(self.services.db, self.services.clock).create("pages", ["admin"])
        self.shop = f"{rp.url}/after-queue"
        self.login = f"{rp.url}/login"
        self.callback = f"{rp.url}/callback"
        created = requests.post(
            f"{self.url}/admin/api/events",
            headers=bearer(self.key),
            timeout=10,
            json={"event_id": "sale", "name": "Spring concert", "allowed_return_urls": [self.shop]},
        )
        assert created.status_code == 201, created.text
        client = requests.post(
            f"{self.url}/admin/api/clients",
            headers=bearer(self.key),
            timeout=10,
            json={
                "client_id": "shop",
                "event_id": "sale",
                "redirect_uris": [self.callback],
                "initiate_login_uri": self.login,
            },
        )
        assert client.status_code == 201, client.text
        self.client_secret = client.json()["client_secret"]

    def brand(self, **branding: str) -> None:
        response = requests.patch(
            f"{self.url}/admin/api/events/sale", headers=bearer(self.key), timeout=10, json={"branding": branding}
        )
        assert response.status_code == 200, response.text

    def admit(self, by: int) -> int:
        response = requests.post(
            f"{self.url}/admin/api/increment_serving_counter",
            headers=bearer(self.key),
            json={"event_id": "sale", "increment_by": by},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return int(response.json()["serving_num"])

    def others_join(self, count: int) -> None:
        for _ in range(count):
            self.services.room.join("sale")

    def authorize_url(self, state: str) -> str:
        query = urlencode(
            {
                "response_type": "code",
                "client_id": "shop",
                "redirect_uri": self.callback,
                "scope": "openid",
                "state": state,
                "nonce": "n-" + state,
            }
        )
        return f"{self.url}/authorize?{query}"


@pytest.fixture
def room(live_server: Any, rp: Any) -> Room:
    return Room(live_server("sqlite"), rp)


def _text(page: Any, selector: str) -> str:
    return str(page.locator(selector).inner_text()).strip()


def _wait_for_text(page: Any, selector: str, expected: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator(selector)).to_have_text(expected, timeout=WAIT_MS)


# --- the journeys ----------------------------------------------------------------------------------


def test_queue_first_with_javascript_updates_in_place_then_goes_on(browser: Any, room: Room, rp: Any) -> None:
    room.others_join(2)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{room.url}/wait/sale?{urlencode({'next': room.shop})}")
        assert _text(page, "#wr-position") == "3" and _text(page, "#wr-ahead") == "2"
        assert page.locator("h1").inner_text() == "Spring concert"
        document_id = page.evaluate("() => { window.__samePage = 42; return 42; }")
        room.admit(1)
        _wait_for_text(page, "#wr-ahead", "1")  # updated by the script, not by a reload
        assert page.evaluate("() => window.__samePage") == document_id
        room.admit(2)
        page.wait_for_url(room.shop, timeout=WAIT_MS)
        assert "/after-queue" in rp.hits
    finally:
        context.close()


def test_queue_first_without_javascript_refreshes_then_goes_on(browser: Any, room: Room, rp: Any) -> None:
    room.others_join(1)
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{room.url}/wait/sale?{urlencode({'next': room.shop})}")
        assert _text(page, "#wr-position") == "2" and _text(page, "#wr-ahead") == "1"
        room.admit(1)
        _wait_for_text(page, "#wr-ahead", "0")  # the meta refresh reloaded the page
        room.admit(1)
        page.wait_for_url(room.shop, timeout=WAIT_MS)
    finally:
        context.close()


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_arriving_through_authorize_waits_then_lands_on_the_relying_party_with_a_code(
    browser: Any, room: Room, rp: Any, javascript: bool
) -> None:
    room.others_join(1)
    context = browser.new_context(java_script_enabled=javascript)
    try:
        page = context.new_page()
        page.goto(room.authorize_url("st-" + str(javascript)))
        assert "/authorize/wait/" in page.url
        assert _text(page, "#wr-position") == "2" and _text(page, "#wr-ahead") == "1"
        assert page.locator("#wr-heading").inner_text() == "You are in the queue"
        room.admit(2)
        page.wait_for_url(f"{room.callback}?*", timeout=WAIT_MS)
        query = parse_qs(urlsplit(page.url).query)
        assert query["state"] == ["st-" + str(javascript)]
        assert query["iss"] == [room.url] and len(query["code"][0]) >= 40
        # Exchanging the code proves it is a real one.
        token = requests.post(
            f"{room.url}/token",
            timeout=10,
            auth=("shop", room.client_secret),
            data={
                "grant_type": "authorization_code",
                "code": query["code"][0],
                "redirect_uri": room.callback,
            },
        )
        assert token.status_code == 200, token.text
        assert token.json()["id_token"] and token.json()["token_type"] == "Bearer"
    finally:
        context.close()


def test_queue_first_then_the_relying_party_login_keeps_the_place(browser: Any, room: Room, rp: Any) -> None:
    room.others_join(1)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{room.url}/wait/sale?{urlencode({'next': room.login})}")
        assert _text(page, "#wr-position") == "2"
        # The site sends the visitor to sign in before their turn: still place 2, not a new one.
        page.goto(room.authorize_url("later"))
        assert "/authorize/wait/" in page.url and _text(page, "#wr-position") == "2"
        room.admit(2)
        page.wait_for_url(f"{room.callback}?*", timeout=WAIT_MS)
        assert room.services.room.counters("sale", fresh=True).queue == 2
    finally:
        context.close()


def test_reload_second_tab_and_coming_back_keep_the_same_place(browser: Any, room: Room) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{room.url}/wait/sale")
        assert _text(page, "#wr-position") == "1"
        room.others_join(3)
        page.reload()
        assert _text(page, "#wr-position") == "1"
        second = context.new_page()
        second.goto(f"{room.url}/wait/sale")
        assert _text(second, "#wr-position") == "1"
        page.close()
        second.close()
        back = context.new_page()  # closed every tab, came back before the place expired
        back.goto(f"{room.url}/wait/sale")
        assert _text(back, "#wr-position") == "1"
        assert _text(back, "#wr-ahead") == "0"
    finally:
        context.close()
    other = browser.new_context()
    try:
        page = other.new_page()
        page.goto(f"{room.url}/wait/sale")
        assert _text(page, "#wr-position") == "5"  # another browser: its own place at the back
    finally:
        other.close()


def test_japanese_page_when_the_browser_asks_for_japanese(browser: Any, room: Room) -> None:
    context = browser.new_context(locale="ja-JP")
    try:
        page = context.new_page()
        page.goto(f"{room.url}/wait/sale")
        assert page.locator("html").get_attribute("lang") == "ja"
        assert page.locator("#wr-heading").inner_text() == "列に並んでいます"
        assert "あなたの順番" in page.locator("dl").inner_text()
        # The visible switch goes to English and is remembered.
        page.get_by_role("link", name="English").click()
        assert page.locator("#wr-heading").inner_text() == "You are in the queue"
        page.goto(f"{room.url}/wait/sale")
        assert page.locator("html").get_attribute("lang") == "en"
    finally:
        context.close()


def test_the_page_makes_no_third_party_requests_and_has_no_csp_violations(browser: Any, room: Room) -> None:
    room.brand(
        title="Spring concert", message="Doors open at ten.", primary_color="#ffcc00", background_color="#10243f"
    )
    context = browser.new_context()
    try:
        page = context.new_page()
        seen: list[str] = []
        problems: list[str] = []
        page.on("request", lambda request: seen.append(request.url))
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.goto(f"{room.url}/wait/sale")
        room.admit(1)
        page.wait_for_url(f"{room.url}/wait/sale", timeout=WAIT_MS)
        page.locator(".status-admitted").wait_for(timeout=WAIT_MS)
        assert seen and all(url.startswith(room.url) for url in seen), seen
        assert any("/wait/sale/status" in url for url in seen)  # the script polled
        assert not [p for p in problems if "Content Security Policy" in p], problems
    finally:
        context.close()


# --- screenshots and accessibility -----------------------------------------------------------------


def _axe(page: Any) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "async () => await axe.run(document, {runOnly: {type: 'tag', values: "
        "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})"
    )
    return [v for v in result["violations"] if v.get("impact") in ("serious", "critical")]


@pytest.fixture
def busy_room(live_server: Any, rp: Any) -> Room:
    """A branded event on the Redis store with a long queue and five minutes of admission history."""
    from idp.clock import FrozenClock

    room = Room(live_server("redis"), rp)
    room.brand(
        title="Spring concert tickets",
        message="Tickets go on sale at 10:00. Thank you for your patience.",
        primary_color="#7c3aed",
        background_color="#f5f3ff",
    )
    past = FrozenClock(time.time() - 300)
    history = room.server.services(clock=past)
    history.room.join("sale")
    for _ in range(1_240):
        history.room.join("sale")
    for _ in range(5):
        history.room.increment_serving("sale", 40)
        past.advance(60)
    return room


@pytest.mark.parametrize("language", ["en", "ja"])
def test_screenshots_and_accessibility_of_the_waiting_and_admitted_states(
    browser: Any, busy_room: Room, language: str
) -> None:
    if not AXE.exists():
        pytest.fail(f"axe-core is not installed: run `npm ci` in tests/e2e/js ({AXE} is missing)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    locale = "ja-JP" if language == "ja" else "en-US"
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900}, bypass_csp=True)
    try:
        page = context.new_page()
        # The page's own clock, so the test need not sit out the poll interval of place 1,242 (about 27 s).
        page.clock.install()
        page.goto(f"{busy_room.url}/wait/sale")
        page.locator("#wr-position").wait_for()
        assert page.locator("html").get_attribute("lang") == language
        assert _text(page, "#wr-position") == "1,242"
        estimate = _text(page, "#wr-estimate")
        assert any(ch.isdigit() for ch in estimate), estimate  # an estimate from the admission history
        for width in (375, 1280):
            page.set_viewport_size({"width": width, "height": 900 if width > 400 else 812})
            page.screenshot(path=str(SCREENSHOTS / f"waiting-{language}-{width}.png"), full_page=True)
            overflow = page.evaluate("() => document.documentElement.scrollWidth > window.innerWidth")
            assert not overflow, f"horizontal scrolling at {width} px"
        page.set_viewport_size({"width": 320, "height": 700})
        assert not page.evaluate("() => document.documentElement.scrollWidth > window.innerWidth")
        violations = _axe(page)
        assert not violations, [(v["id"], v["help"], [n["target"] for n in v["nodes"]]) for v in violations]
        # Keyboard: the language switch is reachable and shows its focus.
        page.keyboard.press("Tab")
        focused = page.evaluate("() => document.activeElement && document.activeElement.tagName")
        assert focused == "A"
        outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
        assert outline not in ("none", "")

        busy_room.admit(2_000)
        page.set_viewport_size({"width": 1280, "height": 900})
        page.clock.fast_forward(PollSchedule().max_ms * 2)  # the next poll falls due
        page.locator(".status-admitted").wait_for(timeout=WAIT_MS)  # the script moved the page on
        for width in (375, 1280):
            page.set_viewport_size({"width": width, "height": 900 if width > 400 else 812})
            page.screenshot(path=str(SCREENSHOTS / f"admitted-{language}-{width}.png"), full_page=True)
        violations = _axe(page)
        assert not violations, [(v["id"], v["help"], [n["target"] for n in v["nodes"]]) for v in violations]
    finally:
        context.close()


def test_error_and_expired_pages_are_accessible(browser: Any, room: Room) -> None:
    context = browser.new_context(bypass_csp=True)
    try:
        page = context.new_page()
        response = page.goto(f"{room.url}/wait/no-such-event")
        assert response is not None and response.status == 404
        assert "This waiting room does not exist." in page.locator("h1").inner_text()
        violations = _axe(page)
        assert not violations, [(v["id"], v["help"]) for v in violations]
    finally:
        context.close()


def test_screenshot_files_are_images(browser: Any) -> None:
    """The README's screenshots exist once the screenshot test has run (it runs first in this file)."""
    names = [
        f"{state}-{lang}-{width}.png"
        for state in ("waiting", "admitted")
        for lang in ("en", "ja")
        for width in (375, 1280)
    ]
    for name in names:
        path = Path(SCREENSHOTS / name)
        assert path.exists(), name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_script_pauses_while_hidden_backs_off_on_503_and_resumes(browser: Any, room: Room) -> None:
    """The poller follows the server: Retry-After on 503, silence while hidden, back on visible."""
    context = browser.new_context()
    try:
        page = context.new_page()
        times: list[float] = []
        mode = {"value": "ok"}

        def answer(route: Any) -> None:
            times.append(time.monotonic())
            if mode["value"] == "busy":
                route.fulfill(
                    status=503,
                    headers={"Retry-After": "3", "Content-Type": "application/json"},
                    body='{"error": "service_unavailable", "message": "busy"}',
                )
                return
            route.fulfill(
                status=200,
                content_type="application/json",
                body=(
                    '{"state": "waiting", "position": 7, "ahead": 6, "serving": 0, "waiting": 7, '
                    '"estimate": {"low_seconds": 120, "high_seconds": 300}, "poll_after_ms": 300, '
                    '"updated_at": 1800000000, "progress": 0}'
                ),
            )

        page.route("**/wait/sale/status*", answer)
        page.goto(f"{room.url}/wait/sale")
        _wait_for_text(page, "#wr-ahead", "6")  # the script took the numbers from the status answer
        assert _text(page, "#wr-estimate") == "2 to 5 minutes"

        mode["value"] = "busy"
        page.locator("#wr-notice").wait_for(state="visible", timeout=WAIT_MS)
        assert "Trying again in" in _text(page, "#wr-notice")
        first_error = len(times)
        deadline = time.monotonic() + WAIT_MS / 1000
        while len(times) < first_error + 1 and time.monotonic() < deadline:
            page.wait_for_timeout(200)
        assert len(times) >= first_error + 1
        # After a 503 with Retry-After: 3 the next request waited at least that long.
        assert times[first_error] - times[first_error - 1] >= 2.9

        mode["value"] = "ok"
        page.locator("#wr-notice").wait_for(state="hidden", timeout=WAIT_MS)
        page.evaluate("""() => {
            Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
            Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
            document.dispatchEvent(new Event('visibilitychange'));
        }""")
        page.wait_for_timeout(500)  # a request already in flight may still land
        while_hidden = len(times)
        page.wait_for_timeout(3_000)  # ten poll intervals of 300 ms
        assert len(times) == while_hidden, "the page polled while hidden"
        with page.expect_request("**/wait/sale/status*", timeout=WAIT_MS):
            page.evaluate("""() => {
                Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});
                Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'visible'});
                document.dispatchEvent(new Event('visibilitychange'));
            }""")
    finally:
        context.close()
