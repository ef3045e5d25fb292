"""The OpenID Connect provider through the Flask test client: the admission interaction and the tokens."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import all_backends
from tests.oidc_flow import (
    ISSUER,
    REDIRECT,
    admit_everyone,
    auth_params,
    decode_id_token,
    exchange,
    login,
    make_client,
    pkce_pair,
    query_of,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def rp(services: Any, event: Any) -> tuple[str, str]:
    config, secret = make_client(
        services, post_logout_redirect_uris=["https://rp.example/bye"], initiate_login_uri="https://rp.example/login"
    )
    return config.client_id, secret


@all_backends
def test_parked_visitor_waits_then_gets_code_state_and_iss(client: Any, services: Any, rp: Any) -> None:
    params = auth_params(state="a b&c=d/é~")
    first = client.get("/authorize", query_string=params)
    assert first.status_code == 303
    wait_url = first.headers["Location"]
    assert wait_url.startswith("/authorize/wait/")
    page = client.get(wait_url)
    assert page.status_code == 200
    assert b'http-equiv="refresh"' in page.data
    assert b"Your place" in page.data
    # Still waiting: reloading keeps the visitor on the page.
    assert client.get(wait_url).status_code == 200
    admit_everyone(services)
    done = client.get(wait_url)
    assert done.status_code == 303
    callback = query_of(done.headers["Location"])
    assert done.headers["Location"].startswith(REDIRECT + "?")
    assert callback["state"] == params["state"]
    assert callback["iss"] == ISSUER
    assert len(callback["code"]) >= 40
    cookie_header = " ".join(done.headers.getlist("Set-Cookie"))
    assert "idp_admit_sale=" in cookie_header and "HttpOnly" in cookie_header and "SameSite=Lax" in cookie_header
    # The waiting page cannot finish the same request twice.
    assert client.get(wait_url).status_code == 409


def test_status_json_for_the_waiting_page(client: Any, services: Any, rp: Any) -> None:
    services.room.join("sale")  # someone ahead
    wait_url = client.get("/authorize", query_string=auth_params()).headers["Location"]
    page = client.get(wait_url)
    marker = b"/authorize/status/"
    start = page.data.index(marker)
    status_url = page.data[start : page.data.index(b'"', start)].decode()
    status = client.get(status_url)
    assert status.status_code == 200
    body = status.get_json()
    assert body["state"] == "waiting"
    assert body["position"] == 2 and body["ahead"] == 1 and body["serving"] == 0
    assert body["poll_after_ms"] >= 1000 and body["continue_url"] == wait_url
    services.room.increment_serving("sale", 2)
    assert client.get(status_url).get_json()["state"] == "admitted"
    assert client.get("/authorize/status/forged").status_code == 404


@all_backends
def test_code_exchange_basic_and_post_userinfo_and_id_token(client: Any, services: Any, rp: Any) -> None:
    client_id, secret = rp
    for method in ("basic", "post"):
        verifier, challenge = pkce_pair()
        params = auth_params(nonce="n-" + method, code_challenge=challenge, code_challenge_method="S256")
        callback = login(client, services, params)
        response = exchange(client, callback["code"], client_id, secret, method=method, code_verifier=verifier)
        assert response.status_code == 200, response.data
        assert response.headers["Cache-Control"] == "no-store"
        tokens = response.get_json()
        assert tokens["token_type"] == "Bearer" and tokens["refresh_token"] and tokens["expires_in"] > 0
        header, claims = decode_id_token(client, tokens["id_token"])
        assert header["kid"] and header["alg"] == "RS256"
        assert claims["iss"] == ISSUER and claims["aud"] == client_id and claims["nonce"] == "n-" + method
        assert claims["auth_time"] == claims["admitted_at"] and claims["event_id"] == "sale"
        assert claims["queue_position"] == 1
        assert claims["email_verified"] is False and claims["email"].endswith("@visitors.invalid")
        assert claims["preferred_username"]
        info = client.get("/userinfo", headers={"Authorization": "Bearer " + tokens["access_token"]})
        assert info.status_code == 200 and info.get_json()["sub"] == claims["sub"]
        posted = client.post("/userinfo", data={"access_token": tokens["access_token"]})
        assert posted.status_code == 200 and posted.get_json()["sub"] == claims["sub"]
        # The access token is a waiting-room access token: forward auth accepts it.
        verify = client.get("/verify?event_id=sale", headers={"Authorization": "Bearer " + tokens["access_token"]})
        assert verify.status_code == 200


def test_second_authorize_from_admitted_browser_is_answered_at_once(client: Any, services: Any, rp: Any) -> None:
    login(client, services, auth_params())
    again = client.get("/authorize", query_string=auth_params(state="second"))
    assert again.status_code == 303
    callback = query_of(again.headers["Location"])
    assert callback["state"] == "second" and callback["iss"] == ISSUER and callback["code"]


def test_same_browser_twice_same_place_and_sub(client: Any, services: Any, rp: Any) -> None:
    client_id, secret = rp
    first = client.get("/authorize", query_string=auth_params()).headers["Location"]
    second = client.get("/authorize", query_string=auth_params()).headers["Location"]
    assert first != second  # two parked requests ...
    assert services.room.counters("sale", fresh=True).queue == 1  # ... one place
    admit_everyone(services)
    subs = []
    for url in (first, second):
        callback = query_of(client.get(url).headers["Location"])
        tokens = exchange(client, callback["code"], client_id, secret).get_json()
        subs.append(decode_id_token(client, tokens["id_token"])[1]["sub"])
    assert subs[0] == subs[1]


def test_two_clients_get_different_subjects_for_one_browser(client: Any, services: Any, rp: Any) -> None:
    other_id, other_secret = make_client(services, client_id="other")
    client_id, secret = rp
    subs = []
    for cid, sec in ((client_id, secret), (other_id.client_id, other_secret)):
        callback = login(client, services, auth_params(cid))
        tokens = exchange(client, callback["code"], cid, sec).get_json()
        subs.append(decode_id_token(client, tokens["id_token"])[1]["sub"])
    assert subs[0] != subs[1]


def test_other_browser_gets_another_place_and_sub(app: Any, services: Any, rp: Any) -> None:
    client_id, secret = rp
    subs = []
    for _ in range(2):
        browser = app.test_client()
        callback = login(browser, services, auth_params())
        tokens = exchange(browser, callback["code"], client_id, secret).get_json()
        subs.append(decode_id_token(browser, tokens["id_token"])[1]["sub"])
    assert subs[0] != subs[1]
    assert services.room.counters("sale", fresh=True).queue == 2


def test_waiting_page_of_another_browser_is_refused(app: Any, services: Any, rp: Any) -> None:
    wait_url = app.test_client().get("/authorize", query_string=auth_params()).headers["Location"]
    admit_everyone(services)
    stranger = app.test_client()
    response = stranger.get(wait_url)
    assert response.status_code == 403
    assert "Location" not in response.headers
    assert response.mimetype == "text/html"


def test_unknown_client_and_unregistered_redirect_uri_render_a_page(client: Any, services: Any, rp: Any) -> None:
    for params in (
        auth_params(client_id="nobody"),
        auth_params(redirect_uri="https://evil.example/cb"),
        auth_params(redirect_uri=REDIRECT + "/extra"),
        {"client_id": "rp"},
    ):
        response = client.get("/authorize", query_string=params)
        assert response.status_code == 400
        assert "Location" not in response.headers
        assert response.mimetype == "text/html"


def test_stale_parked_request_goes_to_initiate_login_uri(client: Any, services: Any, clock: Any, rp: Any) -> None:
    wait_url = client.get("/authorize", query_string=auth_params()).headers["Location"]
    clock.advance(151)
    admit_everyone(services)
    response = client.get(wait_url)
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith("https://rp.example/login?") and query_of(location)["iss"] == ISSUER
    # The relying party's fresh request is answered at once from the admitted cookie.
    fresh = client.get("/authorize", query_string=auth_params(state="fresh"))
    assert fresh.status_code == 303 and query_of(fresh.headers["Location"])["state"] == "fresh"
    assert services.room.counters("sale", fresh=True).queue == 1


def test_stale_parked_request_without_initiate_login_uri_still_finishes(
    client: Any, services: Any, clock: Any, event: Any
) -> None:
    make_client(services, client_id="plain")
    wait_url = client.get("/authorize", query_string=auth_params("plain")).headers["Location"]
    clock.advance(400)
    admit_everyone(services)
    response = client.get(wait_url)
    assert response.status_code == 303 and response.headers["Location"].startswith(REDIRECT)


def test_expired_place_shows_a_page(client: Any, services: Any, clock: Any, rp: Any) -> None:
    wait_url = client.get("/authorize", query_string=auth_params()).headers["Location"]
    admit_everyone(services)
    clock.advance(901)
    response = client.get(wait_url)
    assert response.status_code == 410 and response.mimetype == "text/html"
    assert b"https://rp.example/login" in response.data


def test_visitor_who_queued_first_is_answered_at_once(client: Any, services: Any, rp: Any) -> None:
    # The queue-first page keeps the browser's place under its visitor cookie, as /authorize does.
    visitor_id = "V" * 43
    place = services.oidc_interactions.ensure_place(visitor_id, "sale")
    client.set_cookie("idp_visitor", visitor_id)
    admit_everyone(services)
    response = client.get("/authorize", query_string=auth_params(prompt="none", state="direct"))
    assert response.status_code == 303
    callback = query_of(response.headers["Location"])
    assert callback["state"] == "direct" and callback["code"]
    assert "idp_admit_sale=" in " ".join(response.headers.getlist("Set-Cookie"))
    client_id, secret = rp
    claims = decode_id_token(client, exchange(client, callback["code"], client_id, secret).get_json()["id_token"])[1]
    assert claims["queue_position"] == place.queue_position
    assert services.room.counters("sale", fresh=True).queue == 1


def test_waiting_reload_reads_only_the_queue_store(client: Any, services: Any, rp: Any) -> None:
    from sqlalchemy import delete

    from idp.storage.models import OidcInteraction

    services.room.join("sale")
    wait_url = client.get("/authorize", query_string=auth_params()).headers["Location"]
    assert "?w=" in wait_url
    with services.db.session() as session:
        session.execute(delete(OidcInteraction))
    assert client.get(wait_url).status_code == 200  # waiting: the signed ticket is enough
    assert client.get(wait_url.split("?")[0]).status_code == 404
    assert client.get(wait_url[:-3] + "abc").status_code == 404  # a forged ticket means a database read


def test_head_request_does_not_join_the_queue(client: Any, services: Any, rp: Any) -> None:
    assert client.head("/authorize", query_string=auth_params()).status_code == 200
    assert services.room.counters("sale", fresh=True).queue == 0


def test_the_language_switch_of_a_parked_sign_in_keeps_its_ticket(client: Any, services: Any, rp: Any) -> None:
    import html
    import re

    first = client.get("/authorize", query_string=auth_params())
    wait_url = first.headers["Location"]
    page = client.get(wait_url)
    links = [html.unescape(h) for h in re.findall(r'href="([^"]*lang=ja[^"]*)"', page.get_data(as_text=True))]
    assert links, "the page offers Japanese"
    assert all(link.count("?") == 1 for link in links), links
    japanese = client.get(links[0])
    assert japanese.status_code == 200
    assert japanese.headers["Content-Language"] == "ja"
    assert query_of(links[0])["w"] == query_of(wait_url)["w"]
