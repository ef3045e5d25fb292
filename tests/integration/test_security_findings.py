"""Attacks on the sign-in journey, tried over HTTP as an attacker would, and shown refused.

Each test reproduces one way a visitor's place or login could be taken, leaked or tampered with.
The cross-site ones are also tried in a real browser (tests/e2e/test_cross_site_browser.py).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.conftest import all_backends
from tests.leaks import leaked, path_and_query, urls_in_html
from tests.oidc_flow import REDIRECT, admit_everyone, auth_params, basic, exchange, login, make_client

pytestmark = pytest.mark.integration


@pytest.fixture
def rp(services: Any, event: Any) -> tuple[str, str]:
    config, secret = make_client(services, post_logout_redirect_uris=["https://rp.example/bye"])
    return config.client_id, secret


def _visitor_cookie(client: Any, services: Any) -> str:
    cookie = client.get_cookie(services.settings.visitor_cookie)
    assert cookie is not None
    return str(cookie.value)


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _status_url(html: str) -> str:
    return next(url for url in urls_in_html(html) if url.startswith("/authorize/status/"))


def test_waiting_page_urls_reveal_neither_the_cookie_nor_the_request_id(client: Any, services: Any, rp: Any) -> None:
    services.room.join("sale")  # someone ahead, so the visitor waits
    first = client.get("/authorize", query_string=auth_params())
    wait_url = first.headers["Location"]
    visitor = _visitor_cookie(client, services)
    place = services.oidc_records.place(visitor, "sale")
    secrets = [visitor, place.request_id]
    page = client.get(wait_url)
    html = page.get_data(as_text=True)
    status_url = _status_url(html)
    seen = [wait_url, status_url, html, *urls_in_html(html)]
    status = client.get(status_url)
    seen.append(status.get_data(as_text=True))
    admit_everyone(services)
    seen.append(client.get(status_url).get_data(as_text=True))
    done = client.get(wait_url)
    assert done.status_code == 303 and done.headers["Location"].startswith(REDIRECT)
    seen.append(done.headers["Location"])
    for text in seen:
        assert leaked(text, secrets) == [], text[:300]


def test_another_browser_given_the_waiting_urls_gets_nothing(app: Any, client: Any, services: Any, rp: Any) -> None:
    services.room.join("sale")
    wait_url = client.get("/authorize", query_string=auth_params()).headers["Location"]
    status_url = _status_url(client.get(wait_url).get_data(as_text=True))
    admit_everyone(services)
    attacker = app.test_client()
    # With no cookie, or with a visitor cookie of its own, the handles are useless.
    attacker.get("/authorize", query_string=auth_params())
    for url in (wait_url, status_url):
        answer = attacker.get(url)
        assert answer.status_code in (403, 404), (url, answer.status_code)
        assert "code=" not in answer.headers.get("Location", "")
    assert app.test_client().get(status_url).status_code == 404
    # The owner still finishes its sign-in.
    assert client.get(wait_url).headers["Location"].startswith(REDIRECT)


def test_the_request_log_names_route_templates_not_handles(
    client: Any, services: Any, rp: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from idp import logging as idp_logging

    services.room.join("sale")
    handler, idp_logging._HANDLER = idp_logging._HANDLER, None  # log through the logging module
    try:
        with caplog.at_level(logging.INFO, logger="idp.http"):
            wait_url = client.get("/authorize", query_string=auth_params()).headers["Location"]
            status_url = _status_url(client.get(wait_url).get_data(as_text=True))
            client.get(status_url)
            client.get("/authorize/wait/unknown-handle-0123456789?w=abc")
    finally:
        idp_logging._HANDLER = handler
    paths = [record.__dict__.get("path") for record in caplog.records if record.name == "idp.http"]
    assert "/authorize/wait/<interaction_id>" in paths and "/authorize/status/<ticket>" in paths
    interaction_id = path_and_query(wait_url).split("/")[3].split("?")[0]
    for record in caplog.records:
        line = json.dumps(record.__dict__, default=str)
        assert interaction_id not in line and "unknown-handle" not in line


def test_relying_party_tokens_carry_no_place_secret(client: Any, services: Any, rp: Any) -> None:
    client_id, secret = rp
    callback = login(client, services, auth_params())
    tokens = exchange(client, callback["code"], client_id, secret).get_json()
    place = services.oidc_records.place(_visitor_cookie(client, services), "sale")
    request_id = place.request_id
    session_end = services.oidc_records.session_state(request_id).expires_at
    for name in ("access_token", "id_token"):
        claims = _claims(tokens[name])
        assert request_id not in json.dumps(claims), name
        # Whatever the token holds, no claim is a request id /api/generate_token would accept.
        for value in claims.values():
            if isinstance(value, str):
                answer = client.post("/api/generate_token", json={"event_id": "sale", "request_id": value})
                assert answer.status_code in (400, 404), (name, value, answer.status_code)
    assert leaked(json.dumps(tokens), [request_id]) == []
    # Forward auth accepts the access token and names the place only by an opaque value.
    verified = client.get("/verify?event_id=sale", headers={"Authorization": "Bearer " + tokens["access_token"]})
    assert verified.status_code == 200
    assert request_id not in str(verified.headers) + verified.get_data(as_text=True)
    assert verified.headers["X-Queue-Place"] == services.tokens.place_reference("sale", request_id)
    for value in (verified.headers["X-Queue-Place"], verified.headers["X-Queue-Place"].upper()):
        assert client.post("/api/generate_token", json={"event_id": "sale", "request_id": value}).status_code == 400
    # The access token never outlives the visitor's session.
    assert _claims(tokens["access_token"])["exp"] <= session_end


def _csrf(html: bytes) -> str:
    return html.decode().split('name="csrf" value="')[1].split('"')[0]


def test_a_logout_link_with_a_foreign_id_token_ends_nothing(
    app: Any, client: Any, services: Any, rp: Any, clock: Any
) -> None:
    client_id, secret = rp
    victim = exchange(client, login(client, services, auth_params())["code"], client_id, secret).get_json()
    bearer = {"Authorization": "Bearer " + victim["access_token"]}
    # The attacker's own tokens: an RP login in its browser, and the AWS token set of a place of its own.
    attacker = app.test_client()
    attacker_tokens = exchange(attacker, login(attacker, services, auth_params())["code"], client_id, secret)
    joined = attacker.post("/api/assign_queue_num", json={"event_id": "sale"}).get_json()
    admit_everyone(services)
    aws = attacker.post("/api/generate_token", json={"event_id": "sale", "request_id": joined["api_request_id"]})
    for hint in (attacker_tokens.get_json()["id_token"], aws.get_json()["id_token"]):
        answer = client.get("/logout", query_string={"id_token_hint": hint, "client_id": client_id})
        assert answer.status_code in (200, 400) and "Location" not in answer.headers
        assert client.get("/userinfo", headers=bearer).status_code == 200
    # A confirmation needs this browser's own token: forged, another browser's, or stale ones fail.
    page = client.get("/logout", query_string={"client_id": client_id})
    own = _csrf(page.data)
    other = _csrf(attacker.get("/logout", query_string={"client_id": client_id}).data)
    for token in ("0" * 64, other, own.split(".")[0] + ".00", ""):
        forged = client.post("/logout", data={"client_id": client_id, "confirm": "yes", "csrf": token})
        assert b"Sign out?" in forged.data
        assert client.get("/userinfo", headers=bearer).status_code == 200
    clock.advance(601)
    stale = client.post("/logout", data={"client_id": client_id, "confirm": "yes", "csrf": own})
    assert b"Sign out?" in stale.data and client.get("/userinfo", headers=bearer).status_code == 200
    assert services.room.counters("sale", fresh=True).completed == 0
    # Its own hint still signs this browser out at once, as relying parties expect.
    done = client.get("/logout", query_string={"id_token_hint": victim["id_token"]})
    assert done.status_code == 200 and b"Signed out" in done.data
    assert client.get("/userinfo", headers=bearer).status_code == 401


def test_a_cookieless_post_never_mints_a_visitor(app: Any, client: Any, services: Any, rp: Any) -> None:
    login(client, services, auth_params())
    visitor = _visitor_cookie(client, services)
    # What a cross-site form POST looks like here: SameSite=Lax keeps the browser's cookies off it.
    stranger = app.test_client()
    for path, data in (("/authorize", auth_params()), ("/wait/sale/rejoin", {})):
        answer = stranger.post(path, data=data)
        assert answer.status_code == 303, path
        assert answer.headers.getlist("Set-Cookie") == [], path
        assert answer.headers["Location"].startswith(("/authorize?", "/wait/sale")), path
    assert services.room.counters("sale", fresh=True).queue == 1
    # The browser's own GET of the same request carries its cookie and keeps its place.
    again = client.get(stranger.post("/authorize", data=auth_params()).headers["Location"])
    assert again.status_code == 303 and again.headers["Location"].startswith(REDIRECT)
    assert _visitor_cookie(client, services) == visitor
    assert services.room.counters("sale", fresh=True).queue == 1


def test_cookies_are_host_prefixed_and_secure_under_https(backend_settings: Any, clock: Any) -> None:
    import dataclasses

    from idp.app import create_app

    https = create_app(dataclasses.replace(backend_settings, issuer="https://queue.example"), clock=clock)
    try:
        svc = https.extensions["idp"]
        svc.events.create({"event_id": "sale", "name": "Sale"})
        make_client(svc)
        browser = https.test_client()
        first = browser.get("/authorize", query_string=auth_params(), base_url="https://queue.example")
        set_cookies = first.headers.getlist("Set-Cookie")
        visitor = next(c for c in set_cookies if c.startswith("__Host-idp_visitor="))
        assert "Secure" in visitor and "Path=/" in visitor and "HttpOnly" in visitor and "Domain" not in visitor
        page = browser.get("/wait/sale", base_url="https://queue.example")
        place = next(c for c in page.headers.getlist("Set-Cookie") if c.startswith("__Host-idp_place_sale="))
        assert "Secure" in place and "Domain" not in place
        # A browser that got its cookie under the old name keeps its visitor id, moved to the new name.
        legacy = https.test_client()
        old_id = "v" * 43
        legacy.set_cookie("idp_visitor", old_id, domain="queue.example")
        moved = legacy.get("/authorize", query_string=auth_params(), base_url="https://queue.example")
        assert any(c.startswith(f"__Host-idp_visitor={old_id};") for c in moved.headers.getlist("Set-Cookie"))
        assert svc.oidc_records.place(old_id, "sale") is not None
    finally:
        https.extensions["idp"].close()


def test_re_login_loops_take_at_most_one_place_per_admission(client: Any, services: Any, rp: Any) -> None:
    client_id, secret = rp
    login(client, services, auth_params())
    queued = services.room.counters("sale", fresh=True).queue
    for prompt in ({"prompt": "login"}, {"max_age": "0"}) * 10:
        response = client.get("/authorize", query_string=auth_params(**prompt))
        assert response.status_code == 303 and response.headers["Location"].startswith("/authorize/wait/")
    # Twenty forced re-logins: one new place (the first admission was used), then the same one again.
    assert services.room.counters("sale", fresh=True).queue == queued + 1
    # Admitted, the new place signs in once more; a further loop takes one more place, not twenty.
    callback = login(client, services, auth_params(prompt="login"))
    assert exchange(client, callback["code"], client_id, secret).status_code == 200
    for _ in range(20):
        client.get("/authorize", query_string=auth_params(prompt="login"))
    assert services.room.counters("sale", fresh=True).queue == queued + 2


def test_a_re_admission_ends_the_browsers_earlier_session(client: Any, services: Any, rp: Any) -> None:
    client_id, secret = rp
    before = services.tokens.active_count("sale")

    def sign_in(**extra: Any) -> dict[str, Any]:
        callback = login(client, services, auth_params(**extra))
        answer = exchange(client, callback["code"], client_id, secret)
        assert answer.status_code == 200
        return dict(answer.get_json())

    def passes(tokens: dict[str, Any]) -> bool:
        headers = {"Authorization": "Bearer " + tokens["access_token"]}
        return bool(client.get("/verify?event_id=sale", headers=headers).status_code == 200)

    first = sign_in()
    assert passes(first) and services.tokens.active_count("sale") == before + 1
    first_place = services.oidc_records.place(_visitor_cookie(client, services), "sale").request_id
    # Queued again by prompt=login: the first session holds while the new place waits.
    waiting = client.get("/authorize", query_string=auth_params(prompt="login"))
    assert waiting.headers["Location"].startswith("/authorize/wait/")
    assert passes(first)
    # Once the new place is admitted, the browser holds one active slot, not two.
    second = sign_in(prompt="login")
    third = sign_in(max_age="0")
    assert services.tokens.active_count("sale") == before + 1
    assert not passes(first) and not passes(second) and passes(third)
    refresh = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    assert client.post("/token", data=refresh, headers=basic(client_id, secret)).status_code == 400
    # The earlier session counts as completed (its visitor went on), not abandoned.
    assert services.oidc_records.session_state(first_place).session_status == 1


@pytest.mark.parametrize("backend_settings", ["sqlite", "postgres"], indirect=True)
def test_a_lone_surrogate_in_an_admin_field_is_a_400(client: Any, services: Any) -> None:
    from tests.admin_support import bearer, make_key

    admin = bearer(make_key(services, "admin"))
    headers = {**admin, "Content-Type": "application/json"}
    bodies = [
        ("/admin/api/events", '{"event_id": "sale", "name": "\\ud800"}'),
        ("/admin/api/events", '{"event_id": "sale", "name": "x\\udfff y"}'),
        ("/admin/api/admin_keys", '{"name": "\\udc80", "scopes": ["admin"]}'),
    ]
    for path, body in bodies:
        answer = client.post(path, data=body, headers=headers)
        assert answer.status_code == 400, (path, body, answer.status_code, answer.data[:200])
        assert answer.get_json()["error"]
    services.events.create({"event_id": "real"})
    patched = client.patch("/admin/api/events/real", data='{"name": "\\ud83d"}', headers=headers)
    assert patched.status_code == 400


STRONG_SECRET = "kJ8x2P-qL0vZ7mN4tR9sW1yB6cF3hD5gA_eU8iO2pK7"


def _production_app(backend_settings: Any, clock: Any, **overrides: Any) -> Any:
    import dataclasses

    from idp.app import create_app

    settings = dataclasses.replace(
        backend_settings, env="production", secret_key=STRONG_SECRET, issuer="https://queue.example", **overrides
    )
    return create_app(settings, clock=clock)


@pytest.mark.parametrize("weak", ["a" * 32, "ab" * 20, "0123456789" * 4, "password" * 5])
def test_production_refuses_a_predictable_secret(weak: str) -> None:
    from idp.config import ConfigError, Settings

    with pytest.raises(ConfigError, match="predictable"):
        Settings(env="production", secret_key=weak, issuer="https://queue.example").validate()
    import secrets as random_secrets

    for strong in (STRONG_SECRET, random_secrets.token_hex(16), random_secrets.token_urlsafe(32)):
        Settings(env="production", secret_key=strong, issuer="https://queue.example").validate()


def test_production_refuses_the_demo(monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: Any) -> None:
    from idp import cli
    from idp.config import ConfigError, Settings

    with pytest.raises(ConfigError, match="demo"):
        Settings(env="production", secret_key=STRONG_SECRET, issuer="https://queue.example", demo=True).validate()
    for name, value in {
        "IDP_ENV": "production",
        "IDP_SECRET_KEY": STRONG_SECRET,
        "IDP_ISSUER": "https://queue.example",
        "IDP_DATABASE_URL": f"sqlite:///{tmp_path / 'prod.sqlite3'}",
        "IDP_INSTANCE_PATH": str(tmp_path),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("IDP_REDIS_URL", raising=False)
    assert cli.main(["serve", "--demo"]) == 2
    out = capsys.readouterr()
    assert "--demo" in out.err and "admin key" not in out.out.lower()


def test_hsts_is_sent_under_an_https_issuer_only(client: Any, backend_settings: Any, clock: Any) -> None:
    assert "Strict-Transport-Security" not in client.get("/healthz").headers
    app = _production_app(backend_settings, clock)
    try:
        answer = app.test_client().get("/.well-known/openid-configuration", base_url="https://queue.example")
        assert answer.headers["Strict-Transport-Security"].startswith("max-age=")
        # The fast path answers serving_num and joins before Flask: the same header from there.
        app.extensions["idp"].events.create({"event_id": "hsts"})
        web = app.test_client()
        fast = web.get("/api/serving_num?event_id=hsts", base_url="https://queue.example")
        assert fast.status_code == 200 and fast.headers["Strict-Transport-Security"].startswith("max-age=")
        join = web.post("/api/assign_queue_num", data=b'{"event_id": "hsts"}', base_url="https://queue.example")
        assert join.headers["Strict-Transport-Security"].startswith("max-age=")
    finally:
        app.extensions["idp"].close()


def test_production_refuses_plain_http_redirects_and_private_targets(backend_settings: Any, clock: Any) -> None:
    from tests.admin_support import bearer, make_key

    app = _production_app(backend_settings, clock)
    try:
        svc = app.extensions["idp"]
        admin = bearer(make_key(svc, "admin"))
        api = app.test_client()
        base = {"base_url": "https://queue.example", "headers": admin}
        assert api.post("/admin/api/events", json={"event_id": "sale"}, **base).status_code == 201
        for uris, status in (
            (["http://shop.example/cb"], 400),
            (["https://shop.example/cb", "http://evil.example/cb"], 400),
            (["http://127.0.0.1:8080/cb", "http://localhost/cb", "https://shop.example/cb"], 201),
        ):
            body = {"event_id": "sale", "redirect_uris": uris}
            answer = api.post("/admin/api/clients", json=body, **base)
            assert answer.status_code == status, (uris, answer.get_json())
        insecure_logout = {"event_id": "sale", "redirect_uris": ["https://shop.example/cb"]}
        insecure_logout["post_logout_redirect_uris"] = ["http://shop.example/"]
        assert api.post("/admin/api/clients", json=insecure_logout, **base).status_code == 400
        private = ("http://127.0.0.1:6379/", "http://10.1.2.3/hook", "http://169.254.169.254/latest", "http://[::1]/")
        # A host or port that is not one is refused too: a 400, never a 500.
        unparsable = ("http://[::1/hook", "http://[zz]/hook", "http://example.com:99999/hook")
        for url, code in [*((u, "private_target") for u in private), *((u, "invalid_field") for u in unparsable)]:
            challenge = {"kind": "captcha", "provider": "turnstile", "site_key": "k", "secret": "s", "verify_url": url}
            for answer in (
                api.post("/admin/api/events/sale/webhooks", json={"url": url}, **base),
                api.put("/admin/api/events/sale/inlet", json={"periodic": {"health_url": url}}, **base),
                api.patch("/admin/api/events/sale", json={"challenge": challenge}, **base),
                api.post("/admin/api/events", json={"event_id": "gated", "challenge": challenge}, **base),
            ):
                assert answer.status_code == 400 and answer.get_json()["error"] == code, (url, answer.get_json())
        assert svc.events.get_fresh("sale").challenge is None, "a refused challenge is not saved"
    finally:
        app.extensions["idp"].close()
    allowed = _production_app(backend_settings, clock, allow_private_targets=True)
    try:
        svc = allowed.extensions["idp"]
        admin = bearer(make_key(svc, "admin"))
        api = allowed.test_client()
        hook = api.post(
            "/admin/api/events/sale/webhooks",
            json={"url": "http://10.1.2.3/hook"},
            base_url="https://queue.example",
            headers=admin,
        )
        assert hook.status_code == 201
    finally:
        allowed.extensions["idp"].close()


@pytest.mark.parametrize("backend_settings", ["sqlite", "redis"], indirect=True)
def test_the_queue_store_holds_no_visitor_cookie_value(
    client: Any, services: Any, rp: Any, backend_settings: Any
) -> None:
    client.get("/authorize", query_string=auth_params())
    visitor = _visitor_cookie(client, services)
    if backend_settings.redis_url:
        import redis

        store = redis.Redis.from_url(backend_settings.redis_url)
        try:
            dump = []
            for key in store.scan_iter():
                dump.append(key)
                kind = store.type(key)
                if kind == b"hash":
                    dump.extend(b for pair in store.hgetall(key).items() for b in pair)
                elif kind == b"string":
                    dump.append(store.get(key) or b"")
            text = b"\n".join(dump).decode("latin-1")
        finally:
            store.close()
    else:
        from sqlalchemy import select

        from idp.storage.models import QueueEntry

        with services.db.session(readonly=True) as session:
            text = "\n".join(str(k) for k in session.execute(select(QueueEntry.idempotency_key)).scalars())
    assert "oidc:" in text and visitor not in text


@all_backends
def test_an_idempotency_key_someone_else_learns_gives_them_nothing(client: Any, services: Any) -> None:
    """A retried join gets its place back; the same key sent from another address gets a place of its own."""
    services.events.create({"event_id": "keys"})
    victim = {"REMOTE_ADDR": "198.51.100.7"}
    attacker = {"REMOTE_ADDR": "203.0.113.66"}
    headers = {"Idempotency-Key": "order-1"}
    body = {"event_id": "keys"}
    first = client.post("/api/assign_queue_num", json=body, headers=headers, environ_base=victim).get_json()
    retried = client.post("/api/assign_queue_num", json=body, headers=headers, environ_base=victim).get_json()
    assert retried == first
    stolen = client.post("/api/assign_queue_num", json=body, headers=headers, environ_base=attacker).get_json()
    assert stolen["api_request_id"] != first["api_request_id"]
    assert stolen["queue_number"] == first["queue_number"] + 1
    # The public key never reaches the namespace of the sign-in journey's own keys.
    bad = client.post("/api/assign_queue_num", json=body, headers={"Idempotency-Key": "a b"}, environ_base=victim)
    assert bad.status_code == 400 and bad.get_json()["error"] == "invalid_idempotency_key"
