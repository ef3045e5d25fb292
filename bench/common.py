"""Shared pieces of the benchmarks: loopback-only gunicorn servers, wrk runs, Redis helpers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.e2e.server import base_environment, free_port, start_gunicorn, stop_process  # noqa: E402

# The benchmarks' own Redis database (flushed before and after): never a test's or a developer's.
BENCH_REDIS_URL = os.environ.get("IDP_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
BENCH_SECRET = "bench-secret-key-that-is-long-enough-0123456789"  # noqa: S105 - a throwaway local server

__all__ = [
    "BENCH_REDIS_URL",
    "BENCH_SECRET",
    "REPO_ROOT",
    "base_environment",
    "free_port",
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
