"""Shared pieces of the benchmarks: loopback-only gunicorn servers, wrk runs, Redis helpers."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.e2e.server import base_environment, free_port, start_gunicorn, stop_process  # noqa: E402

# The benchmarks' own Redis database (flushed before and after): never a test's or a developer's.
BENCH_REDIS_URL = os.environ.get("IDP_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
BENCH_SECRET = "bench-secret-key-that-is-long-enough-0123456789"  # noqa: S105 - a throwaway local server

# Variables idp/gunicorn_conf.py reads; every server of a benchmark gets the same values.
GUNICORN_VARIABLES = (
    "IDP_WORKERS",
    "IDP_THREADS",
    "IDP_WORKER_CLASS",
    "IDP_WORKER_CONNECTIONS",
    "IDP_BACKLOG",
    "IDP_WORKER_TIMEOUT",
    "IDP_MAX_REQUESTS",
    "IDP_LOG_LEVEL",
)

__all__ = [
    "BENCH_REDIS_URL",
    "BENCH_SECRET",
    "GUNICORN_VARIABLES",
    "REPO_ROOT",
    "add_wrk_arguments",
    "base_environment",
    "bench_folder",
    "bench_services",
    "flush_bench_redis",
    "free_port",
    "gunicorn_environment",
    "idp_environment",
    "interleaved_rounds",
    "require_wrk",
    "run_wrk",
    "process_tree_cpu_seconds",
    "start_gunicorn",
    "stop_process",
    "loopback_only",
]


def process_tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` and its direct children (gunicorn's workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is the state (field 3); ppid is field 4, utime 14, stime 15.
        if int(entry) == pid or int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def loopback_only(url: str) -> str:
    """Refuse any target that is not on this machine's loopback."""
    host = re.sub(r"^[a-z]+://", "", url).split("/", 1)[0].rsplit(":", 1)[0].split("@")[-1]
    if not (host.startswith("127.") or host in {"localhost", "[::1]", "::1"}):
        raise SystemExit(f"benchmarks only target loopback, not {host!r}")
    return url


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install -y wrk)")
    return path


def run_wrk(url: str, *, seconds: int, connections: int, threads: int = 2, script: Path | None = None) -> dict:
    """Run wrk against ``url`` for a bounded time; return requests/s, latency and error counts."""
    loopback_only(url)
    argv = [require_wrk(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(url)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    out = done.stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {out}\n{done.stderr}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    total = re.search(r"(\d+) requests in", out)

    def ms(m: re.Match[str] | None) -> float | None:
        if m is None:
            return None
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    return {
        "rps": float(match.group(1)),
        "requests": int(total.group(1)) if total else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
        "p50_ms": ms(p50),
        "p99_ms": ms(p99),
    }


def add_wrk_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every wrk benchmark takes: run length, rounds, connections and a JSON file."""
    parser.add_argument("--seconds", type=int, default=8, help="length of one wrk run (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per target (default 3)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")


def gunicorn_environment() -> dict[str, str]:
    """The gunicorn variables set in this environment, passed alike to every server."""
    return {k: os.environ[k] for k in GUNICORN_VARIABLES if k in os.environ}


def flush_bench_redis() -> None:
    import redis

    client = redis.Redis.from_url(loopback_only(BENCH_REDIS_URL))
    try:
        client.flushdb()
    finally:
        client.close()


@contextmanager
def bench_services(folder: Path) -> Iterator[tuple[str, Any]]:
    """A fresh SQLite database in ``folder`` and the services on it and the benchmark Redis: (URL, services)."""
    from idp.app import build_services
    from idp.config import Settings
    from idp.storage.db import upgrade_database

    url = f"sqlite:///{folder / 'idp.sqlite3'}"
    upgrade_database(url)
    services = build_services(
        Settings(
            env="test", database_url=url, redis_url=BENCH_REDIS_URL, secret_key=BENCH_SECRET, instance_path=str(folder)
        )
    )
    try:
        yield url, services
    finally:
        services.close()


def _prepare_database(folder: Path) -> str:
    """A fresh SQLite database with the benchmark's event ``bench``; returns its URL."""
    with bench_services(folder) as (url, services):
        services.events.create({"event_id": "bench", "name": "Benchmark"})
    return url


@contextmanager
def bench_folder(prefix: str) -> Iterator[tuple[Path, str, list[Any]]]:
    """A scratch folder, its database URL (event ``bench`` ready) and a list of servers to stop.

    The benchmark Redis database is flushed before and after; the servers are stopped and the folder
    removed whatever happens."""
    loopback_only(BENCH_REDIS_URL)
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    servers: list[Any] = []
    try:
        flush_bench_redis()
        yield folder, _prepare_database(folder), servers
    finally:
        for process in servers:
            stop_process(process)
        try:
            flush_bench_redis()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def idp_environment(
    gunicorn_env: dict[str, str], database_url: str, folder: Path, port: int, **extra: str
) -> dict[str, str]:
    """The environment of an idp server on the benchmark Redis database and ``database_url``."""
    return base_environment(
        dict(
            gunicorn_env,
            IDP_ENV="development",
            IDP_DATABASE_URL=database_url,
            IDP_REDIS_URL=BENCH_REDIS_URL,
            IDP_SECRET_KEY=BENCH_SECRET,
            IDP_INSTANCE_PATH=str(folder / "instance"),
            IDP_ISSUER=f"http://127.0.0.1:{port}",
            **extra,
        )
    )


def interleaved_rounds(
    targets: dict[str, tuple[str, Path | None, int]], *, seconds: int, rounds: int, connections: int
) -> dict[str, dict[str, Any]]:
    """Warm every target up, then run wrk on each in turn, ``rounds`` times; the median of the rounds.

    ``targets`` maps a name to (url, wrk script or None, the server's pid). Interleaving evens out other
    load on a shared machine; the server's CPU time per request is steadier than requests/s."""
    for url, script, _pid in targets.values():  # warm up every worker
        run_wrk(url, seconds=2, connections=connections, script=script)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, (url, script, pid) in targets.items():
            cpu_before = process_tree_cpu_seconds(pid)
            run = run_wrk(url, seconds=seconds, connections=connections, script=script)
            cpu = process_tree_cpu_seconds(pid) - cpu_before
            run["server_cpu_us"] = cpu / run["requests"] * 1e6 if run["requests"] else 0.0
            results[name].append(run)
    return {
        name: {
            "rps": statistics.median(r["rps"] for r in runs),
            "rps_rounds": [r["rps"] for r in runs],
            "p50_ms": statistics.median(r["p50_ms"] for r in runs if r["p50_ms"] is not None),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs if r["p99_ms"] is not None),
            "server_cpu_us": statistics.median(r["server_cpu_us"] for r in runs),
            "errors": sum(r["non_2xx"] + r["socket_errors"] for r in runs),
        }
        for name, runs in results.items()
    }
