"""No cookie value and no request id in any URL, page or log line of a whole sign-in journey.

A real server (INFO logs) and headless Chromium with JavaScript on: a visitor queues first on the
queue-first page, signs in through ``/authorize`` while waiting (the page polls its status), is
admitted and sent to the relying party, signs in again with ``prompt=login``, and signs out. Every
``Location`` header, every URL in every page of the service, and the whole server log are then read as
an attacker would (raw, URL-, base64- and zlib-decoded) for the visitor's cookies and request ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from sqlalchemy import select

from tests.admin_support import bearer
from tests.e2e.static_site import stub_pages
from tests.leaks import leaked, urls_in_html

pytestmark = pytest.mark.e2e

WAIT_MS = 30_000
SECRET_COOKIES = ("idp_visitor", "idp_admit_", "idp_place_")


@pytest.fixture
def site() -> Iterator[str]:
    # On ``localhost``: another site than the service on 127.0.0.1.
    with stub_pages("Shop", host="localhost") as pages:
        yield pages.url


def test_a_whole_journey_leaves_no_secret_in_urls_pages_or_logs(browser: Any, live_server: Any, site: str) -> None:
    from idp.admin.keys import AdminKeyService
    from idp.storage.models import OidcPlace, TokenRecord

    server = live_server("sqlite", IDP_LOG_LEVEL="INFO")
    services = server.services()
    _record, key = AdminKeyService(services.db, services.clock).create("scan", ["admin"])
    callback, shop = f"{site}/callback", f"{site}/after"
    assert requests.post(
        server.url + "/admin/api/events",
        headers=bearer(key),
        json={"event_id": "sale", "allowed_return_urls": [shop]},
        timeout=10,
    ).ok
    client = requests.post(
        server.url + "/admin/api/clients",
        headers=bearer(key),
        json={"client_id": "shop", "event_id": "sale", "redirect_uris": [callback]},
        timeout=10,
    )
    assert client.status_code == 201, client.text
    secret = client.json()["client_secret"]

    def admit_everyone() -> None:
        counters = services.room.counters("sale", fresh=True)
        if counters.queue > counters.serving:
            services.room.increment_serving("sale", counters.queue - counters.serving)

    def authorize(**extra: str) -> str:
        params = {"response_type": "code", "client_id": "shop", "redirect_uri": callback, "scope": "openid", **extra}
        return f"{server.url}/authorize?{urlencode(params)}"

    seen: list[str] = []
    context = browser.new_context()

    def record(response: Any) -> None:
        if not response.url.startswith(server.url):
            return
        seen.append(response.url)
        location = response.headers.get("location")
        if location:
            seen.append(location)
        if "text/html" in response.headers.get("content-type", "") or "json" in response.headers.get(
            "content-type", ""
        ):
            try:
                body = response.text()
            except Exception:  # noqa: BLE001 - a redirect has no body to read
                return
            seen.append(body)
            seen.extend(urls_in_html(body))

    context.on("response", record)
    try:
        page = context.new_page()
        services.room.join("sale")  # someone ahead: the visitor waits and its page polls
        page.goto(f"{server.url}/wait/sale?{urlencode({'next': shop})}")
        page.goto(authorize(state="first"))
        assert "/authorize/wait/" in page.url
        page.wait_for_timeout(1500)  # the page's script polls its status at least once
        admit_everyone()
        page.wait_for_url(f"{callback}?*", timeout=WAIT_MS)
        code = parse_qs(urlsplit(page.url).query)["code"][0]
        tokens = requests.post(
            server.url + "/token",
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": callback},
            auth=("shop", secret),
            timeout=10,
        ).json()
        bearer_token = {"Authorization": "Bearer " + tokens["access_token"]}
        assert requests.get(server.url + "/userinfo", headers=bearer_token, timeout=10).ok
        assert requests.get(server.url + "/verify?event_id=sale", headers=bearer_token, timeout=10).ok
        # A forced re-login queues once more; admitted again, it reaches the relying party.
        page.goto(authorize(state="again", prompt="login"))
        admit_everyone()
        page.wait_for_url(f"{callback}?*state=again*", timeout=WAIT_MS)
        page.goto(f"{server.url}/logout?{urlencode({'id_token_hint': tokens['id_token']})}")
        cookies = [str(c["value"]) for c in context.cookies(server.url) if str(c["name"]).startswith(SECRET_COOKIES)]
    finally:
        context.close()
    with services.db.session(readonly=True) as session:
        request_ids = [str(r) for r in session.execute(select(TokenRecord.request_id)).scalars()]
        request_ids += [str(r) for r in session.execute(select(OidcPlace.request_id)).scalars()]
    assert cookies and request_ids
    secrets = sorted(set(cookies + request_ids))
    assert any("/authorize/status/" in text for text in seen)  # the poll was seen
    for text in seen:
        assert leaked(text, secrets) == [], text[:400]
    log = server.log_path.read_text(encoding="utf-8", errors="replace")
    assert '"path":"/authorize/wait/<interaction_id>"' in log
    for line in log.splitlines():
        assert leaked(line, secrets) == [], line[:400]


def test_a_malformed_request_line_is_not_quoted_in_the_log(live_server: Any) -> None:
    """Gunicorn rejects a request line with a stray byte; its log says so without the path and query."""
    import socket
    import time
    import uuid
    from urllib.parse import urlsplit

    server = live_server("sqlite", IDP_LOG_LEVEL="DEBUG")
    secret = str(uuid.uuid4())
    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    line = f"GET /api/queue_num?event_id=sale&request_id={secret}&lang=".encode() + b"\xc3 HTTP/1.1\r\n"
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(line + b"Host: x\r\nConnection: close\r\n\r\n")
        answer = conn.recv(200)
    assert answer.startswith(b"HTTP/1.1 400")
    deadline = time.monotonic() + 5
    text = ""
    while time.monotonic() < deadline:
        text = server.log_path.read_text(encoding="utf-8", errors="replace")
        if "Invalid request from" in text:
            break
        time.sleep(0.1)
    assert "Invalid request from" in text
    assert secret not in text
