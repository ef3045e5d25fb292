"""Helpers for the worker, inlet and webhook tests: local HTTP servers on loopback and a worker factory."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ALL_NOW = {"expiry_sweep": 0.0, "periodic_inlet": 0.0, "metrics": 0.0, "webhooks": 0.0, "cleanup": 0.0}


@dataclass
class HealthServer:
    """A health endpoint whose answer the test sets: a status code, or a delay longer than the timeout."""

    status: int = 200
    delay: float = 0.0
    hits: int = 0
    url: str = ""


@contextmanager
def health_server() -> Iterator[HealthServer]:
    state = HealthServer()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            state.hits += 1
            if state.delay:
                time.sleep(state.delay)  # a slow upstream, not a wait for expiry
            body = b"{}"
            try:
                self.send_response(state.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up (timeout)

        def log_message(self, *_args: Any) -> None:
            pass

    with _serve(Handler) as url:
        state.url = url + "/health"
        yield state


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def message(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    """A webhook receiver: answers 500 to the first ``fail_first`` requests, then 204."""

    fail_first: int = 0
    received: list[Received] = field(default_factory=list)
    refused: list[Received] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted_ids(self) -> list[int]:
        with self.lock:
            return [r.message["id"] for r in self.received]


@contextmanager
def webhook_receiver(fail_first: int = 0) -> Iterator[Receiver]:
    state = Receiver(fail_first=fail_first)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            item = Received({k: v for k, v in self.headers.items()}, body)
            with state.lock:
                failing = state.fail_first > 0
                if failing:
                    state.fail_first -= 1
                    state.refused.append(item)
                else:
                    state.received.append(item)
            self.send_response(500 if failing else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    with _serve(Handler) as url:
        state.url = url + "/hook"
        yield state


@contextmanager
def _serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class AlwaysLease:
    """A lease that every worker holds at once: for showing that the jobs alone never double-admit."""

    holder = "everyone"

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass


def make_worker(services: Any, **kwargs: Any) -> Any:
    from idp.worker.jobs import Worker

    kwargs.setdefault("intervals", ALL_NOW)
    return Worker(services, **kwargs)


def admitted_with_tokens(services: Any, event_id: str, count: int) -> list[str]:
    """Join ``count`` visitors, admit them and issue their tokens (active sessions); return request ids."""
    ids = [services.room.join(event_id)[1].request_id for _ in range(count)]
    services.room.increment_serving(event_id, count)
    for request_id in ids:
        services.tokens.issue(event_id, request_id)
    return ids


def start_worker_process(env: dict[str, str], log_path: Path, lease_ms: int) -> subprocess.Popen[bytes]:
    """Start a real ``idp worker`` in its own session, logging to ``log_path``."""
    repo_root = Path(__file__).resolve().parents[1]
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "idp.cli", "worker", "--poll", "0.2", "--lease-ms", str(lease_ms)],
            cwd=str(repo_root),
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


def wait_until(condition: Callable[[], bool], what: str, seconds: float, step: float = 0.05) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(step)
