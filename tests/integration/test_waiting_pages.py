"""The waiting pages through the Flask test client: queue-first page, status JSON, languages, security."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from tests.conftest import all_backends
from tests.oidc_flow import REDIRECT, auth_params, make_client, query_of

pytestmark = pytest.mark.integration

SHOP = "https://shop.example/after-queue"
LOGIN = "https://rp.example/login"


@pytest.fixture
def sale(services: Any) -> Any:
    event = services.events.create(
        {
            "event_id": "sale",
            "name": "Big sale",
            "allowed_return_urls": [SHOP],
            "branding": {"title": "Concert tickets", "message": "Doors open at ten.", "primary_color": "#ffdd00"},
        }
    )
    make_client(services, initiate_login_uri=LOGIN)
    return event


def place_cookie(client: Any) -> str | None:
    cookie = client.get_cookie("idp_place_sale")
    return None if cookie is None else cookie.value


def position_on(page: Any) -> int:
    match = re.search(rb'id="wr-position">([0-9,]+)<', page.data)
    assert match, page.data[:2000]
    return int(match.group(1).replace(b",", b""))


@all_backends
def test_first_visit_joins_and_reload_and_second_tab_keep_the_place(
    client: Any, app: Any, services: Any, sale: Any
) -> None:
    services.room.join("sale")  # someone already waiting
    first = client.get("/wait/sale", query_string={"next": SHOP})
    assert first.status_code == 200
    assert position_on(first) == 2
    request_id = place_cookie(client)
    assert request_id
    set_cookie = " ".join(first.headers.getlist("Set-Cookie"))
    assert "idp_place_sale=" in set_cookie and "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
    assert "Secure" not in set_cookie  # the test issuer is http
    # Reload, and a second tab of the same browser (same cookies): the same place.
    for _ in range(3):
        assert position_on(client.get("/wait/sale", query_string={"next": SHOP})) == 2
    assert position_on(client.get("/wait/sale")) == 2
    assert place_cookie(client) == request_id
    # Another browser gets the next place.
    assert position_on(app.test_client().get("/wait/sale")) == 3
    assert services.room.counters("sale", fresh=True).queue == 3


def test_the_page_shows_branding_place_ahead_progress_estimate_and_what_happens_next(
    client: Any, services: Any, sale: Any
) -> None:
    for _ in range(4):
        services.room.join("sale")
    page = client.get("/wait/sale", query_string={"next": SHOP}).get_data(as_text=True)
    assert "Concert tickets" in page and "Doors open at ten." in page
    assert 'id="wr-position">5<' in page and 'id="wr-ahead">4<' in page
    assert "<progress" in page and 'aria-live="polite"' in page
    assert "Estimated wait" in page and "Last updated" in page and "What happens next" in page
    assert "takes you on to the site by itself" in page
    assert '<noscript><meta http-equiv="refresh" content="' in page


@all_backends
def test_estimate_follows_the_recent_admission_rate(client: Any, services: Any, sale: Any, clock: Any) -> None:
    for _ in range(120):
        services.room.join("sale")
    client.get("/wait/sale")  # place 121
    for _ in range(5):
        services.room.increment_serving("sale", 4)
        clock.advance(60)
    body = client.get("/wait/sale/status").get_json()
    # 4 let in a minute: the remaining 101 take about 25 minutes.
    assert body["state"] == "waiting" and body["position"] == 121 and body["ahead"] == 100
    assert body["estimate"]["low_seconds"] <= 25 * 60 <= body["estimate"]["high_seconds"]
    assert body["estimate"]["high_seconds"] <= 45 * 60
    page = client.get("/wait/sale").get_data(as_text=True)
    assert re.search(r'id="wr-estimate">\d+ to \d+ minutes<', page)


def test_status_json_has_the_documented_fields_and_a_growing_interval(
    app: Any, client: Any, services: Any, sale: Any
) -> None:
    client.get("/wait/sale")
    front = client.get("/wait/sale/status").get_json()
    assert set(front) >= {"state", "position", "ahead", "serving", "waiting", "estimate", "poll_after_ms", "updated_at"}
    assert front["state"] == "waiting" and front["position"] == 1 and front["ahead"] == 0
    assert front["estimate"] is None  # nobody let in yet: no guess
    far = app.test_client()
    for _ in range(300):
        services.room.join("sale")
    far.get("/wait/sale")
    back = far.get("/wait/sale/status").get_json()
    assert back["ahead"] == 301
    assert back["poll_after_ms"] > 2 * front["poll_after_ms"]
    response = client.get("/wait/sale/status")
    assert response.headers["Cache-Control"] == "private, no-store"


def test_status_without_a_place_is_unknown_and_summary_is_cacheable(client: Any, services: Any, sale: Any) -> None:
    body = client.get("/wait/sale/status").get_json()
    assert body["state"] == "unknown" and body["poll_after_ms"] is None
    summary = client.get("/wait/sale/summary")
    assert summary.status_code == 200 and summary.headers["Cache-Control"].startswith("public")
    assert summary.get_json()["waiting"] == 0


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", SHOP + "?x=1", "javascript:alert(1)", "//evil.example/", "/wait/sale", "x" * 3000],
)
def test_next_must_be_an_allowed_return_url_or_a_login_uri(client: Any, services: Any, sale: Any, target: str) -> None:
    response = client.get("/wait/sale", query_string={"next": target})
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "This link cannot be used." in response.get_data(as_text=True)
    assert "Location" not in response.headers
    assert services.room.counters("sale", fresh=True).queue == 0  # no place taken for a bad link


def test_admitted_visitors_go_on_to_next_or_see_the_admitted_page(client: Any, services: Any, sale: Any) -> None:
    client.get("/wait/sale", query_string={"next": LOGIN})
    services.room.increment_serving("sale", 1)
    body = client.get("/wait/sale/status", query_string={"next": LOGIN}).get_json()
    assert body["state"] == "admitted" and body["continue_url"] == LOGIN
    going = client.get("/wait/sale", query_string={"next": LOGIN})
    assert going.status_code == 303 and going.headers["Location"] == LOGIN
    staying = client.get("/wait/sale")
    assert staying.status_code == 200 and "It is your turn" in staying.get_data(as_text=True)


def test_an_expired_place_gets_a_clear_page_and_can_join_again(
    client: Any, services: Any, sale: Any, clock: Any
) -> None:
    client.get("/wait/sale", query_string={"next": SHOP})
    services.room.join("sale")  # someone behind
    services.room.increment_serving("sale", 1)
    clock.advance(sale.queue_position_expiry_period + 5)
    page = client.get("/wait/sale", query_string={"next": SHOP})
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Your place has expired" in text and "Join the queue again" in text
    assert 'action="/wait/sale/rejoin"' in text
    again = client.post("/wait/sale/rejoin", data={"next": SHOP})
    assert again.status_code == 303 and again.headers["Location"].startswith("/wait/sale?next=")
    assert position_on(client.get(again.headers["Location"])) == 3  # a new place at the back
    # Joining again while waiting keeps the place instead of sending the visitor to the back.
    client.post("/wait/sale/rejoin")
    assert position_on(client.get("/wait/sale")) == 3


def test_queue_first_then_sign_in_keeps_one_place(client: Any, services: Any, sale: Any) -> None:
    services.room.join("sale")
    client.get("/wait/sale", query_string={"next": LOGIN})  # place 2
    parked = client.get("/authorize", query_string=auth_params())
    assert parked.status_code == 303
    page = client.get(parked.headers["Location"])
    assert page.status_code == 200 and position_on(page) == 2
    assert services.room.counters("sale", fresh=True).queue == 2
    services.room.increment_serving("sale", 2)
    done = client.get(parked.headers["Location"])
    assert done.status_code == 303 and done.headers["Location"].startswith(REDIRECT)
    assert query_of(done.headers["Location"])["code"]


def test_the_sign_in_waiting_page_is_this_page_with_the_same_status_fields(
    client: Any, services: Any, sale: Any
) -> None:
    wait_url = client.get("/authorize", query_string=auth_params(ui_locales="ja")).headers["Location"]
    page = client.get(wait_url)
    text = page.get_data(as_text=True)
    assert 'id="wr-status"' in text and "waiting.js" in text and "Concert tickets" in text
    assert 'lang="ja"' in text and "列に並んでいます" in text  # ui_locales picks the language
    assert "nonce-" in page.headers["Content-Security-Policy"]
    status_url = re.search(r'data-status-url="([^"]+)"', text).group(1)  # type: ignore[union-attr]
    body = client.get(status_url).get_json()
    assert body["state"] == "waiting" and body["continue_url"] == wait_url
    assert "estimate" in body and "updated_at" in body and body["poll_after_ms"] >= 1000


def test_japanese_from_accept_language_and_a_visible_switch(client: Any, app: Any, sale: Any) -> None:
    ja = client.get("/wait/sale", headers={"Accept-Language": "ja-JP,ja;q=0.9,en;q=0.8"})
    text = ja.get_data(as_text=True)
    assert ja.headers["Content-Language"] == "ja" and '<html lang="ja">' in text
    assert "列に並んでいます" in text and "あなたの順番" in text
    assert 'href="/wait/sale?lang=en"' in text  # the switch
    # The switch is remembered.
    english = client.get("/wait/sale?lang=en").get_data(as_text=True)
    assert "You are in the queue" in english
    assert "You are in the queue" in client.get("/wait/sale", headers={"Accept-Language": "ja"}).get_data(as_text=True)
    other = app.test_client()
    assert "You are in the queue" in other.get("/wait/sale", headers={"Accept-Language": "fr"}).get_data(as_text=True)


def test_security_headers_and_no_inline_code_without_the_nonce(client: Any, sale: Any) -> None:
    page = client.get("/wait/sale")
    csp = page.headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)  # type: ignore[union-attr]
    for directive in (
        "default-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        f"script-src 'self' 'nonce-{nonce}'",
        f"style-src 'self' 'nonce-{nonce}'",
    ):
        assert directive in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "no-store" in page.headers["Cache-Control"]
    text = page.get_data(as_text=True)
    scripts = re.findall(r"<script[^>]*>", text)
    assert scripts and all(f'nonce="{nonce}"' in tag and "src=" in tag for tag in scripts)
    assert " style=" not in text and "<style" not in text and "onclick" not in text
    assert "http://" not in text.replace("http-equiv", "")  # no third-party requests
    assert client.get("/wait/sale").headers["Content-Security-Policy"] != csp  # a fresh nonce each time


def test_branding_colours_are_validated_and_made_readable(client: Any, services: Any, sale: Any) -> None:
    css = client.get(f"/wait/sale/theme.css?v={sale.updated_at}")
    assert css.mimetype == "text/css" and "public" in css.headers["Cache-Control"]
    body = css.get_data(as_text=True)
    primary = re.search(r"--wr-primary:(#[0-9a-f]{6});", body).group(1)  # type: ignore[union-attr]
    from idp.pages.theme import contrast

    assert contrast(primary, "#ffffff") >= 4.5  # the bright yellow was darkened for white text
    assert re.fullmatch(r":root\{(--wr-[a-z-]+:#[0-9a-f]{6};)+\}\n", body)


def test_operator_templates_override_the_defaults(backend_settings: Any, clock: Any, tmp_path: Any) -> None:
    from idp.app import create_app

    folder = tmp_path / "operator"
    folder.mkdir()
    (folder / "wait.html").write_text(
        '{% extends "base.html" %}{% block content %}<p id="mine">Operator page, place {{ status.position }}</p>'
        "{% endblock %}",
        encoding="utf-8",
    )
    app = create_app(dataclasses.replace(backend_settings, template_dir=str(folder)), clock=clock)
    try:
        app.extensions["idp"].events.create({"event_id": "sale"})
        text = app.test_client().get("/wait/sale").get_data(as_text=True)
        assert '<p id="mine">Operator page, place 1</p>' in text
        assert "waiting.css" in text  # the default base template still applies
    finally:
        app.extensions["idp"].close()


def test_browser_errors_are_pages_and_api_errors_stay_json(client: Any, sale: Any) -> None:
    missing = client.get("/wait/no-such-event")
    assert missing.status_code == 404 and missing.mimetype == "text/html"
    assert "This waiting room does not exist." in missing.get_data(as_text=True)
    assert "Content-Security-Policy" in missing.headers
    bad = client.get("/wait/%00bad")
    assert bad.status_code in (400, 404) and bad.mimetype == "text/html"
    api = client.get("/wait/no-such-event/status")
    assert api.status_code == 404 and api.get_json()["error"] == "event_not_found"
    assert client.get("/wait/_static/nothing.js").status_code == 404


def test_pages_about_an_event_state_carry_its_name_and_branding(client: Any, services: Any, clock: Any) -> None:
    now = int(clock.now())
    branding = {"title": "Concert tickets", "message": "Doors open at ten.", "primary_color": "#ffdd00"}
    services.events.create({"event_id": "soon", "opens_at": now + 90, "branding": branding})
    services.events.create({"event_id": "over", "opens_at": now - 100, "closes_at": now - 10, "branding": branding})
    services.events.create({"event_id": "paused", "name": "Spring fair", "mode": "closed"})
    for path, status, headline, title in [
        ("/wait/soon", 409, "The waiting room is not open yet.", "Concert tickets"),
        ("/wait/over", 410, "The sale is over.", "Concert tickets"),
        ("/wait/paused", 409, "The waiting room is closed for now.", "Spring fair"),
    ]:
        page = client.get(path)
        html = page.get_data(as_text=True)
        assert page.status_code == status and page.mimetype == "text/html", path
        # The event's name is the page's one h1; the state is the heading of its section.
        assert re.findall(r"<h1[^>]*>([^<]*)</h1>", html) == [title], path
        assert f'<h2 id="wr-heading">{headline}</h2>' in html, path
        assert f"<title>{headline} · {title}</title>" in html, path
        assert ("Doors open at ten." in html) is (title == "Concert tickets"), path
        assert "/theme.css" in html, path
    assert 'id="wr-countdown"' in client.get("/wait/soon").get_data(as_text=True)
    # An event that does not exist names nothing.
    missing = client.get("/wait/no-such-event").get_data(as_text=True)
    assert re.findall(r"<h1[^>]*>([^<]*)</h1>", missing) == ["This waiting room does not exist."]
    assert "/theme.css" not in missing


def test_https_issuer_makes_the_cookies_secure(backend_settings: Any, clock: Any) -> None:
    from idp.app import create_app

    app = create_app(dataclasses.replace(backend_settings, issuer="https://queue.example"), clock=clock)
    try:
        app.extensions["idp"].events.create({"event_id": "sale"})
        response = app.test_client().get("/wait/sale", base_url="https://queue.example")
        cookies = response.headers.getlist("Set-Cookie")
        assert cookies and all("Secure" in c and "HttpOnly" in c for c in cookies)
    finally:
        app.extensions["idp"].close()


@pytest.mark.parametrize("backend_settings", ["redis"], indirect=True)
def test_a_waiting_visitors_status_reads_no_database(backend_settings: Any, clock: Any, monkeypatch: Any) -> None:
    from idp.app import create_app

    app = create_app(dataclasses.replace(backend_settings, cache_ttl_ms=60_000), clock=clock)
    svc = app.extensions["idp"]
    try:
        svc.events.create({"event_id": "sale"})
        client = app.test_client()
        client.get("/wait/sale")
        client.get("/wait/sale/status")  # warms the per-event caches

        def no_database(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the database was read for a waiting visitor")

        monkeypatch.setattr(svc.db, "session", no_database)
        for _ in range(3):
            body = client.get("/wait/sale/status").get_json()
            assert body["state"] == "waiting" and body["position"] == 1
    finally:
        monkeypatch.undo()
        svc.close()


def test_queue_store_down_gives_a_retrying_page_and_a_503_with_retry_after(backend_settings: Any, clock: Any) -> None:
    from idp.app import create_app
    from tests.e2e.server import closed_port

    settings = dataclasses.replace(backend_settings, redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    app = create_app(settings, clock=clock)
    try:
        app.extensions["idp"].events.create({"event_id": "sale"})
        client = app.test_client()
        page = client.get("/wait/sale")
        assert page.status_code == 503 and page.mimetype == "text/html"
        assert page.headers["Retry-After"].isdigit()
        text = page.get_data(as_text=True)
        assert "We are very busy right now." in text
        assert f'<meta http-equiv="refresh" content="{page.headers["Retry-After"]}">' in text
        client.set_cookie("idp_place_sale", "6f1c0c0e-8a47-4a0e-9c43-0d1f2b3c4d5e")
        status = client.get("/wait/sale/status")
        assert status.status_code == 503 and status.mimetype == "application/json"
        assert status.headers["Retry-After"].isdigit()
    finally:
        app.extensions["idp"].close()


def test_link_checkers_and_prefetches_take_no_place(client: Any, services: Any, sale: Any) -> None:
    assert client.head("/wait/sale").status_code == 200
    assert client.get("/wait/sale", headers={"Sec-Purpose": "prefetch"}).status_code == 200
    assert services.room.counters("sale", fresh=True).queue == 0
    assert position_on(client.get("/wait/sale")) == 1


def test_a_waiting_visitors_poll_is_answered_from_the_cached_counters(
    client: Any, services: Any, sale: Any, monkeypatch: Any
) -> None:
    services.room.join("sale")
    client.get("/wait/sale")  # place 2; the cookie carries the signed position
    request_id, position, signature = client.get_cookie("idp_place_sale").value.split(".")
    assert position == "2" and len(signature) == 32

    def no_store_call(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the queue store was asked for a waiting visitor's place")

    monkeypatch.setattr(services.engine, "status", no_store_call)
    body = client.get("/wait/sale/status").get_json()
    assert body["state"] == "waiting" and body["position"] == 2 and body["ahead"] == 1
    monkeypatch.undo()
    # Once the counter reaches the place, the store decides (admitted, expired, ...).
    services.room.increment_serving("sale", 2)
    assert client.get("/wait/sale/status").get_json()["state"] == "admitted"


def test_a_forged_position_in_the_cookie_is_ignored(client: Any, services: Any, sale: Any) -> None:
    for _ in range(5):
        services.room.join("sale")
    client.get("/wait/sale")  # place 6
    request_id, _, signature = client.get_cookie("idp_place_sale").value.split(".")
    services.room.increment_serving("sale", 1)
    client.set_cookie("idp_place_sale", f"{request_id}.1.{signature}")  # claims place 1
    body = client.get("/wait/sale/status").get_json()
    assert body["state"] == "waiting" and body["position"] == 6


def test_a_finished_visit_gets_a_clear_page_and_can_join_again(client: Any, services: Any, sale: Any) -> None:
    client.get("/wait/sale", query_string={"next": SHOP})
    request_id = client.get_cookie("idp_place_sale").value.split(".")[0]
    services.room.increment_serving("sale", 1)
    services.tokens.issue("sale", request_id)  # the visit went on and signed in
    services.tokens.update_session("sale", request_id, 1)  # and the site marked it completed
    page = client.get("/wait/sale", query_string={"next": SHOP})
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "Your visit has finished" in text and "Join the queue again" in text
    again = client.post("/wait/sale/rejoin", data={"next": SHOP})
    assert position_on(client.get(again.headers["Location"])) == 2
