"""Per-client rate limits, the join gate (proof of work, captcha), the infinite queue and refusal figures.

Runs on SQLite (limits and spent challenges in the database) and on Redis (both on the queue's Redis).
The client address is the test client's ``REMOTE_ADDR``; another address is another client.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
from sqlalchemy import select

from idp.abuse.challenge import solve, solves
from idp.storage.models import Event
from tests.admin_support import bearer
from tests.openapi_check import ValidatingClient

pytestmark = pytest.mark.integration

both = pytest.mark.parametrize("backend_settings", ["sqlite", "redis"], indirect=True)
FLOODER = {"REMOTE_ADDR": "198.51.100.7"}
HONEST = {"REMOTE_ADDR": "203.0.113.9"}


@pytest.fixture
def services(app: Any) -> Any:
    return app.extensions["idp"]


@pytest.fixture
def api(client: Any) -> ValidatingClient:
    return ValidatingClient(client)


@pytest.fixture
def admin(services: Any) -> dict[str, str]:
    from idp.admin.keys import AdminKeyService

    _record, key = AdminKeyService(services.db, services.clock).create("ops", ["admin"])
    return bearer(key)


def _join(api: Any, event_id: str = "sale", env: dict[str, str] | None = None, **extra: Any) -> Any:
    return api.post("/api/assign_queue_num", json={"event_id": event_id, **extra}, environ_base=env or FLOODER)


# --- rate limits ---------------------------------------------------------------------------------


@both
def test_one_address_gets_at_most_100_places_a_minute_and_another_address_is_not_slowed(
    api: Any, services: Any
) -> None:
    services.events.create({"event_id": "sale"})
    answers = [_join(api) for _ in range(130)]
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 100 and statuses.count(429) == 30
    refused = answers[-1]
    assert refused.get_json()["error"] == "rate_limited" and refused.get_json()["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert services.room.counters("sale").queue == 100
    honest = _join(api, env=HONEST)
    assert honest.status_code == 200 and honest.get_json()["queue_number"] == 101


@both
def test_addresses_of_one_ipv6_network_share_one_limit(api: Any, services: Any) -> None:
    """A client holding a /64 cannot take a fresh limit with every address in it."""
    services.events.create({"event_id": "sale"})
    statuses = [_join(api, env={"REMOTE_ADDR": f"2001:db8:1:2::{i:x}"}).status_code for i in range(1, 121)]
    assert statuses.count(200) == 100 and statuses.count(429) == 20
    assert _join(api, env={"REMOTE_ADDR": "2001:db8:1:3::1"}).status_code == 200


@both
def test_an_event_can_raise_its_join_limit_and_the_setting_can_switch_limits_off(
    api: Any, services: Any, backend_settings: Any, clock: Any
) -> None:
    services.events.create({"event_id": "sale", "rate_limits": {"join": "150/minute"}})
    assert [_join(api).status_code for _ in range(151)].count(200) == 150

    import dataclasses

    from idp.app import create_app

    off = create_app(dataclasses.replace(backend_settings, rate_limits="off"), clock=clock)
    try:
        off.extensions["idp"].events.create({"event_id": "other"})
        client = off.test_client()
        assert all(_join(client, "other").status_code == 200 for _ in range(120))
    finally:
        off.extensions["idp"].close()


@pytest.mark.parametrize(
    ("spec", "ok"),
    [
        ("", True),
        ("off", True),
        ("join=300/minute,20/second; token=off", True),
        ("join=5 per 10 seconds", True),
        ("bogus=1/minute", False),
        ("join=many", False),
        ("join", False),
    ],
)
def test_the_rate_limit_setting_is_validated(spec: str, ok: bool) -> None:
    from idp.config import ConfigError, Settings

    settings = Settings(env="test", secret_key="x" * 40, rate_limits=spec)
    if ok:
        settings.validate()
    else:
        with pytest.raises(ConfigError):
            settings.validate()


def test_an_event_rate_limit_field_is_validated(api: Any, admin: dict[str, str]) -> None:
    for bad in ({"join": "lots"}, {"token": "1/minute"}, ["join"], {"join": 5}):
        answer = api.post("/admin/api/events", headers=admin, json={"event_id": "bad", "rate_limits": bad})
        assert answer.status_code == 400 and answer.get_json()["error"] == "invalid_field"


@both
def test_repeated_generate_token_calls_for_a_request_id_are_not_counted(api: Any, services: Any) -> None:
    services.events.create({"event_id": "sale", "rate_limits": {"generate_token": "3/minute"}})
    ids = [_join(api).get_json()["api_request_id"] for _ in range(5)]
    services.room.increment_serving("sale", 5)
    body = {"event_id": "sale"}
    first = api.post("/api/generate_token", json={**body, "request_id": ids[0]}, environ_base=FLOODER)
    assert first.status_code == 200
    for _ in range(10):
        again = api.post("/api/generate_token", json={**body, "request_id": ids[0]}, environ_base=FLOODER)
        assert again.status_code == 200
    assert api.post("/api/generate_token", json={**body, "request_id": ids[1]}, environ_base=FLOODER).status_code == 200
    assert api.post("/api/generate_token", json={**body, "request_id": ids[2]}, environ_base=FLOODER).status_code == 200
    limited = api.post("/api/generate_token", json={**body, "request_id": ids[3]}, environ_base=FLOODER)
    assert limited.status_code == 429 and limited.get_json()["error"] == "rate_limited"
    assert "Retry-After" in limited.headers
    assert api.post("/api/generate_token", json={**body, "request_id": ids[3]}, environ_base=HONEST).status_code == 200


@both
def test_wrong_admin_keys_are_limited_per_address_and_a_valid_key_never_is(
    api: Any, admin: dict[str, str], services: Any
) -> None:
    services.events.create({"event_id": "sale"})
    wrong = bearer("idp_ak_nothere.wrongsecretwrongsecretwrongsecret")
    statuses = [api.get("/admin/api/events", headers=wrong, environ_base=FLOODER).status_code for _ in range(61)]
    assert statuses[:60] == [401] * 60 and statuses[60] == 429
    refused = api.get("/admin/api/events", headers=wrong, environ_base=FLOODER)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert api.get("/admin/api/events", headers=admin, environ_base=FLOODER).status_code == 200
    assert api.get("/admin/api/events", headers=wrong, environ_base=HONEST).status_code == 401


def test_failed_token_calls_are_limited_per_address(client: Any, services: Any) -> None:
    form = {"grant_type": "authorization_code", "code": "nope", "client_id": "x", "client_secret": "y"}
    statuses = [client.post("/token", data=form, environ_base=FLOODER).status_code for _ in range(61)]
    assert set(statuses[:60]) <= {400, 401} and statuses[60] == 429
    assert client.post("/token", data=form, environ_base=HONEST).status_code in (400, 401)
    intro = [client.post("/introspect", data={"token": "t"}, environ_base=FLOODER).status_code for _ in range(61)]
    assert intro[60] == 429


# --- the proof-of-work gate -------------------------------------------------------------------------


def _pow_event(services: Any, difficulty: int = 8, **more: Any) -> None:
    services.events.create(
        {"event_id": "sale", "challenge": {"kind": "proof_of_work", "difficulty": difficulty}, **more}
    )


@both
def test_a_bare_join_to_a_proof_of_work_event_gets_a_challenge_and_a_solved_one_joins_once(
    api: Any, services: Any
) -> None:
    _pow_event(services)
    bare = _join(api)
    assert bare.status_code == 403
    body = bare.get_json()
    assert body["error"] == "challenge_required" and body["message"]
    challenge = body["challenge"]
    assert challenge["kind"] == "proof_of_work" and challenge["difficulty"] == 8 and challenge["expires_in"] > 0
    solution = solve(challenge["challenge"], 8)
    assert solves(challenge["challenge"], solution, 8)
    joined = _join(api, challenge=challenge["challenge"], solution=solution)
    assert joined.status_code == 200 and joined.get_json()["queue_number"] == 1
    replay = _join(api, challenge=challenge["challenge"], solution=solution)
    assert replay.status_code == 403 and replay.get_json()["error"] == "challenge_failed"
    assert replay.get_json()["challenge"]["challenge"] != challenge["challenge"]
    assert services.room.counters("sale").queue == 1


@both
def test_expired_wrong_and_foreign_solutions_are_refused(api: Any, services: Any, clock: Any) -> None:
    _pow_event(services)
    fetched = api.get("/api/challenge?event_id=sale", environ_base=FLOODER).get_json()
    token = fetched["challenge"]
    solution = solve(token, 8)
    wrong = next(str(n) for n in range(1000) if not solves(token, str(n), 8))
    assert _join(api, challenge=token, solution=wrong).get_json()["error"] == "challenge_failed"
    # From another address the same solution is refused (challenges are bound to the client).
    assert _join(api, env=HONEST, challenge=token, solution=solution).get_json()["error"] == "challenge_failed"
    # A forged token (another event's, or edited) is refused.
    assert _join(api, challenge=token.replace("~sale~", "~other~"), solution=solution).status_code == 403
    clock.advance(121)
    expired = _join(api, challenge=token, solution=solution)
    assert expired.status_code == 403 and expired.get_json()["error"] == "challenge_failed"
    assert services.room.counters("sale").queue == 0


def test_the_challenge_endpoint_says_none_for_an_ungated_event(api: Any, services: Any) -> None:
    services.events.create({"event_id": "open"})
    assert api.get("/api/challenge?event_id=open").get_json() == {"kind": "none"}


def test_the_queue_first_page_serves_the_gate_and_a_solved_form_gives_a_place(client: Any, services: Any) -> None:
    _pow_event(services)
    page = client.get("/wait/sale")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="wr-challenge"' in html and "challenge.js" in html
    assert "needs JavaScript" in html  # the explanation a browser without JavaScript keeps seeing
    assert services.room.counters("sale").queue == 0
    import re

    token = re.search(r'name="challenge" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    posted = client.post(
        "/challenge/sale", data={"challenge": token, "solution": solve(token, 8), "return_to": "/wait/sale"}
    )
    assert posted.status_code == 303 and posted.headers["Location"] == "/wait/sale"
    waiting = client.get("/wait/sale")
    assert waiting.status_code == 200 and 'id="wr-position">1<' in waiting.get_data(as_text=True)
    assert services.room.counters("sale").queue == 1
    # The pass was single use: a second browser session reusing it gets the gate again.
    again = client.post(
        "/challenge/sale", data={"challenge": token, "solution": solve(token, 8), "return_to": "/wait/sale"}
    )
    assert again.status_code == 403 and 'id="wr-challenge"' in again.get_data(as_text=True)
    assert client.post("/challenge/sale", data={"return_to": "https://evil.example/"}).status_code == 403
    japanese = client.application.test_client().get("/wait/sale?lang=ja").get_data(as_text=True)
    assert "ブラウザを確認しています" in japanese and "JavaScript が必要です" in japanese


# --- captcha ---------------------------------------------------------------------------------------


class _Siteverify(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        self.server.calls.append(form)  # type: ignore[attr-defined]
        if form.get("response") == "slow-token":
            time.sleep(4.0)
        ok = form.get("response") == "good-token" and form.get("secret") == "provider-secret"
        body = json.dumps({"success": ok, "error-codes": [] if ok else ["invalid-input-response"]}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def siteverify() -> Iterator[Any]:
    """A fake provider siteverify API on loopback: "good-token" passes, "slow-token" answers after 4 s."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Siteverify)
    server.calls = []  # type: ignore[attr-defined]
    server.url = f"http://127.0.0.1:{server.server_address[1]}/siteverify"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _captcha_event(api: Any, admin: dict[str, str], siteverify: Any, fail_open: bool = False) -> Any:
    return api.post(
        "/admin/api/events",
        headers=admin,
        json={
            "event_id": "sale",
            "challenge": {
                "kind": "captcha",
                "provider": "turnstile",
                "site_key": "site-key-1",
                "secret": "provider-secret",
                "verify_url": siteverify.url,
                "timeout": 1.5,
                "fail_open": fail_open,
            },
        },
    )


