"""Every failure is answered the same way whichever path meets it: the WSGI fast path or a Flask view.

The fast path answers ``GET /api/serving_num`` and a plain ``POST /api/assign_queue_num``; a repeated
parameter or an ``Idempotency-Key`` sends the same call through Flask. Both must give the same JSON for a
defect (a 500 whose traceback is logged) and for an unavailable store (a 503 with ``Retry-After``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from idp.logging import JsonFormatter
from idp.storage.db import make_engine

pytestmark = pytest.mark.integration

FAST_SERVING = ("GET", "/api/serving_num?event_id=sale", None, {"X-Request-Id": "fast-1"})
FLASK_SERVING = ("GET", "/api/serving_num?event_id=sale&event_id=sale", None, {"X-Request-Id": "flask-1"})
FAST_JOIN = ("POST", "/api/assign_queue_num", b'{"event_id": "sale"}', {"X-Request-Id": "fast-2"})
FLASK_JOIN = (
    "POST",
    "/api/assign_queue_num",
    b'{"event_id": "sale"}',
    {"Idempotency-Key": "k-1", "X-Request-Id": "flask-2"},
)
PAIRS = [
    pytest.param(("counters_record", FAST_SERVING), ("serving", FLASK_SERVING), id="serving_num"),
    pytest.param(("enter", FAST_JOIN), ("enter", FLASK_JOIN), id="assign_queue_num"),
]
COMPARED_HEADERS = ("Content-Type", "Cache-Control", "Retry-After", "X-Content-Type-Options", "Referrer-Policy")


def _raiser(exc: BaseException) -> Callable[..., Any]:
    def fail(*_args: object, **_kwargs: object) -> Any:
        raise exc

    return fail


def _ask(client: Any, call: tuple[str, str, bytes | None, dict[str, str]]) -> Any:
    method, path, body, headers = call
    return client.open(path, method=method, data=body, headers=headers)


def _shape(response: Any) -> tuple[int, dict[str, str | None], bytes]:
    return (
        response.status_code,
        {name: response.headers.get(name) for name in COMPARED_HEADERS},
        response.get_data(),
    )


def _fail_on_both(monkeypatch: pytest.MonkeyPatch, services: Any, methods: tuple[str, str], exc: BaseException) -> None:
    for name in methods:
        monkeypatch.setattr(services.room, name, _raiser(exc))


@pytest.mark.parametrize(("fast", "slow"), PAIRS)
def test_a_defect_gives_the_same_json_500_on_both_paths_and_logs_its_traceback(
    client: Any, services: Any, event: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any, fast: Any, slow: Any
) -> None:
    _fail_on_both(monkeypatch, services, (fast[0], slow[0]), KeyError("no-such-key"))
    with caplog.at_level(logging.ERROR, logger="idp.http"):
        fast_answer = _ask(client, fast[1])
        slow_answer = _ask(client, slow[1])
    assert _shape(fast_answer) == _shape(slow_answer)
    assert fast_answer.status_code == 500
    assert fast_answer.get_json() == {"error": "server_error", "message": "The request could not be completed."}
    assert fast_answer.headers["Cache-Control"] == "private, no-store"
    assert fast_answer.headers["Content-Type"] == "application/json"
    assert [fast_answer.headers["X-Request-Id"], slow_answer.headers["X-Request-Id"]] == [
        fast[1][3]["X-Request-Id"],
        slow[1][3]["X-Request-Id"],
    ]
    records = [r for r in caplog.records if r.name == "idp.http" and r.levelno == logging.ERROR]
    assert [r.__dict__.get("request_id") for r in records] == [
        fast[1][3]["X-Request-Id"],
        slow[1][3]["X-Request-Id"],
    ]
    for record in records:
        line = json.loads(JsonFormatter().format(record))
        assert line["exc_type"] == "KeyError"
        assert line["traceback"].startswith("Traceback (most recent call last):")
        assert "in fail" in line["traceback"]
        assert line["traceback"].rstrip().endswith("KeyError: 'no-such-key'")


@pytest.mark.parametrize(
    ("exc", "what"),
    [
        (RedisConnectionError("Connection refused"), "queue store"),
        (RedisTimeoutError("Timeout reading from socket"), "queue store"),
        (OperationalError("SELECT 1", {}, Exception("could not connect to server")), "database"),
    ],
    ids=["redis-connection", "redis-timeout", "database"],
)
@pytest.mark.parametrize(("fast", "slow"), PAIRS)
def test_an_unavailable_store_gives_503_with_retry_after_on_both_paths(
    client: Any,
    services: Any,
    event: Any,
    monkeypatch: pytest.MonkeyPatch,
    fast: Any,
    slow: Any,
    exc: BaseException,
    what: str,
) -> None:
    _fail_on_both(monkeypatch, services, (fast[0], slow[0]), exc)
    fast_answer = _ask(client, fast[1])
    slow_answer = _ask(client, slow[1])
    assert _shape(fast_answer) == _shape(slow_answer)
    assert fast_answer.status_code == 503
    assert fast_answer.headers["Retry-After"] == str(services.settings.retry_after_seconds)
    assert fast_answer.get_json() == {"error": "service_unavailable", "message": f"The {what} is unavailable."}


def test_a_missing_table_is_a_defect_not_an_outage(
    client: Any, services: Any, event: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = OperationalError("SELECT * FROM events", {}, Exception("no such table: events"))
    _fail_on_both(monkeypatch, services, ("counters_record", "serving"), missing)
    assert _ask(client, FAST_SERVING).status_code == 500
    assert _ask(client, FLASK_SERVING).status_code == 500


def test_database_errors_never_show_the_values_bound_to_a_statement(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    try:
        with pytest.raises(OperationalError) as caught, engine.connect() as conn:
            conn.execute(text("SELECT code FROM codes WHERE code = :code"), {"code": "secret-code-value"})
    finally:
        engine.dispose()
    assert "no such table" in str(caught.value)
    assert "secret-code-value" not in str(caught.value)
    record = logging.LogRecord("idp", logging.ERROR, "", 0, "failed", (), (OperationalError, caught.value, None))
    assert "secret-code-value" not in JsonFormatter().format(record)
