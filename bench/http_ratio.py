"""Requests/s of the public queue API against a hello-world Flask view and raw WSGI apps, all on idp/gunicorn_conf.py.

DESIGN.md §8: ``GET /api/serving_num`` >= 0.9x and ``POST /api/assign_queue_num`` >= 0.7x the hello-world
rate, and both >= 0.8x of a raw WSGI app (no framework) that only answers (for ``serving_num``) or makes
one Redis call and answers (for ``assign_queue_num``), on the same machine as the load generator (wrk).
The real app runs on the Redis queue store (a benchmark-only Redis database, flushed before and after)
with its default settings; all servers get the same gunicorn environment. Rounds are interleaved
(raw answer, serving, raw Redis call, join, hello, raw answer, ...) and the median of the rounds is
reported, which evens out other load on a shared machine; each call's ratio to its raw app is the median
of the rounds' paired ratios (the two runs of a pair follow each other). Loopback only; bounded in time.

    python bench/http_ratio.py [--seconds 8] [--rounds 3] [--connections 32] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    BENCH_REDIS_URL,
    add_wrk_arguments,
    base_environment,
    bench_folder,
    free_port,
    gunicorn_environment,
    idp_environment,
    interleaved_rounds,
    start_gunicorn,
)

HERE = Path(__file__).resolve().parent
BUDGET = {"serving_num": 0.9, "assign_queue_num": 0.7}
# Each call against the raw WSGI app it is held to, and the ratio it must reach.
RAW_BUDGET = {"serving_num": ("raw_answer", 0.8), "assign_queue_num": ("raw_redis", 0.8)}


def measure(seconds: int, rounds: int, connections: int, gunicorn_env: dict[str, str]) -> dict[str, Any]:
    with bench_folder("idp-bench-") as (folder, database_url, servers):
        hello_port, idp_port, answer_port, redis_port = free_port(), free_port(), free_port(), free_port()
        for spec, port, name, extra in (
            ("bench.raw_apps:answer()", answer_port, "raw-answer", {}),
            ("bench.raw_apps:redis_call()", redis_port, "raw-redis", {"IDP_REDIS_URL": BENCH_REDIS_URL}),
        ):
            servers.append(
                start_gunicorn(
                    spec,
                    base_environment(dict(gunicorn_env, **extra)),
                    port,
                    folder / f"{name}.log",
                    health_path="/",
                )
            )
        hello = start_gunicorn(
            "bench.hello_app:create_app()",
            base_environment(gunicorn_env),
            hello_port,
            folder / "hello.log",
            health_path="/hello",
        )
        servers.append(hello)
        # Every join here comes from one address, which the default limit would refuse after 100 a
        # minute; the join rate with the limits on (many addresses) is measured by bench/join_limits.py.
        idp_env = idp_environment(gunicorn_env, database_url, folder, idp_port, IDP_RATE_LIMITS="off")
        app = start_gunicorn("idp.app:create_app()", idp_env, idp_port, folder / "idp.log")
        servers.append(app)
        # Each call runs right after the raw app it is held to, so the two runs of a pair see the same
        # machine (other load moves both alike): each round gives a paired ratio.
        targets: dict[str, tuple[str, Path | None, int]] = {
            "raw_answer": (f"http://127.0.0.1:{answer_port}/", None, servers[0].pid),
            "serving_num": (f"http://127.0.0.1:{idp_port}/api/serving_num?event_id=bench", None, app.pid),
            "raw_redis": (f"http://127.0.0.1:{redis_port}/", HERE / "post_join.lua", servers[1].pid),
            "assign_queue_num": (f"http://127.0.0.1:{idp_port}/api/assign_queue_num", HERE / "post_join.lua", app.pid),
            "hello": (f"http://127.0.0.1:{hello_port}/hello", None, hello.pid),
        }
        summary = interleaved_rounds(targets, seconds=seconds, rounds=rounds, connections=connections)
        hello_rps = summary["hello"]["rps"]
        for name, budget in BUDGET.items():
            ratio = summary[name]["rps"] / hello_rps if hello_rps else 0.0
            summary[name]["ratio"] = round(ratio, 3)
            cpu = summary[name]["server_cpu_us"]
            summary[name]["cpu_ratio"] = round(summary["hello"]["server_cpu_us"] / cpu, 3) if cpu else 0.0
            summary[name]["budget"] = budget
            summary[name]["meets_budget"] = ratio >= budget
        for name, (raw, budget) in RAW_BUDGET.items():
            raw_rps = summary[raw]["rps"]
            # The median of the rounds' paired ratios (this call's rate over its raw app's in the same
            # round): the goal's figure. The ratio of the two medians is given beside it.
            paired = [
                ours / theirs
                for ours, theirs in zip(summary[name]["rps_rounds"], summary[raw]["rps_rounds"], strict=True)
                if theirs
            ]
            raw_ratio = statistics.median(paired) if paired else 0.0
            summary[name]["raw"] = raw
            summary[name]["raw_ratio"] = round(raw_ratio, 3)
            summary[name]["raw_ratio_rounds"] = [round(r, 3) for r in paired]
            summary[name]["raw_ratio_of_medians"] = round(summary[name]["rps"] / raw_rps, 3) if raw_rps else 0.0
            summary[name]["raw_budget"] = budget
            summary[name]["meets_raw_budget"] = raw_ratio >= budget
        return summary


def report(summary: dict[str, Any]) -> str:
    lines = [
        f"{'target':<18} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>7} {'budget':>7} "
        f"{'server CPU/req':>15} {'CPU ratio':>9}  errors"
    ]
    for name, row in summary.items():
        if name not in ("hello", "raw_answer", "raw_redis", *BUDGET):
            continue
        same = "1.00x" if name == "hello" else "-"
        ratio = f"{row['ratio']:.2f}x" if "ratio" in row else same
        cpu_ratio = f"{row['cpu_ratio']:.2f}x" if "cpu_ratio" in row else same
        budget = f">={row['budget']}x" if "budget" in row else ""
        lines.append(
            f"{name:<18} {row['rps']:>9.0f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {ratio:>7} "
            f"{budget:>7} {row['server_cpu_us']:>12.0f} us {cpu_ratio:>9}  {row['errors']}"
        )
    for name, (raw, budget) in RAW_BUDGET.items():
        row = summary[name]
        rounds = " ".join(f"{r:.2f}" for r in row["raw_ratio_rounds"])
        lines.append(
            f"{name} / {raw}: {row['raw_ratio']:.2f}x (goal >= {budget}x; median of the rounds' paired ratios "
            f"{rounds}; ratio of the medians {row['raw_ratio_of_medians']:.2f}x)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_wrk_arguments(parser)
    args = parser.parse_args(argv)
    if not (1 <= args.seconds <= 60 and 1 <= args.rounds <= 10 and 1 <= args.connections <= 512):
        parser.error("--seconds 1..60, --rounds 1..10, --connections 1..512")
    import os

    gunicorn_env = gunicorn_environment()
    started = time.time()
    load_before = os.getloadavg()[0]
    summary = measure(args.seconds, args.rounds, args.connections, gunicorn_env)
    summary["load_average"] = {"before": load_before, "after": os.getloadavg()[0]}
    print(report(summary))
    print(
        f"({args.rounds} rounds of {args.seconds}s, {args.connections} connections, "
        f"{time.time() - started:.0f}s in all; gunicorn env {gunicorn_env or 'defaults'}; "
        f"1-minute load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after)"
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    met = all(summary[name]["meets_budget"] and summary[name]["meets_raw_budget"] for name in BUDGET)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
