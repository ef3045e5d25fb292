"""The WSGI fast path answers exactly as the Flask views do, and hands everything else to Flask."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import all_backends

pytestmark = pytest.mark.integration

SHARED_HEADERS = ("Content-Type", "Cache-Control", "X-Content-Type-Options", "Referrer-Policy")


def _shape(response: Any) -> tuple[int, dict[str, str], dict[str, Any]]:
    return response.status_code, {h: response.headers.get(h) for h in SHARED_HEADERS}, response.get_json()


@all_backends
@pytest.mark.parametrize("path,field", [("/api/serving_num", "serving_counter"), ("/api/waiting_num", "waiting_num")])
def test_counter_answers_match_the_flask_view(client: Any, services: Any, event: Any, path: str, field: str) -> None:
    for _ in range(3):
        services.room.join(event.event_id)
    services.room.increment_serving(event.event_id, 1)
    fast = client.get(f"{path}?event_id={event.event_id}")
    # A second, repeated parameter is not the fast path's to judge: Flask answers (first value wins).
    slow = client.get(f"{path}?event_id={event.event_id}&event_id=other")
    assert _shape(fast) == _shape(slow)
    assert fast.get_json() == {field: 1 if field == "serving_counter" else 3}
    assert fast.headers["Cache-Control"] == "public, max-age=1"
    assert len(fast.headers["X-Request-Id"]) == 32


@all_backends
def test_join_answers_match_the_flask_view(client: Any, event: Any) -> None:
    fast = client.post("/api/assign_queue_num", data=json.dumps({"event_id": event.event_id}))
    # An Idempotency-Key sends the join through Flask.
    slow = client.post(
        "/api/assign_queue_num", data=json.dumps({"event_id": event.event_id}), headers={"Idempotency-Key": "k-1"}
    )
    assert fast.status_code == slow.status_code == 200
    assert set(fast.get_json()) == set(slow.get_json()) == {"api_request_id", "queue_number", "entry_time", "event_id"}
    assert [fast.get_json()["queue_number"], slow.get_json()["queue_number"]] == [1, 2]
    assert fast.headers["Cache-Control"] == slow.headers["Cache-Control"] == "private, no-store"


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 2000 + b"]" * 2000,  # small enough for the fast path, deeper than the JSON parser goes
        b'{"event_id": "sale"',
        b'{"event_id": 5}',
        b'["sale"]',
        b"\xff\xfe",
        b'{"event_id": "no such event"}',
        b'{"event_id": "unknown-event"}',
    ],
)
def test_malformed_joins_fall_through_to_a_json_4xx(client: Any, event: Any, body: bytes) -> None:
    response = client.post("/api/assign_queue_num", data=body)
    assert 400 <= response.status_code < 500
    assert set(response.get_json()) == {"error", "message"}


@pytest.mark.parametrize(
    "query",
    ["", "event_id=", "event_id=%00", "event_id=sale;x", "other=sale", "event_id=unknown-event", "event_id=a+b"],
)
def test_malformed_counter_queries_fall_through_to_a_json_4xx(client: Any, event: Any, query: str) -> None:
    response = client.get(f"/api/serving_num?{query}")
    assert 400 <= response.status_code < 500
    assert set(response.get_json()) == {"error", "message"}


def test_fast_answers_are_counted_in_metrics(client: Any, event: Any) -> None:
    client.get(f"/api/serving_num?event_id={event.event_id}")
    client.post("/api/assign_queue_num", data=json.dumps({"event_id": event.event_id}))
    text = client.get("/metrics").get_data(as_text=True)
    assert 'endpoint="/api/serving_num",method="GET",status="200"' in text
    assert 'endpoint="/api/assign_queue_num",method="POST",status="200"' in text


def test_a_kept_counter_answer_lives_exactly_as_long_as_the_cached_counters(tmp_path: Any) -> None:
    import dataclasses

    from idp.app import create_app
    from idp.config import Settings
    from idp.storage.db import upgrade_database
    from tests.conftest import TEST_SECRET

    url = f"sqlite:///{tmp_path / 'idp.sqlite3'}"
    upgrade_database(url)
    settings = Settings(
        env="test", secret_key=TEST_SECRET, database_url=url, instance_path=str(tmp_path), log_level="WARNING"
    )
    app = create_app(dataclasses.replace(settings, cache_ttl_ms=60_000))
    try:
        svc = app.extensions["idp"]
        svc.events.create({"event_id": "kept", "name": "Kept"})
        client = app.test_client()

        def serving() -> Any:
            return client.get("/api/serving_num?event_id=kept").get_json()["serving_counter"]

        assert serving() == 0
        svc.engine.increment_serving("kept", 2)  # another process: this one's counters stay cached
        assert serving() == 0
        svc.room.invalidate("kept")  # what an increment made in this process does
        assert serving() == 2
        svc.engine.increment_serving("kept", 1)
        svc.room.counters("kept", fresh=True)  # the counters are read again: the kept answer goes with them
        assert serving() == 3
    finally:
        app.extensions["idp"].close()
