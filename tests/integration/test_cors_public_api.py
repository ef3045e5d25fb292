"""CORS on the public queue API: preflights, every answer (fast path, Flask, errors), per-event origins.

A waiting page written for "Virtual Waiting Room on AWS" runs on its own origin and calls the API with
``fetch``; AWS answers every preflight with ``*``, its methods and headers, and puts
``Access-Control-Allow-Origin: *`` on every answer. The admin API stays same-origin.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest

from idp.config import Settings
from tests.conftest import all_backends

pytestmark = pytest.mark.integration

SITE = "https://tickets.example.com"
OTHER = "https://evil.example.net"
AWS_HEADERS = ("Content-Type", "X-Amz-Date", "Authorization", "X-Api-Key", "X-Amz-Security-Token")


def _preflight(client: Any, path: str, origin: str, method: str = "POST", headers: str = "content-type") -> Any:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


def _listed(value: str | None) -> set[str]:
    return {item.strip().lower() for item in (value or "").split(",") if item.strip()}


@all_backends
def test_preflight_of_a_join_allows_any_origin_by_default(client: Any, event: Any) -> None:
    response = _preflight(client, "/api/assign_queue_num", SITE, headers="content-type,idempotency-key")
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert {"get", "post", "options"} <= _listed(response.headers["Access-Control-Allow-Methods"])
    allowed = _listed(response.headers["Access-Control-Allow-Headers"])
    assert {h.lower() for h in AWS_HEADERS} | {"idempotency-key"} <= allowed
    assert int(response.headers["Access-Control-Max-Age"]) > 0
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert response.get_data() == b""


@all_backends
def test_every_public_answer_carries_the_allowed_origin(client: Any, services: Any, event: Any) -> None:
    origin = {"Origin": SITE}
    joined = client.post("/api/assign_queue_num", data=json.dumps({"event_id": "sale"}), headers=origin)
    request_id = joined.get_json()["api_request_id"]
    answers = {
        "join (fast path)": joined,
        "join (Flask, idempotent)": client.post(
            "/api/assign_queue_num",
            data=json.dumps({"event_id": "sale"}),
            headers={**origin, "Idempotency-Key": "k-1"},
        ),
        "serving_num": client.get("/api/serving_num?event_id=sale", headers=origin),
        "waiting_num": client.get("/api/waiting_num?event_id=sale", headers=origin),
        "queue_num": client.get(f"/api/queue_num?event_id=sale&request_id={request_id}", headers=origin),
        "queue_pos_expiry 202": client.get(
            f"/api/queue_pos_expiry?event_id=sale&request_id={request_id}", headers=origin
        ),
        "generate_token 202": client.post(
            "/api/generate_token", data=json.dumps({"event_id": "sale", "request_id": request_id}), headers=origin
        ),
        "public_key": client.get("/api/public_key?event_id=sale", headers=origin),
        "404 unknown event": client.get("/api/serving_num?event_id=nope", headers=origin),
        "404 unknown request": client.get("/api/queue_num?event_id=sale&request_id=x", headers=origin),
        "400 malformed": client.post("/api/assign_queue_num", data=b"{", headers=origin),
        "405": client.put("/api/serving_num?event_id=sale", headers=origin),
        "404 no such path": client.get("/api/nothing_here", headers=origin),
    }
    services.room.increment_serving("sale", 1)
    answers["generate_token 200"] = client.post(
        "/api/generate_token", data=json.dumps({"event_id": "sale", "request_id": request_id}), headers=origin
    )
    statuses = {name: r.status_code for name, r in answers.items()}
    assert statuses["generate_token 202"] == 202 and statuses["generate_token 200"] == 200, statuses
    assert statuses["404 unknown event"] == 404 and statuses["400 malformed"] == 400, statuses
    for name, response in answers.items():
        assert response.headers.get("Access-Control-Allow-Origin") == "*", name
        assert "Access-Control-Allow-Credentials" not in response.headers, name
        assert "retry-after" in _listed(response.headers.get("Access-Control-Expose-Headers")), name


def _restricted_app(backend_settings: Settings, clock: Any, origins: tuple[str, ...]) -> Iterator[Any]:
    from idp.app import create_app

    application = create_app(dataclasses.replace(backend_settings, cors_origins=origins), clock=clock)
    yield application
    application.extensions["idp"].close()


@pytest.fixture
def restricted(backend_settings: Settings, clock: Any) -> Iterator[Any]:
    yield from _restricted_app(backend_settings, clock, (SITE,))


def test_a_listed_origin_is_echoed_with_vary_and_others_get_nothing(restricted: Any) -> None:
    client = restricted.test_client()
    restricted.extensions["idp"].events.create({"event_id": "sale"})
    for path in ("/api/serving_num?event_id=sale", "/api/waiting_num?event_id=sale", "/api/serving_num?event_id=x"):
        good = client.get(path, headers={"Origin": SITE})
        assert good.headers["Access-Control-Allow-Origin"] == SITE
        assert "Origin" in good.headers["Vary"]
        bad = client.get(path, headers={"Origin": OTHER})
        assert "Access-Control-Allow-Origin" not in bad.headers
        assert "Origin" in bad.headers["Vary"]
    # Exact matches only: another scheme, port or a suffix is another origin.
    for near in ("http://tickets.example.com", "https://tickets.example.com:8443", "https://tickets.example.com.evil"):
        assert "Access-Control-Allow-Origin" not in client.get(path, headers={"Origin": near}).headers
    refused = _preflight(client, "/api/assign_queue_num", OTHER)
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert _preflight(client, "/api/assign_queue_num", SITE).headers["Access-Control-Allow-Origin"] == SITE


def test_an_event_list_replaces_the_default_for_that_event(restricted: Any) -> None:
    client = restricted.test_client()
    events = restricted.extensions["idp"].events
    events.create({"event_id": "sale"})
    events.create({"event_id": "drop", "cors_origins": ["https://drop.example.org"]})
    drop = "https://drop.example.org"
    join = client.post("/api/assign_queue_num", data=json.dumps({"event_id": "drop"}), headers={"Origin": drop})
    assert join.status_code == 200 and join.headers["Access-Control-Allow-Origin"] == drop
    serving = client.get("/api/serving_num?event_id=drop", headers={"Origin": SITE})
    assert "Access-Control-Allow-Origin" not in serving.headers
    # The sale keeps IDP_CORS_ORIGINS.
    assert (
        "Access-Control-Allow-Origin"
        not in client.get("/api/serving_num?event_id=sale", headers={"Origin": drop}).headers
    )
    # A join's preflight cannot name its event (no body): an origin of any event passes it.
    assert _preflight(client, "/api/assign_queue_num", drop).headers["Access-Control-Allow-Origin"] == drop
    assert "Access-Control-Allow-Origin" not in _preflight(client, "/api/assign_queue_num", OTHER).headers


def test_event_cors_origins_are_validated(client: Any, services: Any) -> None:
    from idp.errors import ValidationError

    for bad in (["https://a.example/path"], ["ftp://a.example"], "https://a.example", ["*", SITE], [5]):
        with pytest.raises(ValidationError):
            services.events.create({"event_id": "e1", "cors_origins": bad})
    event = services.events.create({"event_id": "e2", "cors_origins": ["HTTPS://Shop.Example.com:443"]})
    assert event.cors_origins == ["https://shop.example.com"]
    assert services.events.update("e2", {"cors_origins": None}).cors_origins is None


def test_idp_cors_origins_setting() -> None:
    from idp.config import ConfigError

    assert Settings.from_env({}).cors_origins == ("*",)
    assert Settings.from_env({"IDP_CORS_ORIGINS": f"{SITE}, http://127.0.0.1:8080"}).cors_origins == (
        SITE,
        "http://127.0.0.1:8080",
    )
    assert Settings.from_env({"IDP_CORS_ORIGINS": ""}).cors_origins == ()
    for bad in ("https://a.example/x", "* https://a.example", "javascript:alert(1)"):
        with pytest.raises(ConfigError):
            Settings.from_env({"IDP_CORS_ORIGINS": bad})


def test_the_admin_api_stays_same_origin(client: Any, event: Any) -> None:
    preflight = _preflight(client, "/admin/api/increment_serving_counter", SITE, headers="authorization,content-type")
    assert "Access-Control-Allow-Origin" not in preflight.headers
    answer = client.get("/admin/api/events", headers={"Origin": SITE})
    assert answer.status_code == 401
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_preflights_and_cors_headers_hold_to_openapi(client: Any, services: Any, event: Any) -> None:
    from tests.openapi_check import ValidatingClient

    api = ValidatingClient(client)
    make = {
        "client_id": "spa",
        "event_id": "sale",
        "redirect_uris": [f"{SITE}/cb"],
        "token_endpoint_auth_method": "none",
    }
    services.clients.create(make)
    for path in (
        "/api/assign_queue_num",
        "/api/serving_num",
        "/api/generate_token",
        "/token",
        "/userinfo",
        "/jwks.json",
    ):
        answer = api.open(path, "OPTIONS", headers={"Origin": SITE, "Access-Control-Request-Method": "POST"})
        assert answer.status_code == 204, path
    assert api.get("/api/serving_num?event_id=sale", headers={"Origin": SITE}).status_code == 200


@pytest.mark.parametrize(
    "call",
    [
        ("counters_record", "GET", "/api/serving_num?event_id=sale", None, {}),  # the fast path
        ("serving", "GET", "/api/serving_num?event_id=sale&event_id=sale", None, {}),  # Flask
        ("enter", "POST", "/api/assign_queue_num", b'{"event_id": "sale"}', {}),  # the fast path
        ("enter", "POST", "/api/assign_queue_num", b'{"event_id": "sale"}', {"Idempotency-Key": "k"}),  # Flask
    ],
)
@pytest.mark.parametrize("failure", ["outage", "defect"])
def test_outages_and_defects_still_carry_cors(
    client: Any, services: Any, event: Any, monkeypatch: pytest.MonkeyPatch, call: Any, failure: str
) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    name, method, path, body, headers = call
    exc: BaseException = RedisConnectionError("Connection refused") if failure == "outage" else KeyError("x")

    def fail(*_args: object, **_kwargs: object) -> Any:
        raise exc

    monkeypatch.setattr(services.room, name, fail)
    answer = client.open(path, method=method, data=body, headers={"Origin": SITE, **headers})
    assert answer.status_code == (503 if failure == "outage" else 500)
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert "retry-after" in _listed(answer.headers["Access-Control-Expose-Headers"])


def test_cors_headers_survive_a_failing_settings_read(
    client: Any, services: Any, event: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    def broken(*_args: object, **_kwargs: object) -> Any:
        raise OperationalError("SELECT * FROM events", {}, Exception("no such table: events"))

    monkeypatch.setattr(services.events, "get", broken)
    monkeypatch.setattr(services.events, "cors_origin_lists", broken)
    for path in ("/api/serving_num?event_id=sale", "/api/serving_num?event_id=sale&event_id=sale"):
        answer = client.get(path, headers={"Origin": SITE})
        assert answer.status_code == 500  # a defect, answered as JSON, with IDP_CORS_ORIGINS applied
        assert answer.headers["Access-Control-Allow-Origin"] == "*"
