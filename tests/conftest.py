"""Shared fixtures: real services for integration tests, and the rule that CI never skips them.

Backends: ``sqlite`` (a file per test), ``postgres`` (a database per test session, tables emptied after
each test) and ``redis`` (flushed before and after each test; the SQL side is SQLite). The Redis is a
``redis-server`` the test session starts for itself on a free loopback port, unless
``IDP_TEST_REDIS_URL`` names a database to use instead (each pytest-xdist worker then takes the next one).
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from idp.clock import FrozenClock
from idp.config import Settings

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_ADMIN_URL = os.environ.get("IDP_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
REDIS_TEST_URL = os.environ.get("IDP_TEST_REDIS_URL", "")


def _per_worker_redis_url(url: str) -> str:
    """Give each pytest-xdist worker a Redis database of its own: the base database plus the worker's number."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    base, _, db = url.rpartition("/")
    return f"{base}/{(int(db or 0) + int(worker[2:])) % 16}"


REDIS_TEST_URL = _per_worker_redis_url(REDIS_TEST_URL) if REDIS_TEST_URL else ""
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"
BACKENDS = ("sqlite", "postgres", "redis")
# The queue store's own suites also run on a real Redis Cluster and behind Sentinel (tests/own_services.py).
QUEUE_BACKENDS = (*BACKENDS, "redis-cluster", "redis-sentinel")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under CI, refuse to test anything but the checkout itself, run by the checkout's own ``.venv``."""
    if not IN_CI:
        return
    import idp

    repo = Path(__file__).resolve().parents[1]
    problems = []
    if Path(sys.prefix).resolve() != (repo / ".venv").resolve():
        problems.append(f"the interpreter is {sys.executable}, not the checkout's .venv")
    if Path(idp.__file__).resolve().parent != repo / "idp":
        problems.append(f"idp was imported from {idp.__file__}, not from {repo / 'idp'}")
    if problems:
        pytest.exit("; ".join(problems) + " (run `make test`)", returncode=3)


def service_missing(what: str, exc: BaseException) -> None:
    """Skip locally, fail under CI: a missing service in CI is a broken run, not a skipped test."""
    message = f"{what} is not reachable: {exc}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@contextlib.contextmanager
def new_pg_database(prefix: str = "idp_test") -> Iterator[str]:
    """A new, empty PostgreSQL database on the shared server, dropped afterwards; yields its URL."""
    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure to reach PostgreSQL is reported the same way
        admin.dispose()
        service_missing("PostgreSQL", exc)
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"), {"name": name}
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated to head."""
    from idp.storage.db import upgrade_database

    with new_pg_database() as url:
        upgrade_database(url)
        yield url


def _truncate_pg(url: str) -> None:
    from sqlalchemy import create_engine, text

    from idp.storage.models import Base

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def redis_available() -> Iterator[str]:
    """A Redis database of this test session's own: a private ``redis-server``, or ``IDP_TEST_REDIS_URL``."""
    import redis

    server = None
    url = REDIS_TEST_URL
    if not url:
        from tests.own_services import RedisServer

        try:
            server = RedisServer().start()
        except RuntimeError as exc:
            service_missing("redis-server", exc)
        assert server is not None
        url = server.url
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        if server is not None:
            server.stop()
        service_missing("Redis", exc)
    finally:
        client.close()
    yield url
    if server is not None:
        server.stop()


def _flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Any]:
    """A real three-master Redis Cluster of this test session, on free loopback ports."""
    from tests.own_services import start_redis_cluster

    cluster = start_redis_cluster(3)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[Any]:
    """A real Redis primary, replica and three sentinels of this test session, on free loopback ports."""
    from tests.own_services import SentinelSet

    sentinels = SentinelSet()
    yield sentinels
    sentinels.stop()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(1_800_000_000)


@pytest.fixture
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings for the backend named by ``request.param`` (default sqlite), with a migrated database."""
    from tests.migrated import migrate

    backend = getattr(request, "param", "sqlite")
    sqlite_url = f"sqlite:///{tmp_path / 'idp.sqlite3'}"
    common: dict[str, Any] = {
        "env": "test",
        "secret_key": TEST_SECRET,
        "issuer": "http://127.0.0.1:8000",
        "cache_ttl_ms": 0,
        "session_cache_seconds": 0,
        "instance_path": str(tmp_path),
        "log_level": "WARNING",
    }
    if backend == "postgres":
        url = request.getfixturevalue("pg_database")
        _truncate_pg(url)
        yield Settings(database_url=url, **common)
        _truncate_pg(url)
    elif backend == "redis":
        redis_url = request.getfixturevalue("redis_available")
        _flush_redis(redis_url)
        migrate(sqlite_url)
        yield Settings(database_url=sqlite_url, redis_url=redis_url, **common)
        _flush_redis(redis_url)
    elif backend in ("redis-cluster", "redis-sentinel"):
        topology = request.getfixturevalue(backend.replace("-", "_"))
        topology.flush()
        migrate(sqlite_url)
        # Behind Sentinel a join is acknowledged once the replica holds it (the failover-safe set-up).
        wait = 1 if backend == "redis-sentinel" else 0
        yield Settings(database_url=sqlite_url, redis_url=topology.url, redis_wait_replicas=wait, **common)
        topology.flush()
    else:
        migrate(sqlite_url)
        yield Settings(database_url=sqlite_url, **common)


@pytest.fixture
def app(backend_settings: Settings, clock: FrozenClock) -> Iterator[Any]:
    from idp.app import create_app

    application = create_app(backend_settings, clock=clock)
    yield application
    application.extensions["idp"].close()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def services(app: Any) -> Any:
    return app.extensions["idp"]


@pytest.fixture
def event(services: Any) -> Any:
    return services.events.create({"event_id": "sale", "name": "Big sale"})


all_backends = pytest.mark.parametrize("backend_settings", BACKENDS, indirect=True)
