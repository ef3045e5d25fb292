"""Redis store at 1,000 vs 1,000,000 queued: enqueue and lookup latency, and memory per waiting visitor.

DESIGN.md §4 and §8: every operation is O(1) in the queue length (latency within 10% whatever the
length), and a waiting visitor costs at most 150 bytes of Redis memory. Two events are filled through the
store's own enqueue script (pipelined, arrivals spread at 1,000 per second), then timed operations
alternate between the small and the large event in batches, so both see the same machine load:

* ``enqueue``: ``RedisQueueStore.enqueue`` (one Lua call, the join);
* ``position``: ``RedisQueueStore.entry`` for request ids sampled across the whole queue (queue_num);
* ``status``: ``RedisQueueStore.status`` for the same ids (queue_pos_expiry, generate_token's check).

Memory is ``MEMORY USAGE`` (exact, ``SAMPLES 0``) summed over the event's keys, divided by the number of
visitors; ``used_memory`` before and after the fill is shown too, but other clients of the same Redis
move it. Uses a benchmark-only Redis database, flushed before and after. Loopback only.

    python bench/queue_scale.py [--large 1000000] [--ops 4000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import BENCH_REDIS_URL, loopback_only  # noqa: E402
from idp.crypto import LookupKey  # noqa: E402
from idp.queue import at_rest, keys  # noqa: E402
from idp.queue.engine import ExpiryPolicy  # noqa: E402
from idp.queue.ledger import Ledger  # noqa: E402
from idp.queue.redis_store import RedisQueueStore  # noqa: E402
from idp.storage.db import Database, upgrade_database  # noqa: E402

START = 1_800_000_000
ARRIVALS_PER_SECOND = 1_000
FILL_BATCH = 20_000
FILL_PER_CALL = 1_000
MEMORY_BUDGET = 150
LATENCY_BUDGET = 0.10  # large within 10% of small
FILL_DEADLINE_SECONDS = 900


# Writes exactly what enqueue.lua writes for each of many joins, in one call: the fill of ten million
# visitors then takes a minute instead of most of an hour on a shared machine. The joins that are timed
# go through the store's own enqueue (identity check, reserved positions and all).
BULK_ENQUEUE = """
local n = (#ARGV - 1) / 2
local last = tonumber(redis.call('HGET', KEYS[1], 'last_time') or '0')
local pos = tonumber(redis.call('HGET', KEYS[1], 'queue') or '0')
local limit = tonumber(redis.call('HGET', KEYS[1], 'limit') or '0')
if pos + n > limit then return redis.error_reply('bulk fill beyond the reserved positions') end
for i = 1, n do
  local rid, t = ARGV[2 * i], tonumber(ARGV[2 * i + 1])
  pos = pos + 1
  if t < last then t = last end
  if t > last then
    redis.call('ZADD', KEYS[3], pos, t)
    last = t
  end
  redis.call('HSET', KEYS[2], rid, pos)
end
redis.call('HSET', KEYS[1], 'queue', pos, 'last_time', last)
return pos
"""


def fill(store: RedisQueueStore, event_id: str, count: int, rng: random.Random, sample: int) -> list[str]:
    """Enqueue ``count`` visitors; return a sample of their request ids.

    The first join goes through the store (it gives the event its identity and its first entry time);
    the ledger then reserves every position of the fill at once, as it would block by block in service,
    and the rest are written by ``BULK_ENQUEUE``, the same structures as ``enqueue.lua`` writes.
    """
    bulk = store.client.register_script(BULK_ENQUEUE)
    event_keys = keys.event_keys(event_id)
    keep_every = max(1, count // sample)
    kept: list[str] = [store.enqueue(event_id, str(uuid.uuid4()), START, None).request_id]
    epoch = store._known_for(event_id).epoch
    reserved = store.ledger.reserve(event_id, epoch, count, START)
    store._call("extend", event_id, lambda _k: [reserved], create=True)
    deadline = time.monotonic() + FILL_DEADLINE_SECONDS
    done = 1
    while done < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"filling {event_id} took longer than {FILL_DEADLINE_SECONDS}s; stopped")
        pipe = store.client.pipeline(transaction=False)
        for _call in range(FILL_BATCH // FILL_PER_CALL):
            batch = min(FILL_PER_CALL, count - done)
            if batch <= 0:
                break
            args: list[Any] = [epoch]
            for i in range(batch):
                rid = uuid.UUID(int=rng.getrandbits(128), version=4)
                position = done + i
                if position % keep_every == 0:
                    kept.append(str(rid))
                args.extend((at_rest.redis_tag(store.lookup, str(rid)), START + position // ARRIVALS_PER_SECOND))
            bulk(keys=event_keys, args=args, client=pipe)
            done += batch
        pipe.execute()
    return kept


def slow_client() -> Any:
    """A client without a socket timeout: an exact MEMORY USAGE or a FLUSHDB of ten million fields takes
    seconds, longer than the store's own timeout."""
    import redis

    return redis.Redis.from_url(BENCH_REDIS_URL, socket_timeout=None)


def event_memory(store: RedisQueueStore, event_id: str) -> int:
    client = slow_client()
    try:
        total = 0
        for key in keys.event_keys(event_id):
            used = client.memory_usage(key, samples=0)
            total += int(used or 0)
        return total
    finally:
        client.close()


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def timed(func: Any) -> float:
    started = time.perf_counter()
    func()
    return (time.perf_counter() - started) * 1e6


def measure(large: int, small: int, ops: int, batches: int = 20, seed: int = 7) -> dict[str, Any]:
    loopback_only(BENCH_REDIS_URL)
    folder = tempfile.TemporaryDirectory(prefix="idp-bench-")
    db_url = f"sqlite:///{folder.name}/ledger.sqlite3"
    upgrade_database(db_url)
    db = Database(db_url)
    store = RedisQueueStore.from_url(BENCH_REDIS_URL, Ledger(db), LookupKey(secrets.token_bytes(32)))
    rng = random.Random(seed)
    policy = ExpiryPolicy()
    try:
        flusher = slow_client()
        flusher.flushdb()
        flusher.close()
        used_before = int(store.client.info("memory")["used_memory"])
        fill_started = time.perf_counter()
        samples = {
            "small": fill(store, "small", small, rng, sample=ops),
            "large": fill(store, "large", large, rng, sample=ops),
        }
        fill_seconds = time.perf_counter() - fill_started
        used_after = int(store.client.info("memory")["used_memory"])
        sizes = {"small": small, "large": large}
        memory = {name: event_memory(store, name) for name in sizes}
        now = START + large // ARRIVALS_PER_SECOND + 1

        results: dict[str, dict[str, list[float]]] = {
            name: {"enqueue": [], "position": [], "status": []} for name in sizes
        }
        per_batch = max(1, ops // batches)
        for batch in range(batches):
            for name in ("small", "large") if batch % 2 == 0 else ("large", "small"):
                ids = samples[name]
                for i in range(per_batch):
                    rid = ids[(batch * per_batch + i) % len(ids)]
                    new_rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                    results[name]["enqueue"].append(timed(lambda n=name, r=new_rid: store.enqueue(n, r, now, None)))
                    results[name]["position"].append(timed(lambda n=name, r=rid: store.entry(n, r)))
                    results[name]["status"].append(timed(lambda n=name, r=rid: store.status(n, r, now, policy, False)))
        # Every sampled id is found at a position (the lookups above were real hits).
        for name, ids in samples.items():
            for rid in ids[:50]:
                if store.entry(name, rid) is None:
                    raise RuntimeError(f"sampled request id {rid} missing from {name}")

        summary: dict[str, Any] = {
            "sizes": sizes,
            "fill_seconds": round(fill_seconds, 1),
            "ops_per_kind": per_batch * batches,
            "operations": {},
        }
        for op in ("enqueue", "position", "status"):
            row: dict[str, Any] = {}
            for name in sizes:
                values = results[name][op]
                row[name] = {
                    "median_us": round(statistics.median(values), 1),
                    "p99_us": round(percentile(values, 99), 1),
                }
            ratio = row["large"]["median_us"] / row["small"]["median_us"]
            row["median_ratio"] = round(ratio, 3)
            row["within_10_percent"] = ratio <= 1 + LATENCY_BUDGET
            summary["operations"][op] = row
        per_visitor = memory["large"] / large
        summary["memory"] = {
            "event_bytes": memory,
            "bytes_per_visitor": round(per_visitor, 1),
            "budget": MEMORY_BUDGET,
            "meets_budget": per_visitor <= MEMORY_BUDGET,
            "used_memory_delta_per_visitor": round((used_after - used_before) / (large + small), 1),
        }
        return summary
    finally:
        flusher = slow_client()
        flusher.flushdb()
        flusher.close()
        store.client.close()
        db.dispose()
        folder.cleanup()


def report(summary: dict[str, Any]) -> str:
    sizes = summary["sizes"]
    lines = [
        f"queued: small {sizes['small']:,}, large {sizes['large']:,} (filled in {summary['fill_seconds']}s); "
        f"{summary['ops_per_kind']:,} timed operations per kind and size",
        f"{'operation':<10} {'small median':>13} {'small p99':>10} {'large median':>13} {'large p99':>10} "
        f"{'large/small':>12}",
    ]
    for op, row in summary["operations"].items():
        lines.append(
            f"{op:<10} {row['small']['median_us']:>10.0f} us {row['small']['p99_us']:>7.0f} us "
            f"{row['large']['median_us']:>10.0f} us {row['large']['p99_us']:>7.0f} us {row['median_ratio']:>11.2f}x"
        )
    memory = summary["memory"]
    lines.append(
        f"memory per waiting visitor: {memory['bytes_per_visitor']} bytes (MEMORY USAGE of the event's keys; "
        f"budget <= {memory['budget']}); used_memory delta per visitor {memory['used_memory_delta_per_visitor']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", type=int, default=1_000_000, help="visitors in the large queue")
    parser.add_argument("--small", type=int, default=1_000, help="visitors in the small queue")
    parser.add_argument("--ops", type=int, default=4_000, help="timed operations per kind and size")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not (1 <= args.small <= args.large <= 10_000_000 and 100 <= args.ops <= 50_000):
        parser.error("1 <= --small <= --large <= 10,000,000 and 100 <= --ops <= 50,000")
    summary = measure(args.large, args.small, args.ops)
    print(report(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 0 if summary["memory"]["meets_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())
