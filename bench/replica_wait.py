"""The cost of ``IDP_REDIS_WAIT_REPLICAS=1``: joins acknowledged only once a replica holds them (``WAIT``).

Starts a primary and one replica of its own (``redis-server`` on free loopback ports, no persistence),
then times joins through the store's own enqueue (``RedisQueueStore.enqueue``) with ``wait_replicas`` 0
and 1, in alternating rounds: latency (p50, p99) of one visitor joining at a time, and joins per second
with several threads joining at once. Loopback only: the replica's round trip on a real network adds
to every acknowledged join.

    python bench/replica_wait.py [--joins 2000] [--threads 8] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from idp.queue.ledger import Ledger  # noqa: E402
from idp.queue.redis_store import RedisQueueStore  # noqa: E402
from idp.storage.db import Database, upgrade_database  # noqa: E402
from tests.own_services import RedisServer  # noqa: E402

START = 1_800_000_000


def sequential(store: RedisQueueStore, event_id: str, joins: int) -> list[float]:
    latencies = []
    for i in range(joins):
        started = time.perf_counter()
        store.enqueue(event_id, str(uuid.uuid4()), START + i // 1000, None)
        latencies.append(time.perf_counter() - started)
    return latencies


def concurrent(store: RedisQueueStore, event_id: str, joins: int, threads: int) -> float:
    """Joins per second with ``threads`` visitors joining at once."""
    per_thread = joins // threads

    def run() -> None:
        for i in range(per_thread):
            store.enqueue(event_id, str(uuid.uuid4()), START + i // 1000, None)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return per_thread * threads / (time.perf_counter() - started)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct))]


def measure(joins: int, threads: int, rounds: int) -> dict[str, Any]:
    primary = RedisServer().start()
    replica = RedisServer("--replicaof", "127.0.0.1", str(primary.port)).start()
    folder = tempfile.TemporaryDirectory(prefix="idp-bench-")
    db_url = f"sqlite:///{folder.name}/ledger.sqlite3"
    upgrade_database(db_url)
    db = Database(db_url)
    try:
        deadline = time.monotonic() + 30
        while "master_link_status:up" not in replica.cli("INFO", "replication"):
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not sync")
            time.sleep(0.1)
        stores = {
            wait: RedisQueueStore.from_url(primary.url, Ledger(db), wait_replicas=wait, block_size=5000)
            for wait in (0, 1)
        }
        latencies: dict[int, list[float]] = {0: [], 1: []}
        rates: dict[int, list[float]] = {0: [], 1: []}
        for round_no in range(rounds):
            for wait in (0, 1) if round_no % 2 == 0 else (1, 0):
                event_id = f"e{wait}-{round_no}"
                latencies[wait] += sequential(stores[wait], event_id, joins)
                rates[wait].append(concurrent(stores[wait], event_id + "c", joins, threads))
        for store in stores.values():
            store.client.close()
    finally:
        db.dispose()
        folder.cleanup()
        replica.stop()
        primary.stop()
    summary: dict[str, Any] = {"joins": joins, "threads": threads, "rounds": rounds}
    for wait in (0, 1):
        summary[f"wait_{wait}"] = {
            "p50_ms": round(statistics.median(latencies[wait]) * 1000, 3),
            "p99_ms": round(percentile(latencies[wait], 0.99) * 1000, 3),
            "joins_per_second": round(statistics.median(rates[wait])),
        }
    summary["rate_ratio"] = round(summary["wait_1"]["joins_per_second"] / summary["wait_0"]["joins_per_second"], 2)
    return summary


def report(summary: dict[str, Any]) -> str:
    lines = [f"{summary['joins']} joins per run, {summary['threads']} threads, {summary['rounds']} rounds (loopback)"]
    for wait in (0, 1):
        figures = summary[f"wait_{wait}"]
        lines.append(
            f"  IDP_REDIS_WAIT_REPLICAS={wait}: p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, "
            f"{figures['joins_per_second']} joins/s"
        )
    lines.append(f"  joins/s with WAIT / without: {summary['rate_ratio']}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--joins", type=int, default=2000, help="joins per run")
    parser.add_argument("--threads", type=int, default=8, help="threads joining at once")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    summary = measure(args.joins, args.threads, args.rounds)
    print(report(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
