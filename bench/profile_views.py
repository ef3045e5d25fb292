"""CPU cost per request of the hot views, in-process (no network): a steady figure on a busy machine.

Calls each WSGI app directly with a prepared environ and reports CPU microseconds per request
(``time.process_time``), so other load on the machine does not skew it the way it skews wrk. With
``--profile NAME`` it prints the top functions of cProfile for one target. Uses the benchmark Redis
database (flushed before and after).

    python bench/profile_views.py [--requests 3000] [--profile serving_num]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from werkzeug.test import EnvironBuilder  # noqa: E402

from bench.common import BENCH_REDIS_URL, BENCH_SECRET, loopback_only  # noqa: E402


def _call(app: Any, environ: dict[str, Any]) -> int:
    status: list[str] = []

    def start_response(s: str, headers: list[Any], exc_info: Any = None) -> None:
        status.append(s)

    body = app(dict(environ, **{"wsgi.input": io.BytesIO(environ["_body"])}), start_response)
    for _ in body:
        pass
    if hasattr(body, "close"):
        body.close()
    return int(status[0].split()[0])


def _environ(method: str, path: str, query: str = "", body: bytes = b"") -> dict[str, Any]:
    builder = EnvironBuilder(
        method=method, path=path, query_string=query, data=body, content_type="application/json" if body else None
    )
    environ = builder.get_environ()
    environ["_body"] = body
    return environ


def cpu_us_per_request(app: Any, environ: dict[str, Any], count: int, batches: int = 5) -> float:
    """The best of ``batches`` batches: the least disturbed by other work on the machine."""
    for _ in range(min(200, count)):
        _call(app, environ)
    best = float("inf")
    per_batch = max(1, count // batches)
    for _ in range(batches):
        started = time.process_time()
        for _ in range(per_batch):
            status = _call(app, environ)
            if status != 200:
                raise RuntimeError(f"status {status}")
        best = min(best, (time.process_time() - started) / per_batch * 1e6)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--profile", choices=["hello", "serving_num", "assign_queue_num"])
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    count = max(100, min(args.requests, 100_000))

    import logging
    import os

    import redis

    from bench.hello_app import create_app as hello_app
    from idp.app import create_app
    from idp.config import Settings
    from idp.storage.db import upgrade_database

    loopback_only(BENCH_REDIS_URL)
    folder = Path(tempfile.mkdtemp(prefix="idp-profile-"))
    client = redis.Redis.from_url(BENCH_REDIS_URL)
    client.flushdb()
    devnull = open(os.devnull, "w")  # noqa: SIM115 - closed below
    try:
        url = f"sqlite:///{folder / 'idp.sqlite3'}"
        upgrade_database(url)
        app = create_app(
            Settings(
                env="development",
                database_url=url,
                redis_url=BENCH_REDIS_URL,
                secret_key=BENCH_SECRET,
                instance_path=str(folder),
                log_level=args.log_level,
                # Every join here comes from one address; the limits are measured by join_limits.py.
                rate_limits="off",
            )
        )
        # The log lines are formatted as in production but not written to the terminal.
        for handler in logging.getLogger().handlers:
            if getattr(handler, "_idp", False):
                handler.setStream(devnull)  # type: ignore[attr-defined]
        app.extensions["idp"].events.create({"event_id": "bench", "name": "Benchmark"})
        targets: dict[str, tuple[Any, dict[str, Any]]] = {
            "hello": (hello_app(), _environ("GET", "/hello")),
            "serving_num": (app, _environ("GET", "/api/serving_num", "event_id=bench")),
            "assign_queue_num": (app, _environ("POST", "/api/assign_queue_num", body=b'{"event_id":"bench"}')),
        }
        if args.profile:
            target_app, environ = targets[args.profile]
            run: Callable[[], float] = lambda: cpu_us_per_request(target_app, environ, count)  # noqa: E731
            profiler = cProfile.Profile(time.process_time)  # CPU, not wall: steady on a busy machine
            profiler.runcall(run)
            stats = pstats.Stats(profiler, stream=sys.stdout)
            stats.sort_stats("cumulative").print_stats(int(__import__("os").environ.get("PROFILE_LINES", "35")))
            return 0
        base = None
        for name, (target_app, environ) in targets.items():
            us = cpu_us_per_request(target_app, environ, count)
            base = base or us
            print(f"{name:<18} {us:8.1f} us CPU/request  ({base / us:.2f}x of hello's rate)")
        return 0
    finally:
        app.extensions["idp"].close() if "app" in locals() else None
        client.flushdb()
        client.close()
        devnull.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
