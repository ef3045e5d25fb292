"""A real gunicorn (three worker processes) on PostgreSQL and a redis-server of the test's own, which is
killed and restarted without persistence while visitors join: every process notices, one recovers, and
no position is ever handed out twice."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from idp.queue import keys
from idp.storage.models import QueueLedger
from tests.own_services import RedisServer

pytestmark = pytest.mark.e2e

JOINERS = 8
WAIT_SECONDS = 120.0


def _wait_for(condition: Any, what: str, describe: Any) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {describe()}")
        time.sleep(0.05)


def test_a_redis_restart_without_persistence_under_gunicorn(live_server: Any, tmp_path: Path) -> None:
    own = RedisServer(folder=tmp_path / "redis").start()
    try:
        server = live_server(
            "postgres",
            IDP_REDIS_URL=own.url,
            IDP_WORKERS=3,
            IDP_THREADS=2,
            IDP_QUEUE_BLOCK_SIZE=50,
            IDP_RETRY_AFTER_SECONDS=1,
            IDP_RATE_LIMITS="off",  # many joiners from one test address
        )
        services = server.services()
        services.events.create({"event_id": "sale", "name": "Sale"})
        url = server.url + "/api/assign_queue_num"
        lock = threading.Lock()
        stop = threading.Event()
        answers: list[tuple[float, int, dict[str, Any], str]] = []

        def join() -> None:
            with requests.Session() as session:
                while not stop.is_set():
                    try:
                        response = session.post(url, json={"event_id": "sale"}, timeout=60)
                    except requests.RequestException as exc:
                        with lock:
                            answers.append((time.monotonic(), 0, {"error": type(exc).__name__}, ""))
                        continue
                    body = response.json() if response.headers.get("Content-Type") == "application/json" else {}
                    with lock:
                        answers.append(
                            (time.monotonic(), response.status_code, body, response.headers.get("Retry-After", ""))
                        )

        def acknowledged(after: float = 0.0) -> int:
            with lock:
                return sum(1 for at, status, *_ in answers if status == 200 and at > after)

        def describe() -> str:
            """What the joins were answered so far, and how the server's log ends (a failure's diagnosis)."""
            with lock:
                counts = Counter((status, body.get("error", "")) for _at, status, body, _r in answers)
            with services.db.session(readonly=True) as session:
                row = session.get(QueueLedger, "sale")
                ledger = None if row is None else (row.epoch, row.generation, row.status, row.last_loss_reason)
            epoch = own.client().hget(keys.counters("sale"), "epoch")
            return f"answers {dict(counts)}; ledger {ledger}; redis epoch {epoch!r}\nserver log:\n{server.log(80)}"

        threads = [threading.Thread(target=join) for _ in range(JOINERS)]
        for thread in threads:
            thread.start()
        try:
            _wait_for(lambda: acknowledged() >= 300, "joins before the restart", describe)
            with lock:
                before = {b["api_request_id"]: b["queue_number"] for _a, s, b, _r in answers if s == 200}
                fault_at = time.monotonic()
            own.restart()  # SIGKILL, then start again: no AOF, no snapshot, so Redis comes back empty
            _wait_for(lambda: acknowledged(fault_at) >= 300, "joins after the restart", describe)
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)

        for _at, status, body, retry_after in answers:
            assert status in (200, 503), (status, body, server.log())
            if status == 503:
                assert body["error"] in ("queue_store_lost", "service_unavailable") and int(retry_after) >= 1
        assert any(body.get("error") == "queue_store_lost" for _a, s, body, _r in answers if s == 503)
        places = {b["api_request_id"]: b["queue_number"] for _a, s, b, _r in answers if s == 200}
        assert len(set(places.values())) == len(places), "a position was handed out twice"
        late = sorted(p for rid, p in places.items() if rid not in before)
        assert late[-100] > max(before.values())

        with requests.Session() as session:
            lost = kept = 0
            for rid, position in places.items():
                response = session.get(f"{server.url}/api/queue_num", params={"event_id": "sale", "request_id": rid})
                if response.status_code == 200:
                    assert response.json()["queue_number"] == position
                    kept += 1
                else:
                    assert (response.status_code, response.json()["error"]) == (410, "place_lost")
                    lost += 1
        assert lost >= len(before) - JOINERS and kept > 0
        with services.db.session(readonly=True) as session:
            ledger = session.execute(select(QueueLedger).where(QueueLedger.event_id == "sale")).scalar_one()
            assert (ledger.losses, ledger.generation, ledger.status) == (1, 2, "ok"), "recovered more than once"
    finally:
        own.stop()
