"""A backing service that cannot be reached gives 503 with Retry-After and a JSON error, never a 500."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from idp.app import create_app
from idp.config import Settings
from idp.storage.db import upgrade_database
from tests.conftest import TEST_SECRET

pytestmark = pytest.mark.integration

UNKNOWN_RID = "00000000-0000-4000-8000-000000000000"
# Every public endpoint that needs a backing service, with a well-formed request.
REQUESTS = [
    ("POST", "/api/assign_queue_num", {}, {"event_id": "sale"}),
    ("GET", "/api/queue_num", {"event_id": "sale", "request_id": UNKNOWN_RID}, None),
    ("GET", "/api/serving_num", {"event_id": "sale"}, None),
    ("GET", "/api/waiting_num", {"event_id": "sale"}, None),
    ("GET", "/api/queue_pos_expiry", {"event_id": "sale", "request_id": UNKNOWN_RID}, None),
    ("POST", "/api/generate_token", {}, {"event_id": "sale", "request_id": UNKNOWN_RID}),
]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _settings(tmp_path: Path, **values: object) -> Settings:
    base: dict[str, object] = {
        "env": "test",
        "secret_key": TEST_SECRET,
        "instance_path": str(tmp_path),
        "cache_ttl_ms": 0,
        "log_level": "CRITICAL",
        "retry_after_seconds": 7,
    }
    base.update(values)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture
def redis_down_client(tmp_path):
    url = f"sqlite:///{tmp_path / 'idp.sqlite3'}"
    upgrade_database(url)
    app = create_app(_settings(tmp_path, database_url=url, redis_url=f"redis://127.0.0.1:{_closed_port()}/0"))
    app.extensions["idp"].events.create({"event_id": "sale", "name": "Sale"})
    yield app.test_client()
    app.extensions["idp"].close()


@pytest.fixture
def postgres_down_client(tmp_path):
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{_closed_port()}/idp"
    app = create_app(_settings(tmp_path, database_url=url))
    yield app.test_client()
    app.extensions["idp"].close()


def _assert_unavailable(response, what: str) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.headers["Retry-After"] == "7"
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body == {"error": "service_unavailable", "message": f"The {what} is unavailable."}


@pytest.mark.parametrize(("method", "path", "args", "body"), REQUESTS, ids=[r[1] for r in REQUESTS])
def test_redis_down_gives_503_with_retry_after(redis_down_client, method, path, args, body):
    response = redis_down_client.open(path, method=method, query_string=args, json=body)
    _assert_unavailable(response, "queue store")


@pytest.mark.parametrize(("method", "path", "args", "body"), REQUESTS, ids=[r[1] for r in REQUESTS])
def test_postgres_down_gives_503_with_retry_after(postgres_down_client, method, path, args, body):
    response = postgres_down_client.open(path, method=method, query_string=args, json=body)
    _assert_unavailable(response, "database")


def test_readyz_names_the_unreachable_queue_store(redis_down_client):
    response = redis_down_client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert response.get_json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "queue_store": "unavailable"},
    }
    # Liveness does not depend on backing services.
    assert redis_down_client.get("/healthz").status_code == 200


def test_readyz_names_the_unreachable_database(postgres_down_client):
    response = postgres_down_client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert response.get_json()["checks"]["database"] == "unavailable"
    assert postgres_down_client.get("/healthz").status_code == 200
