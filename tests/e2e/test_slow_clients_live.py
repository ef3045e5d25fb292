"""Slow or idle connections cannot stop ``idp serve``: with its defaults, 50 connections that never finish
their headers leave other visitors answered at once.

A functional check with a generous bound (every probe answered within a second), not a speed benchmark.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.server import free_port, idp_serve, log_tail

pytestmark = pytest.mark.e2e

SLOW_CONNECTIONS = 50
PROBES = 10


def test_fifty_slow_connections_do_not_delay_other_requests(tmp_path):
    port = free_port()
    # Nothing but a folder of the test's own: the worker model, worker count and timeouts are the defaults.
    with idp_serve(tmp_path, port, "--demo", "--port", str(port)) as (base, log):
        _probe_with_slow_connections(base, port, log)


def _probe_with_slow_connections(base: str, port: int, log: Path) -> None:
    slow: list[socket.socket] = []
    try:
        for index in range(SLOW_CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            # Half a request: the headers never end (a slow or malicious client, a stalled mobile link).
            half = f"POST /api/assign_queue_num HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: {index}\r\n"
            sock.sendall(half.encode())
            slow.append(sock)
        time.sleep(1.0)  # let every worker pick its share of them up
        for sock in slow[::2]:
            sock.sendall(b"X-Still-Typing: 1\r\n")  # still alive, still not done
        slowest = 0.0
        failures: list[str] = []
        with requests.Session() as session:
            for _ in range(PROBES):
                started = time.monotonic()
                try:
                    answer = session.get(base + "/api/serving_num", params={"event_id": "demo"}, timeout=10)
                    health = session.get(base + "/healthz", timeout=10)
                except requests.RequestException as exc:
                    failures.append(repr(exc))
                    continue
                slowest = max(slowest, time.monotonic() - started)
                if answer.status_code != 200 or health.status_code != 200:
                    failures.append(f"{answer.status_code} {health.status_code}")
        assert failures == [], f"{failures[:3]}\n{log_tail(log)}"
        assert slowest < 1.0, f"a probe took {slowest:.2f}s with {SLOW_CONNECTIONS} slow connections open"
        # The slow connections are still open (they were not simply dropped to make room).
        still_open = 0
        for sock in slow:
            sock.setblocking(False)
            try:
                still_open += 1 if sock.recv(1) != b"" else 0
            except BlockingIOError:
                still_open += 1
            except OSError:
                pass
        assert still_open >= SLOW_CONNECTIONS // 2
    finally:
        for sock in slow:
            sock.close()
