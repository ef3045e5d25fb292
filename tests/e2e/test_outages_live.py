"""Under load, a real PostgreSQL or Redis going away gives 503 JSON with Retry-After, never a 500.

Each test starts its own PostgreSQL or Redis on a free loopback port, a real gunicorn server in front of
it, and a handful of visitors polling and joining. Then the store is shut down (smart, fast, crash and
recovery for PostgreSQL; SIGKILL and SIGSTOP for Redis) and brought back. Every answer must be a 2xx or
a 503 JSON error (``service_unavailable``, or ``queue_store_lost`` while a restarted Redis is checked)
with ``Retry-After``; the outage must be seen (some 503s) and mended (joins answer 200 again); and every
acknowledged place keeps its position.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from tests.own_services import PostgresServer, RedisServer, own_postgres

pytestmark = pytest.mark.e2e

EVENT = "sale"
VISITORS = 6


@dataclass
class Tally:
    ok: int = 0
    unavailable: int = 0
    bad: list[str] = field(default_factory=list)
    joins: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, what: str, response: requests.Response) -> None:
        with self.lock:
            if 200 <= response.status_code < 300:
                self.ok += 1
                if what == "join":
                    self.joins.append(response.json())
                return
            problem = _not_a_proper_503(response)
            if problem is None:
                self.unavailable += 1
            else:
                self.bad.append(f"{what}: {problem}")


def _not_a_proper_503(response: requests.Response) -> str | None:
    head = f"{response.status_code} {response.headers.get('Content-Type')} {response.text[:160]!r}"
    if response.status_code != 503:
        return head
    if not response.headers.get("Retry-After", "").isdigit():
        return "503 without Retry-After: " + head
    try:
        body = response.json()
    except ValueError:
        return "503 that is not JSON: " + head
    # service_unavailable, or queue_store_lost while a restarted Redis is checked and recovered.
    if body.get("error") not in {"service_unavailable", "queue_store_lost"} or not body.get("message"):
        return "503 with an unexpected body: " + head
    return None


class Visitors:
    """Threads that join, poll the counters, look up a place and ask for its token, until stopped."""

    def __init__(self, url: str, known_request_id: str) -> None:
        self.url = url
        self.known = known_request_id
        self.tally = Tally()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._visit, daemon=True) for _ in range(VISITORS)]

    def _visit(self) -> None:
        calls = [
            ("join", "POST", "/api/assign_queue_num", {"json": {"event_id": EVENT}}),
            ("serving", "GET", "/api/serving_num", {"params": {"event_id": EVENT}}),
            ("waiting", "GET", "/api/waiting_num", {"params": {"event_id": EVENT}}),
            ("place", "GET", "/api/queue_num", {"params": {"event_id": EVENT, "request_id": self.known}}),
            ("token", "POST", "/api/generate_token", {"json": {"event_id": EVENT, "request_id": self.known}}),
        ]
        with requests.Session() as session:
            index = 0
            while not self.stopping.is_set():
                what, method, path, kwargs = calls[index % len(calls)]
                index += 1
                try:
                    response = session.request(method, self.url + path, timeout=30, **kwargs)
                except requests.RequestException as exc:
                    with self.tally.lock:
                        self.tally.bad.append(f"{what}: no answer: {type(exc).__name__}: {exc}")
                    continue
                self.tally.record(what, response)
                time.sleep(0.01)

    def __enter__(self) -> Visitors:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)


def _join(url: str) -> requests.Response:
    return requests.post(url + "/api/assign_queue_num", json={"event_id": EVENT}, timeout=30)


def _wait_for_joins(url: str, timeout: float = 60.0) -> dict[str, Any]:
    """Join until the server answers 200 again; return that join."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            response = _join(url)
            if response.status_code == 200:
                return dict(response.json())
            last = f"{response.status_code} {response.text[:200]}"
        except requests.RequestException as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise AssertionError(f"joins did not recover within {timeout:.0f}s; last answer: {last}")


def _check(server: Any, tally: Tally, url: str) -> None:
    assert tally.bad == [], f"{len(tally.bad)} improper answers, first ones: {tally.bad[:5]}\n{server.log(60)}"
    assert tally.unavailable > 0, "the outage was never seen: the test did not test anything"
    assert tally.ok > 0
    after = _wait_for_joins(url)
    joins = [*tally.joins, after]
    positions = [join["queue_number"] for join in joins]
    assert len(positions) == len(set(positions)), "a position was handed out twice"
    # Every acknowledged place is still there, with the position it was given.
    with requests.Session() as session:
        for join in joins:
            response = session.get(
                url + "/api/queue_num",
                params={"event_id": EVENT, "request_id": join["api_request_id"]},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            assert response.json()["queue_number"] == join["queue_number"]


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    with own_postgres() as server:
        yield server


def test_postgres_shutdown_crash_and_restart_under_load(live_server, postgres):
    url = postgres.create_database("idp")
    # Redis-less: the queue lives in this PostgreSQL too, so every call needs it.
    server = live_server(
        "sqlite", IDP_DATABASE_URL=url, IDP_REDIS_URL="", IDP_RETRY_AFTER_SECONDS="3", IDP_RATE_LIMITS="off"
    )
    server.services().events.create({"event_id": EVENT, "name": "Sale"})
    first = _join(server.url).json()

    with Visitors(server.url, first["api_request_id"]) as visitors:
        time.sleep(1.0)
        # Smart shutdown: sessions already open go on, new connections hear "shutting down".
        postgres.stop("smart", wait=False)
        time.sleep(2.0)
        postgres.stop("fast")  # ends every session ("terminating connection due to administrator command")
        time.sleep(1.5)
        postgres.start()
        time.sleep(1.5)
        postgres.stop("immediate")  # a crash: the next start replays the WAL ("starting up")
        time.sleep(1.0)
        postgres.start()
        time.sleep(2.0)
    visitors.tally.joins.append(first)
    _check(server, visitors.tally, server.url)


def test_redis_killed_and_paused_under_load(live_server):
    # Persistence on, so a restart keeps every acknowledged place (losing them is another failure).
    redis = RedisServer("--appendonly", "yes", "--appendfsync", "always").start()
    try:
        server = live_server("sqlite", IDP_REDIS_URL=redis.url, IDP_RETRY_AFTER_SECONDS="3", IDP_RATE_LIMITS="off")
        server.services().events.create({"event_id": EVENT, "name": "Sale"})
        first = _join(server.url).json()
        with Visitors(server.url, first["api_request_id"]) as visitors:
            time.sleep(1.0)
            redis.kill()
            time.sleep(1.5)
            redis.start()
            time.sleep(1.5)
            redis.pause()  # connections stay open, nothing answers: the clients' timeouts decide
            time.sleep(4.0)
            redis.resume()
            time.sleep(2.0)
        visitors.tally.joins.append(first)
        _check(server, visitors.tally, server.url)
    finally:
        redis.stop()
