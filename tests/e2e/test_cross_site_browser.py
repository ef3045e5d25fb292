"""Cross-site attacks on a visitor's place and session, in headless Chromium against a real server.

The service runs on ``http://127.0.0.1:<port>``; the attacker's pages (and the relying party) on
``http://localhost:<port>``: another *site*, so the browser applies SameSite to our cookies exactly as it
would for an attacker on the web (another port of the same host would be the same site and prove nothing).
"""

from __future__ import annotations

import html
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from tests.admin_support import bearer

pytestmark = pytest.mark.e2e

WAIT_MS = 30_000


class _Attacker(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        body = self.server.pages.get(urlsplit(self.path).path, "<!doctype html><title>Site</title><p>site")  # type: ignore[attr-defined]
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def attacker() -> Iterator[Any]:
    """Pages on another site (``localhost``): the attacker's, and the relying party's callback."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Attacker)
    server.pages = {}  # type: ignore[attr-defined]
    server.url = f"http://localhost:{server.server_address[1]}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _auto_post(action: str, fields: dict[str, str]) -> str:
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in fields.items()
    )
    return (
        f'<!doctype html><title>Win a prize</title><form id="f" method="post" action="{html.escape(action)}">'
        f'{inputs}</form><script>document.getElementById("f").submit()</script>'
    )


class Room:
    def __init__(self, server: Any, attacker: Any) -> None:
        from idp.admin.keys import AdminKeyService

        self.url = server.url
        from idp.oidc.records import OidcRecords

        self.services = server.services()
        self.records = OidcRecords(self.services.db, self.services.clock, self.services.lookup)
        _record, self.key = AdminKeyService(self.services.db, self.services.clock).create("csrf", ["admin"])
        self.callback = f"{attacker.url}/callback"
        assert requests.post(
            f"{self.url}/admin/api/events", headers=bearer(self.key), json={"event_id": "sale"}, timeout=10
        ).ok
        client = requests.post(
            f"{self.url}/admin/api/clients",
            headers=bearer(self.key),
            timeout=10,
            json={"client_id": "shop", "event_id": "sale", "redirect_uris": [self.callback]},
        )
        assert client.status_code == 201, client.text
        self.secret = client.json()["client_secret"]

    def params(self, state: str) -> dict[str, str]:
        return {
            "response_type": "code",
            "client_id": "shop",
            "redirect_uri": self.callback,
            "scope": "openid",
            "state": state,
        }

    def authorize_url(self, state: str) -> str:
        return f"{self.url}/authorize?{urlencode(self.params(state))}"

    def admit_everyone(self) -> None:
        counters = self.services.room.counters("sale", fresh=True)
        if counters.queue > counters.serving:
            self.services.room.increment_serving("sale", counters.queue - counters.serving)

    def visitor(self, context: Any) -> str:
        values = [c["value"] for c in context.cookies(self.url) if c["name"] == "idp_visitor"]
        assert len(values) == 1, context.cookies(self.url)
        return str(values[0])

    def session_active(self, visitor: str) -> bool:
        place = self.records.place(visitor, "sale")
        session = self.records.session_state(place.request_id)
        return bool(session is not None and session.active)

    def login(self, context: Any, state: str) -> dict[str, Any]:
        """Sign in through the browser, admitted at once; the relying party's token response."""
        page = context.new_page()
        page.goto(self.authorize_url(state))
        self.admit_everyone()
        page.wait_for_url(f"{self.callback}?*", timeout=WAIT_MS)
        code = parse_qs(urlsplit(page.url).query)["code"][0]
        page.close()
        response = requests.post(
            f"{self.url}/token",
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": self.callback},
            auth=("shop", self.secret),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture
def room(live_server: Any, attacker: Any) -> Room:
    return Room(live_server("sqlite"), attacker)


def test_a_cross_site_post_never_replaces_the_visitor_cookie(browser: Any, room: Room, attacker: Any) -> None:
    room.services.room.join("sale")  # someone ahead: the visitor waits
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(room.authorize_url("mine"))
        assert "/authorize/wait/" in page.url
        visitor = room.visitor(context)
        place = room.records.place(visitor, "sale")
        queued = room.services.room.counters("sale", fresh=True).queue
        attacker.pages["/authorize-form"] = _auto_post(f"{room.url}/authorize", room.params("attacker"))
        attacker.pages["/rejoin-form"] = _auto_post(f"{room.url}/wait/sale/rejoin", {})
        for path, lands_on in (("/authorize-form", "/authorize/wait/"), ("/rejoin-form", "/wait/sale")):
            page.goto(attacker.url + path)
            page.wait_for_url(f"**{lands_on}**", timeout=WAIT_MS)
            assert room.visitor(context) == visitor, path
            assert room.records.place(visitor, "sale") == place, path
            assert room.services.room.counters("sale", fresh=True).queue == queued, path
    finally:
        context.close()


def test_a_cross_site_logout_with_a_foreign_token_ends_nothing(browser: Any, room: Room, attacker: Any) -> None:
    victim = browser.new_context()
    thief = browser.new_context()
    try:
        room.login(victim, "victim")
        visitor = room.visitor(victim)
        assert room.session_active(visitor)
        # The attacker's own ID tokens: from its own sign-in, and from the AWS token set of its own place.
        own = room.login(thief, "thief")
        joined = requests.post(f"{room.url}/api/assign_queue_num", json={"event_id": "sale"}, timeout=10).json()
        room.admit_everyone()
        aws = requests.post(
            f"{room.url}/api/generate_token",
            json={"event_id": "sale", "request_id": joined["api_request_id"]},
            timeout=10,
        ).json()
        page = victim.new_page()
        for hint in (own["id_token"], aws["id_token"]):
            link = f"{room.url}/logout?{urlencode({'id_token_hint': hint, 'client_id': 'shop'})}"
            attacker.pages["/link"] = (
                f'<!doctype html><title>News</title><a id="go" href="{html.escape(link)}">read</a>'
            )
            page.goto(attacker.url + "/link")
            page.click("#go")
            page.wait_for_load_state()
            assert page.url.startswith(room.url + "/logout"), page.url
            assert room.session_active(visitor), hint[:20]
        # A forged confirmation posted from the attacker's site: the attacker's own valid token for
        # its own browser, and the victim's cookie is not sent with a cross-site POST anyway.
        thief_page = thief.new_page()
        thief_page.goto(f"{room.url}/logout?client_id=shop")
        csrf = thief_page.locator('input[name="csrf"]').get_attribute("value")
        attacker.pages["/confirm"] = _auto_post(
            f"{room.url}/logout", {"client_id": "shop", "confirm": "yes", "csrf": str(csrf)}
        )
        page.goto(attacker.url + "/confirm")
        page.wait_for_url(f"{room.url}/logout", timeout=WAIT_MS)
        assert room.session_active(visitor)
        # The visitor's own confirmation on our page still signs it out.
        page.goto(f"{room.url}/logout?client_id=shop")
        page.click("button[type=submit]")
        page.wait_for_load_state()
        assert not room.session_active(visitor)
    finally:
        victim.close()
        thief.close()
