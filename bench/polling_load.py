"""The polling load that waiting visitors put on the server when they follow the page's schedule.

DESIGN.md §8: the waiting page's poll interval adapts to the distance from the front so that 100,000
waiting visitors cost at most 2,000 requests/s in total. The server decides every interval
(``poll_after_ms`` in ``GET /wait/<event_id>/status``, see ``idp/pages/schedule.py``), so the load is
a property of the schedule, and this benchmark checks it two ways:

* **measured**: N simulated visitors (default 10,000) hold real places in a real event on a real
  gunicorn server (Redis queue store, a benchmark-only database flushed before and after). Each
  visitor is a scheduled request, not a thread: it polls its status with its place cookie, then polls
  again after the ``poll_after_ms`` the server sent (backing off on errors and 503 like the page).
  Their first polls are spread over one interval, as in a queue that has been waiting a while. The
  requests the server answered per second over the run are counted.
* **computed**: the schedule's expected rate for N and for 100,000 visitors at places 1..N
  (``PollSchedule.expected_rate``), checked against the measurement for N.

Loopback only; bounded in time (``--seconds``).

    python bench/polling_load.py [--visitors 10000] [--seconds 90] [--concurrency 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    BENCH_REDIS_URL,
    bench_services,
    flush_bench_redis,
    free_port,
    idp_environment,
    loopback_only,
    process_tree_cpu_seconds,
    start_gunicorn,
    stop_process,
)
from idp.pages.schedule import (  # noqa: E402
    BUDGET_REQUESTS_PER_SECOND,
    BUDGET_VISITORS,
    DEFAULT_SCHEDULE,
)

EVENT = "bench-poll"
COOKIE = f"idp_place_{EVENT}"
MAX_BACKOFF_S = 120.0


def _prepare(folder: Path, visitors: int) -> tuple[str, list[str]]:
    """Migrate a database, create the event and give every simulated visitor a real place."""
    from idp.pages.cookies import place_signature

    with bench_services(folder) as (url, services):
        services.events.create({"event_id": EVENT, "name": "Polling benchmark", "enable_queue_position_expiry": False})
        entries = [services.engine.enqueue(EVENT) for _ in range(visitors)]
        # The cookie value the waiting page sets: request id, position and its signature.
        request_ids = [
            f"{e.request_id}.{e.position}.{place_signature(services.settings, EVENT, e.request_id, e.position)}"
            for e in entries
        ]
    return url, request_ids


async def _poll(port: int, request_id: str, timeout: float) -> tuple[int, int | None, float | None]:
    """One status request on a fresh connection (gunicorn's sync workers close after each answer)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(
            f"GET /wait/{EVENT}/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n"
            f"Cookie: {COOKIE}={request_id}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    retry_after = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "retry-after" and value.strip().isdigit():
            retry_after = float(value.strip())
    if status != 200:
        return status, None, retry_after
    return status, int(json.loads(body)["poll_after_ms"]), None


async def simulate(
    port: int, request_ids: list[str], seconds: float, concurrency: int, seed: int = 1
) -> dict[str, Any]:
    """Run every visitor's poll loop for ``seconds``; count what the server answered."""
    rng = random.Random(seed)
    start = time.monotonic()
    end = start + seconds
    # Visitor i is at place i+1 with i ahead; its first poll falls anywhere in its first interval.
    due: list[tuple[float, int]] = [
        (start + rng.uniform(0, DEFAULT_SCHEDULE.base_ms(i) / 1000.0), i) for i in range(len(request_ids))
    ]
    heapq.heapify(due)
    failures = [0] * len(request_ids)
    chosen: dict[int, int] = {}  # visitor -> the last poll_after_ms the server sent it
    answered: list[int] = []  # one entry per answered request: seconds since start
    sent: list[int] = []  # one entry per request sent: seconds since start
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    late: list[float] = []  # how far behind schedule the generator sent (its own health)
    gate = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task[None]] = set()

    async def one(index: int, scheduled: float) -> None:
        nonlocal errors
        async with gate:
            sent_at = time.monotonic()
            late.append(sent_at - scheduled)
            sent.append(int(sent_at - start))
            try:
                status, poll_ms, retry_after = await _poll(port, request_ids[index], 10.0)
            except (TimeoutError, OSError, ValueError, IndexError):
                status, poll_ms, retry_after = 0, None, None
            now = time.monotonic()
        statuses[status] = statuses.get(status, 0) + 1
        if status and now < end:
            answered.append(int(now - start))
            latencies.append((now - sent_at) * 1000.0)
        if poll_ms is not None:
            chosen[index] = poll_ms
            failures[index] = 0
            nxt = now + poll_ms / 1000.0
        else:
            # The page's back-off: doubling from 2 s, jittered, at least Retry-After.
            errors += 1
            failures[index] += 1
            wait = min(MAX_BACKOFF_S, 2.0 * 2 ** (failures[index] - 1)) * rng.uniform(0.8, 1.2)
            nxt = now + max(wait, retry_after or 0.0)
        if nxt < end:
            heapq.heappush(due, (nxt, index))

    while True:
        now = time.monotonic()
        if now >= end:
            break
        while due and due[0][0] <= now:
            scheduled, index = heapq.heappop(due)
            task = asyncio.create_task(one(index, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        delay = min(0.01, max(0.0, (due[0][0] - now) if due else 0.01))
        await asyncio.sleep(delay)
    if tasks:
        await asyncio.wait(tasks, timeout=15)  # let answers in flight land; they are not counted
    per_second = [0] * (int(seconds) + 1)
    for second in answered:
        if second < len(per_second):
            per_second[second] += 1
    full = per_second[: int(seconds)]
    latencies.sort()
    late.sort()
    # The rate the server's own answers ask for, independent of how fast this machine answered them:
    # each visitor polls once per the interval it was last given.
    implied = sum(1000.0 / ms for ms in chosen.values())
    model_same = sum(DEFAULT_SCHEDULE.mean_rate(i) for i in chosen)
    return {
        "visitors_answered": len(chosen),
        "implied_rps": implied,
        "implied_vs_model": implied / model_same if model_same else None,
        "requests": len(answered),
        "seconds": seconds,
        "rps": len(answered) / seconds,
        # What the visitors asked for: requests sent per second, following the server's intervals.
        "sent_rps": sum(1 for second in sent if second < seconds) / seconds,
        "rps_p10_p90": [statistics.quantiles(full, n=10)[0], statistics.quantiles(full, n=10)[-1]]
        if len(full) > 2
        else None,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": errors,
        "p50_ms": latencies[len(latencies) // 2] if latencies else None,
        "p99_ms": latencies[int(len(latencies) * 0.99)] if latencies else None,
        "generator_late_p99_ms": late[int(len(late) * 0.99)] * 1000.0 if late else None,
    }


def measure(visitors: int, seconds: float, concurrency: int, workers: int, threads: int = 1) -> dict[str, Any]:
    loopback_only(BENCH_REDIS_URL)
    folder = Path(tempfile.mkdtemp(prefix="idp-bench-poll-"))
    server = None
    try:
        flush_bench_redis()
        database_url, request_ids = _prepare(folder, visitors)
        port = free_port()
        gunicorn_env = {"IDP_WORKERS": str(workers), "IDP_THREADS": str(threads), "IDP_LOG_LEVEL": "WARNING"}
        env = idp_environment(gunicorn_env, database_url, folder, port)
        server = start_gunicorn("idp.app:create_app()", env, port, folder / "idp.log")
        load_before = os.getloadavg()[0]
        cpu_before = process_tree_cpu_seconds(server.pid)
        run = asyncio.run(simulate(port, request_ids, seconds, concurrency))
        cpu = process_tree_cpu_seconds(server.pid) - cpu_before
        run["load_average_1min"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
        run["server_cpu_percent_of_one_core"] = round(cpu / seconds * 100.0, 1)
        run["server_cpu_us_per_request"] = round(cpu / run["requests"] * 1e6, 1) if run["requests"] else None
    finally:
        if server is not None:
            stop_process(server)
        try:
            flush_bench_redis()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    expected = DEFAULT_SCHEDULE.expected_rate(visitors)
    at_budget = DEFAULT_SCHEDULE.expected_rate(BUDGET_VISITORS)
    # What the server's answers imply for N, scaled to the whole queue by the model.
    implied_ratio = run["implied_vs_model"] or 1.0
    return {
        "schedule": {
            "min_ms": DEFAULT_SCHEDULE.min_ms,
            "per_person_ms": DEFAULT_SCHEDULE.per_person_ms,
            "max_ms": DEFAULT_SCHEDULE.max_ms,
            "jitter": DEFAULT_SCHEDULE.jitter,
        },
        "visitors": visitors,
        "measured": run,
        "computed_rps": round(expected, 1),
        "measured_vs_computed": round(run["rps"] / expected, 3) if expected else None,
        "computed_rps_at_100000": round(at_budget, 1),
        # The server's chosen intervals scale the model: what 100,000 cost if answered as these were.
        "projected_rps_at_100000": round(at_budget * implied_ratio, 1),
        "budget_rps_at_100000": BUDGET_REQUESTS_PER_SECOND,
        "meets_budget": max(at_budget, at_budget * implied_ratio) <= BUDGET_REQUESTS_PER_SECOND
        and run["rps"] <= expected * 1.1,
    }


def report(result: dict[str, Any]) -> str:
    m = result["measured"]
    lines = [
        f"schedule: {result['schedule']}",
        f"{result['visitors']:,} simulated visitors for {m['seconds']:.0f} s: {m['sent_rps']:.1f} req/s sent, "
        f"{m['requests']:,} answered = {m['rps']:.1f} req/s measured (p10-p90 of seconds: {m['rps_p10_p90']}), "
        f"{result['computed_rps']:.1f} req/s computed, ratio {result['measured_vs_computed']}",
        f"  statuses {m['statuses']}, errors {m['errors']}, latency p50 {m['p50_ms']:.1f} ms, "
        f"p99 {m['p99_ms']:.1f} ms, generator late p99 {m['generator_late_p99_ms']:.1f} ms",
        f"  the server's answers to {m['visitors_answered']:,} visitors ask for {m['implied_rps']:.1f} req/s "
        f"({m['implied_vs_model']:.3f}x the model for the same places)",
        f"  load average {m['load_average_1min']}, server CPU {m['server_cpu_percent_of_one_core']}% of one core, "
        f"{m['server_cpu_us_per_request']} us per request",
        f"100,000 visitors: {result['computed_rps_at_100000']:.1f} req/s computed, "
        f"{result['projected_rps_at_100000']:.1f} req/s projected from the measurement; "
        f"budget {result['budget_rps_at_100000']:.0f} req/s: {'holds' if result['meets_budget'] else 'BROKEN'}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visitors", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument(
        "--concurrency", type=int, default=1024, help="requests in flight at most (each visitor has at most one)"
    )
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker")
    parser.add_argument("--json", type=Path, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    result = measure(args.visitors, args.seconds, args.concurrency, args.workers, args.threads)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if result["meets_budget"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
