"""Many visitors joining at once through a real gunicorn server get positions 1..N, each exactly once."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.e2e

THREADS = 50
JOINS_PER_THREAD = 40
TOTAL = THREADS * JOINS_PER_THREAD  # 2,000


def _join_many(url: str, barrier: threading.Barrier, out: list[Any], errors: list[str]) -> None:
    with requests.Session() as session:
        barrier.wait()
        for _ in range(JOINS_PER_THREAD):
            try:
                response = session.post(url, json={"event_id": "sale"}, timeout=60)
            except requests.RequestException as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            if response.status_code != 200:
                errors.append(f"{response.status_code}: {response.text[:200]}")
                return
            out.append(response.json())


@pytest.mark.parametrize("backend", ["redis", "postgres", "sqlite"])
def test_two_thousand_concurrent_joins_get_contiguous_unique_positions(live_server, backend):
    # Several worker processes with several threads each: joins race across processes and threads.
    server = live_server(backend, IDP_WORKERS=3, IDP_THREADS=4, IDP_RATE_LIMITS="off")  # one client, 2,000 joins
    services = server.services()
    services.events.create({"event_id": "sale", "name": "Sale"})

    barrier = threading.Barrier(THREADS)
    per_thread: list[list[Any]] = [[] for _ in range(THREADS)]
    errors: list[str] = []
    threads = [
        threading.Thread(target=_join_many, args=(server.url + "/api/assign_queue_num", barrier, per_thread[i], errors))
        for i in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == [], f"{len(errors)} joins failed, first: {errors[0]}\n{server.log()}"
    answers = [answer for chunk in per_thread for answer in chunk]
    positions = sorted(answer["queue_number"] for answer in answers)
    assert positions == list(range(1, TOTAL + 1))
    assert len({answer["api_request_id"] for answer in answers}) == TOTAL
    assert {answer["event_id"] for answer in answers} == {"sale"}
    # One visitor's joins are sequential, so each thread sees its positions rise (FIFO).
    for chunk in per_thread:
        mine = [answer["queue_number"] for answer in chunk]
        assert mine == sorted(mine)
    # Entry times never decrease with the position.
    by_position = sorted(answers, key=lambda answer: answer["queue_number"])
    times = [answer["entry_time"] for answer in by_position]
    assert times == sorted(times)
    assert services.engine.counters("sale").queue == TOTAL

    # Each request id answers with its own position (every 10th of them, over HTTP).
    with requests.Session() as session:
        for answer in by_position[::10]:
            response = session.get(
                server.url + "/api/queue_num",
                params={"event_id": "sale", "request_id": answer["api_request_id"]},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["queue_number"] == answer["queue_number"]
            assert body["entry_time"] == answer["entry_time"]
            assert body["event_id"] == "sale"
            assert body["status"] == 1
    waiting = requests.get(server.url + "/api/waiting_num", params={"event_id": "sale"}, timeout=30)
    assert waiting.json() == {"waiting_num": TOTAL}
