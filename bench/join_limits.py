"""Join rate with the per-client rate limits on, beside the same server with ``IDP_RATE_LIMITS=off``.

Two idp servers on idp/gunicorn_conf.py, both behind ``IDP_PROXY_HOPS=1`` on the Redis queue store (a
benchmark-only Redis database, flushed before and after): one with the default limits, one with
``IDP_RATE_LIMITS=off``. wrk posts joins whose ``X-Forwarded-For`` changes with every request
(``bench/spread_join.lua``: 2^20 addresses), so every join is checked against its address's moving window
(one more Redis call) and none is refused. Rounds are interleaved and the median is reported. Loopback
only; bounded in time.

    python bench/join_limits.py [--seconds 8] [--rounds 3] [--connections 32] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    BENCH_REDIS_URL,
    BENCH_SECRET,
    base_environment,
    free_port,
    process_tree_cpu_seconds,
    run_wrk,
    start_gunicorn,
    stop_process,
)
from bench.http_ratio import GUNICORN_VARIABLES, _flush, _prepare_database  # noqa: E402

HERE = Path(__file__).resolve().parent


def measure(seconds: int, rounds: int, connections: int, gunicorn_env: dict[str, str]) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="idp-bench-limits-"))
    servers = []
    try:
        _flush(BENCH_REDIS_URL)
        database_url = _prepare_database(folder)
        targets: dict[str, tuple[str, int]] = {}
        for name, limits in (("limits_on", ""), ("limits_off", "off")):
            port = free_port()
            env = dict(
                gunicorn_env,
                IDP_ENV="development",
                IDP_DATABASE_URL=database_url,
                IDP_REDIS_URL=BENCH_REDIS_URL,
                IDP_SECRET_KEY=BENCH_SECRET,
                IDP_INSTANCE_PATH=str(folder / "instance"),
                IDP_ISSUER=f"http://127.0.0.1:{port}",
                IDP_PROXY_HOPS="1",
                IDP_RATE_LIMITS=limits,
            )
            server = start_gunicorn("idp.app:create_app()", base_environment(env), port, folder / f"{name}.log")
            servers.append(server)
            targets[name] = (f"http://127.0.0.1:{port}/api/assign_queue_num", server.pid)
        script = HERE / "spread_join.lua"
        for url, _pid in targets.values():  # warm up every worker
            run_wrk(url, seconds=2, connections=connections, script=script)
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
        for _ in range(rounds):
            for name, (url, pid) in targets.items():
                cpu_before = process_tree_cpu_seconds(pid)
                run = run_wrk(url, seconds=seconds, connections=connections, script=script)
                cpu = process_tree_cpu_seconds(pid) - cpu_before
                run["server_cpu_us"] = cpu / run["requests"] * 1e6 if run["requests"] else 0.0
                results[name].append(run)
        summary: dict[str, Any] = {}
        for name, runs in results.items():
            summary[name] = {
                "rps": statistics.median(r["rps"] for r in runs),
                "rps_rounds": [r["rps"] for r in runs],
                "p50_ms": statistics.median(r["p50_ms"] for r in runs if r["p50_ms"] is not None),
                "p99_ms": statistics.median(r["p99_ms"] for r in runs if r["p99_ms"] is not None),
                "server_cpu_us": statistics.median(r["server_cpu_us"] for r in runs),
                "errors": sum(r["non_2xx"] + r["socket_errors"] for r in runs),
            }
        off = summary["limits_off"]["rps"]
        summary["limits_on"]["ratio_to_off"] = round(summary["limits_on"]["rps"] / off, 3) if off else 0.0
        return summary
    finally:
        for process in servers:
            stop_process(process)
        try:
            _flush(BENCH_REDIS_URL)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def report(summary: dict[str, Any]) -> str:
    lines = [f"{'target':<12} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'server CPU/req':>15}  errors"]
    for name, row in summary.items():
        lines.append(
            f"{name:<12} {row['rps']:>9.0f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
            f"{row['server_cpu_us']:>12.0f} us  {row['errors']}"
        )
    lines.append(f"limits on / off: {summary['limits_on']['ratio_to_off']:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="length of one wrk run (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per target (default 3)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    gunicorn_env = {k: os.environ[k] for k in GUNICORN_VARIABLES if k in os.environ}
    summary = measure(args.seconds, args.rounds, args.connections, gunicorn_env)
    print(report(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