@both
def test_captcha_tokens_are_checked_with_the_provider_and_fail_closed_by_default(
    api: Any, admin: dict[str, str], services: Any, siteverify: Any
) -> None:
    created = _captcha_event(api, admin, siteverify)
    assert created.status_code == 201
    shown = created.get_json()["challenge"]
    assert shown["has_secret"] is True and "secret" not in shown and "provider-secret" not in created.get_data(True)
    with services.db.session(readonly=True) as session:
        stored = session.execute(select(Event.challenge).where(Event.event_id == "sale")).scalar_one()
    assert "provider-secret" not in json.dumps(stored)

    bare = _join(api)
    assert bare.status_code == 403 and bare.get_json()["challenge"] == {
        "kind": "captcha",
        "provider": "turnstile",
        "site_key": "site-key-1",
        "script": "https://challenges.cloudflare.com/turnstile/v0/api.js",
        "response_field": "cf-turnstile-response",
    }
    assert _join(api, captcha_token="good-token").status_code == 200
    assert siteverify.calls[-1] == {"secret": "provider-secret", "response": "good-token", "remoteip": "198.51.100.7"}
    bad = _join(api, captcha_token="forged")
    assert bad.status_code == 403 and bad.get_json()["error"] == "challenge_failed"
    slow = _join(api, captcha_token="slow-token")
    assert slow.status_code == 503 and slow.get_json()["error"] == "captcha_unavailable"
    assert slow.headers["Retry-After"].isdigit()
    assert services.room.counters("sale").queue == 1
    metrics = api.client.get("/metrics").get_data(as_text=True)
    assert 'idp_captcha_verifications_total{event_id="sale",outcome="unavailable",provider="turnstile"} 1.0' in metrics
    assert 'idp_join_refusals_total{event_id="sale",reason="challenge_failed"} 1.0' in metrics


