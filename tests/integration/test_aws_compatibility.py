"""What a client written for "Virtual Waiting Room on AWS" can branch on: the README's table "Where
answers differ" is held here, row by row, so the guide stays true."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import all_backends

pytestmark = pytest.mark.integration

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def _json(response: Any) -> Any:
    return response.get_json()


@all_backends
def test_public_answers_an_aws_page_reads(client: Any, services: Any, clock: Any) -> None:
    services.events.create({"event_id": "sale", "queue_position_expiry_period": 100})
    origin = {"Origin": "https://tickets.example.com"}
    joined = client.post("/api/assign_queue_num", json={"event_id": "sale"}, headers=origin)
    # The AWS field, plus the place itself: it exists when the join answers.
    assert joined.status_code == 200
    assert set(_json(joined)) == {"api_request_id", "queue_number", "entry_time", "event_id"}
    rid = _json(joined)["api_request_id"]
    assert client.post("/api/assign_queue_num", json={"event_id": "nope"}).status_code == 404

    place = client.get(f"/api/queue_num?event_id=sale&request_id={rid}", headers=origin)
    assert place.status_code == 200 and _json(place)["status"] == 1 and _json(place)["queue_number"] == 1
    unknown = client.get(f"/api/queue_num?event_id=sale&request_id={UNKNOWN}")
    assert unknown.status_code == 404 and _json(unknown)["error"] == "request_not_found"

    serving = _json(client.get("/api/serving_num?event_id=sale"))["serving_counter"]
    assert serving == 0 and isinstance(serving, int)
    assert _json(client.get("/api/waiting_num?event_id=sale")) == {"waiting_num": 1}

    key = client.get("/api/public_key?event_id=sale")
    assert {"kty", "alg", "kid", "n", "e"} <= set(_json(key)) and _json(key)["use"] == "sig"
    assert client.get("/api/public_key?event_id=nope").status_code == 404

    not_yet = client.post("/api/generate_token", json={"event_id": "sale", "request_id": rid}, headers=origin)
    assert not_yet.status_code == 202
    assert client.get(f"/api/queue_pos_expiry?event_id=sale&request_id={rid}").status_code == 202
    assert client.post("/api/generate_token", json={"event_id": "sale", "request_id": UNKNOWN}).status_code == 404

    services.room.increment_serving("sale", 1)
    assert _json(client.get(f"/api/queue_pos_expiry?event_id=sale&request_id={rid}")) == {"expires_in": 100}
    tokens = client.post("/api/generate_token", json={"event_id": "sale", "request_id": rid}, headers=origin)
    assert tokens.status_code == 200
    assert set(_json(tokens)) == {"access_token", "refresh_token", "id_token", "token_type", "expires_in"}
    clock.advance(3601)
    expired = client.post("/api/generate_token", json={"event_id": "sale", "request_id": rid})
    assert expired.status_code == 410 and _json(expired)["error"] == "token_expired"

    # Every answer above went out with CORS "*", the errors too, as AWS's API answers.
    for response in (joined, place, not_yet, tokens):
        assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert set(_json(unknown)) == {"error", "message"}


def test_expiry_off_is_reported_after_waiting_and_expired(client: Any, services: Any) -> None:
    services.events.create({"event_id": "open", "enable_queue_position_expiry": False})
    rid = _json(client.post("/api/assign_queue_num", json={"event_id": "open"}))["api_request_id"]
    waiting = client.get(f"/api/queue_pos_expiry?event_id=open&request_id={rid}")
    assert waiting.status_code == 202 and _json(waiting)["error"] == "not_served_yet"
    services.room.increment_serving("open", 1)
    off = client.get(f"/api/queue_pos_expiry?event_id=open&request_id={rid}")
    assert off.status_code == 202 and _json(off)["error"] == "expiry_disabled"
