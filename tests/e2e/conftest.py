"""End-to-end fixtures: real gunicorn servers on loopback.

``live_server`` is a factory::

    def test_something(live_server):
        server = live_server("redis", IDP_WORKERS=3, IDP_CACHE_TTL_MS=250)
        services = server.services()              # same database and Redis as the server
        services.events.create({"event_id": "sale"})
        requests.post(server.url + "/api/assign_queue_num", json={"event_id": "sale"})

Backends: ``sqlite`` (a fresh file under the test's tmp path, SQL queue store), ``postgres`` (the session
database from ``pg_database``, emptied before and after) and ``redis`` (SQLite for the records, the queue
store on the Redis database of ``IDP_TEST_REDIS_URL``, flushed before and after). Keyword arguments are
``IDP_*`` variables for the server (they override the defaults, including ``IDP_DATABASE_URL`` and
``IDP_REDIS_URL``; pass ``IDP_REDIS_URL=""`` for none); ``migrate=False`` skips the migration (for a
database that is meant to be unreachable). Every server is stopped when the test ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_SECRET, _flush_redis, _truncate_pg
from tests.e2e.server import Server, start_server

LiveServerFactory = Callable[..., Server]


@pytest.fixture
def live_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServerFactory]:
    started: list[Server] = []
    cleanups: list[Callable[[], None]] = []

    def factory(backend: str = "sqlite", *, migrate: bool = True, **env: Any) -> Server:
        if backend not in {"sqlite", "postgres", "redis"}:
            raise ValueError(f"unknown backend {backend!r}")
        workdir = tmp_path / f"server{len(started)}"
        workdir.mkdir(parents=True, exist_ok=True)
        database_url = f"sqlite:///{workdir / 'idp.sqlite3'}"
        redis_url: str | None = None
        if backend == "postgres":
            database_url = request.getfixturevalue("pg_database")
            if migrate and "IDP_DATABASE_URL" not in env:
                _truncate_pg(database_url)
                cleanups.append(lambda url=database_url: _truncate_pg(url))  # type: ignore[misc]
        elif backend == "redis":
            redis_url = request.getfixturevalue("redis_available")
            if "IDP_REDIS_URL" not in env:
                _flush_redis(redis_url)
                cleanups.append(lambda url=redis_url: _flush_redis(url))  # type: ignore[misc]
        server = start_server(
            backend=backend,
            workdir=workdir,
            database_url=database_url,
            redis_url=redis_url,
            secret_key=TEST_SECRET,
            migrate=migrate,
            env=env,
        )
        started.append(server)
        return server

    yield factory
    for server in reversed(started):
        server.stop()
    for cleanup in cleanups:
        cleanup()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright, shared by the browser tests of one module.

    Tests open their own contexts (``browser.new_context(...)``) and close them; the browser stays for
    the module and is closed after it, so a module that starts its own Playwright is not disturbed.
    """
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        from tests.conftest import service_missing

        service_missing("Chromium", FileNotFoundError(CHROMIUM))
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()