def test_a_captcha_outage_lets_joins_through_when_the_event_fails_open(
    api: Any, admin: dict[str, str], services: Any, siteverify: Any
) -> None:
    assert _captcha_event(api, admin, siteverify, fail_open=True).status_code == 201
    assert _join(api, captcha_token="slow-token").status_code == 200
    assert _join(api, captcha_token="forged").status_code == 403  # a clear "no" still refuses
    metrics = api.client.get("/metrics").get_data(as_text=True)
    assert 'idp_captcha_verifications_total{event_id="sale",outcome="fail_open",provider="turnstile"} 1.0' in metrics


def test_the_captcha_page_renders_the_widget_and_lets_its_provider_in(
    client: Any, api: Any, admin: dict[str, str], services: Any, siteverify: Any
) -> None:
    _captcha_event(api, admin, siteverify)
    page = client.get("/wait/sale")
    html = page.get_data(as_text=True)
    assert 'class="cf-turnstile" data-sitekey="site-key-1"' in html
    assert "https://challenges.cloudflare.com" in page.headers["Content-Security-Policy"]
    posted = client.post("/challenge/sale", data={"cf-turnstile-response": "good-token", "return_to": "/wait/sale"})
    assert posted.status_code == 303
    assert 'id="wr-position">1<' in client.get("/wait/sale").get_data(as_text=True)


