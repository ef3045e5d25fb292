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
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    add_wrk_arguments,
    bench_folder,
    free_port,
    gunicorn_environment,
    idp_environment,
    interleaved_rounds,
    start_gunicorn,
)

HERE = Path(__file__).resolve().parent


def measure(seconds: int, rounds: int, connections: int, gunicorn_env: dict[str, str]) -> dict[str, Any]:
    with bench_folder("idp-bench-limits-") as (folder, database_url, servers):
        targets: dict[str, tuple[str, Path | None, int]] = {}
        for name, limits in (("limits_on", ""), ("limits_off", "off")):
            port = free_port()
            env = idp_environment(gunicorn_env, database_url, folder, port, IDP_PROXY_HOPS="1", IDP_RATE_LIMITS=limits)
            server = start_gunicorn("idp.app:create_app()", env, port, folder / f"{name}.log")
            servers.append(server)
            targets[name] = (f"http://127.0.0.1:{port}/api/assign_queue_num", HERE / "spread_join.lua", server.pid)
        summary = interleaved_rounds(targets, seconds=seconds, rounds=rounds, connections=connections)
        off = summary["limits_off"]["rps"]
        summary["limits_on"]["ratio_to_off"] = round(summary["limits_on"]["rps"] / off, 3) if off else 0.0
        return summary


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_wrk_arguments(parser)
    args = parser.parse_args(argv)
    gunicorn_env = gunicorn_environment()
    summary = measure(args.seconds, args.rounds, args.connections, gunicorn_env)
    print(report(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
