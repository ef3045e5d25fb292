"""The public, token, OIDC and operational endpoints answer as openapi.yaml says, on success and on error."""

from __future__ import annotations

from typing import Any

import pytest

from tests.admin_support import bearer
from tests.openapi_check import ValidatingClient

pytestmark = pytest.mark.integration

UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def api(client: Any) -> ValidatingClient:
    return ValidatingClient(client)


def test_queue_endpoints(api: ValidatingClient, services: Any, clock: Any, event: Any) -> None:
    services.events.update("sale", {"queue_position_expiry_period": 60})
    first = api.post("/api/assign_queue_num", json={"event_id": "sale"}).get_json()["api_request_id"]
    second = api.post(
        "/api/assign_queue_num", json={"event_id": "sale"}, headers={"Idempotency-Key": "k-1"}
    ).get_json()["api_request_id"]
    assert api.post("/api/assign_queue_num", json={"event_id": "nope"}).status_code == 404
    assert api.post("/api/assign_queue_num", data=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    assert api.get(f"/api/queue_num?event_id=sale&request_id={first}").status_code == 200
    assert api.get(f"/api/queue_num?event_id=sale&request_id={UNKNOWN}").status_code == 404
    assert api.get("/api/queue_num?event_id=sale&request_id=nope").status_code == 400
    assert api.get("/api/serving_num?event_id=sale").status_code == 200
    assert api.get("/api/serving_num").status_code == 400
    assert api.get("/api/waiting_num?event_id=sale").status_code == 200
    assert api.get("/api/waiting_num?event_id=nope").status_code == 404
    assert api.get(f"/api/queue_pos_expiry?event_id=sale&request_id={first}").status_code == 202
    services.room.increment_serving("sale", 1)
    assert api.get(f"/api/queue_pos_expiry?event_id=sale&request_id={first}").get_json() == {"expires_in": 60}
    clock.advance(61)
    assert api.get(f"/api/queue_pos_expiry?event_id=sale&request_id={first}").status_code == 410
    assert api.post("/api/generate_token", json={"event_id": "sale", "request_id": first}).status_code == 410
    assert api.post("/api/generate_token", json={"event_id": "sale", "request_id": second}).status_code == 202
    assert api.delete("/api/serving_num?event_id=sale").status_code == 405
    assert api.get("/api/nope").status_code == 404


def test_token_endpoints(api: ValidatingClient, services: Any, event: Any) -> None:
    rid = api.post("/api/assign_queue_num", json={"event_id": "sale"}).get_json()["api_request_id"]
    services.room.increment_serving("sale", 1)
    tokens = api.post("/api/generate_token", json={"event_id": "sale", "request_id": rid}).get_json()
    assert api.post("/api/generate_token", json={"event_id": "sale", "request_id": UNKNOWN}).status_code == 404
    assert api.get("/api/public_key?event_id=sale").status_code == 200
    assert api.get("/api/public_key?event_id=nope").status_code == 404
    assert api.get("/jwks.json").status_code == 200
    ok = api.get("/verify?event_id=sale", headers=bearer(tokens["access_token"]))
    assert ok.status_code == 200 and ok.headers["X-Queue-Place"] and rid not in str(ok.headers)
    assert api.post("/verify?event_id=sale", headers=bearer(tokens["access_token"])).status_code == 200
    assert api.post("/verify", headers=bearer(tokens["access_token"])).status_code == 401
    assert api.get("/verify").status_code == 401
    assert api.get("/verify?event_id=other", headers=bearer(tokens["access_token"])).status_code == 401


def test_operational_endpoints(api: ValidatingClient) -> None:
    assert api.get("/healthz").status_code == 200
    assert api.get("/readyz").status_code == 200


def test_openid_connect_endpoints(api: ValidatingClient, services: Any, event: Any) -> None:
    discovery = api.get("/.well-known/openid-configuration")
    assert discovery.status_code == 200
    _client, secret = services.clients.create(
        {"client_id": "shop", "event_id": "sale", "redirect_uris": ["https://shop.example/cb"]}
    )
    bad_grant = api.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": "nope",
            "redirect_uri": "https://shop.example/cb",
            "client_id": "shop",
            "client_secret": secret,
        },
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert bad_grant.status_code == 400 and bad_grant.get_json()["error"] == "invalid_grant"
    bad_client = api.post(
        "/token",
        data={"grant_type": "authorization_code", "code": "nope", "client_id": "shop", "client_secret": "wrong"},
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert bad_client.status_code in (400, 401)
    inactive = api.post(
        "/introspect",
        data={"token": "nope", "client_id": "shop", "client_secret": secret},
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert inactive.status_code == 200 and inactive.get_json() == {"active": False}
    assert api.get("/userinfo").status_code == 401