# --- the infinite queue and the operator's view --------------------------------------------------------


@both
def test_failing_traffic_of_an_infinite_queue_event_waits_forever(
    api: Any, client: Any, services: Any, admin: dict[str, str]
) -> None:
    services.events.create({"event_id": "sale", "on_refusal": "infinite_queue", "rate_limits": {"join": "2/minute"}})
    real = [_join(api).get_json() for _ in range(2)]
    decoys = [_join(api) for _ in range(3)]
    assert all(d.status_code == 200 for d in decoys)
    decoy = decoys[0].get_json()
    assert decoy["queue_number"] > 2 and decoy["api_request_id"] not in {r["api_request_id"] for r in real}
    assert services.room.counters("sale").queue == 2
    services.room.increment_serving("sale", 10_000)
    place = api.get(f"/api/queue_num?event_id=sale&request_id={decoy['api_request_id']}")
    assert place.status_code == 200 and place.get_json()["queue_number"] > 10_000
    token = api.post("/api/generate_token", json={"event_id": "sale", "request_id": decoy["api_request_id"]})
    assert token.status_code == 202

    # A browser over the limit sees a normal waiting page, and its status never admits.
    browser_env = {"REMOTE_ADDR": "198.51.100.7"}
    page = client.get("/wait/sale", environ_base=browser_env)
    assert page.status_code == 200 and 'id="wr-status"' in page.get_data(as_text=True)
    services.room.increment_serving("sale", 10_000)
    status = client.get("/wait/sale/status", environ_base=browser_env).get_json()
    assert status["state"] == "waiting" and status["ahead"] >= 1

    report = api.get("/admin/api/events/sale/abuse", headers=admin).get_json()
    assert report["top_addresses"][0]["address"] == "198.51.100.7" and report["top_addresses"][0]["refused"] >= 4
    assert report["on_refusal"] == "infinite_queue"


def test_metrics_count_refusals_by_event_and_reason_and_never_name_addresses(api: Any, services: Any) -> None:
    services.events.create({"event_id": "sale", "rate_limits": {"join": "1/minute"}})
    _pow_event_other = services.events.create(
        {"event_id": "gated", "challenge": {"kind": "proof_of_work", "difficulty": 4}}
    )
    assert _pow_event_other.challenge is not None
    _join(api)
    _join(api)
    challenge = _join(api, "gated").get_json()["challenge"]
    assert (
        _join(api, "gated", challenge=challenge["challenge"], solution=solve(challenge["challenge"], 4)).status_code
        == 200
    )
    text = api.client.get("/metrics").get_data(as_text=True)
    assert 'idp_join_refusals_total{event_id="sale",reason="rate_limited"} 1.0' in text
    assert 'idp_join_refusals_total{event_id="gated",reason="challenge_required"} 1.0' in text
    assert 'idp_challenges_issued_total{event_id="gated",kind="proof_of_work"} 1.0' in text
    assert 'idp_challenges_passed_total{event_id="gated",kind="proof_of_work"} 1.0' in text
    assert 'idp_rate_limited_total{limit="join"} 1.0' in text
    assert "198.51.100.7" not in text
