"""Request counts and latencies are queued per request and folded later: never lost, never doubled.

Each test compares what ``HttpMetrics`` exposes with a reference Counter and Histogram that observe
every request as it happens, as prometheus_client is meant to be used.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from idp.web import metrics as web_metrics
from idp.web.metrics import LATENCY_BUCKETS, HttpMetrics

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
ENDPOINTS = ("/api/serving_num", "/api/assign_queue_num", "/metrics", "unmatched")


def _reference() -> tuple[CollectorRegistry, Counter, Histogram]:
    registry = CollectorRegistry(auto_describe=False)
    requests = Counter(
        "idp_http_requests",
        "HTTP requests by endpoint, method and status",
        ["endpoint", "method", "status"],
        registry=registry,
    )
    latency = Histogram(
        "idp_http_request_duration_seconds",
        "HTTP request latency by endpoint",
        ["endpoint"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    return registry, requests, latency


def _exposed(registry: CollectorRegistry) -> list[str]:
    # The text a scrape shows, without the creation timestamps (which differ between any two metrics).
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created" not in line]


def _registry_of(http: HttpMetrics) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(http.requests)
    registry.register(http.latency)
    return registry


def _observations(count: int, seed: int) -> list[tuple[str, str, int, float]]:
    rng = random.Random(seed)
    bounds = [*LATENCY_BUCKETS, 20.0]
    values = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.2:
            seconds = rng.choice(bounds)  # exactly on a bucket bound: counted in that bucket
        elif kind < 0.25:
            seconds = 0.0
        else:
            seconds = rng.expovariate(1 / 0.03)
        values.append((rng.choice(ENDPOINTS), rng.choice(("GET", "POST")), rng.choice((200, 404, 503)), seconds))
    return values


def test_folded_samples_are_those_of_observing_each_request() -> None:
    http = HttpMetrics()
    registry, requests, latency = _reference()
    observations = _observations(5_000, seed=1)
    for number, (endpoint, method, status, seconds) in enumerate(observations, 1):
        http.observe(endpoint, method, status, seconds)
        requests.labels(endpoint, method, str(status)).inc()
        latency.labels(endpoint).observe(seconds)
        if number % 777 == 0:
            http.fold()  # folds at arbitrary points in between
    http.fold()
    assert _exposed(_registry_of(http)) == _exposed(registry)
    http.fold()  # nothing left to fold: nothing changes
    assert _exposed(_registry_of(http)) == _exposed(registry)


def test_the_histogram_sum_is_the_same_float_as_adding_each_value() -> None:
    # A sum that depends on the order of its additions: adding each fold's total to it would differ.
    http = HttpMetrics()
    _, _, latency = _reference()
    batches = [[1.0], [1e-16, 1e-16, 1e-16, 1e-16]]
    for batch in batches:
        for seconds in batch:
            http.observe("/api/serving_num", "GET", 200, seconds)
            latency.labels("/api/serving_num").observe(seconds)
        http.fold()
    folded = http.latency.labels("/api/serving_num")._sum.get()  # type: ignore[attr-defined]
    assert folded == latency.labels("/api/serving_num")._sum.get()  # type: ignore[attr-defined]
    assert folded != 1.0 + sum(batches[1])  # what adding the second fold's total would give


def test_a_nan_latency_adds_to_the_sum_and_to_no_bucket_as_observe_does() -> None:
    http = HttpMetrics()
    registry, requests, latency = _reference()
    for seconds in (0.01, float("nan"), 0.5):
        http.observe("/x", "GET", 200, seconds)
        requests.labels("/x", "GET", "200").inc()
        latency.labels("/x").observe(seconds)
    http.fold()
    assert _exposed(_registry_of(http)) == _exposed(registry)


def test_folds_racing_with_requests_on_several_threads_lose_and_double_nothing() -> None:
    http = HttpMetrics()
    threads_count, per_thread = 6, 4_000
    batches = [_observations(per_thread, seed=seed) for seed in range(threads_count)]
    start = threading.Barrier(threads_count + 1)
    done = threading.Event()

    def serve(batch: list[tuple[str, str, int, float]]) -> None:
        start.wait()
        for endpoint, method, status, seconds in batch:
            http.observe(endpoint, method, status, seconds)

    def fold_meanwhile() -> None:
        start.wait()
        while not done.is_set():
            http.fold()

    workers = [threading.Thread(target=serve, args=(batch,)) for batch in batches]
    folder = threading.Thread(target=fold_meanwhile)
    for thread in [*workers, folder]:
        thread.start()
    for thread in workers:
        thread.join()
    done.set()
    folder.join()
    web_metrics.fold_all()  # as the flusher, a scrape or the process exit would

    registry, requests, latency = _reference()
    for batch in batches:
        for endpoint, method, status, seconds in batch:
            requests.labels(endpoint, method, str(status)).inc()
            latency.labels(endpoint).observe(seconds)
    # Children are listed in the order they were first seen, which the threads decide.
    exposed, expected = sorted(_exposed(_registry_of(http))), sorted(_exposed(registry))
    # Counts and buckets exactly; the sums only up to the order the threads' values were added in.
    assert [line for line in exposed if "_sum{" not in line] == [line for line in expected if "_sum{" not in line]
    sums = [line for line in exposed if "_sum{" in line]
    for line, reference in zip(sums, [line for line in expected if "_sum{" in line], strict=True):
        assert line.split(" ")[0] == reference.split(" ")[0]
        assert float(line.split(" ")[1]) == pytest.approx(float(reference.split(" ")[1]), rel=1e-9)


def test_the_flusher_folds_without_being_asked() -> None:
    import time

    http = HttpMetrics()
    http.observe("/api/serving_num", "GET", 200, 0.004)
    deadline = time.monotonic() + 10 * web_metrics.FOLD_SECONDS + 2
    while http._pending and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not http._pending
    assert http.requests.labels("/api/serving_num", "GET", "200")._value.get() == 1  # type: ignore[attr-defined]


def test_a_request_folds_when_the_queue_is_full_so_memory_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_metrics, "FOLD_AT", 5)
    monkeypatch.setattr(web_metrics._flusher, "running", True)  # as if a flusher ran but never woke
    http = HttpMetrics()
    registry, requests, latency = _reference()
    for endpoint, method, status, seconds in _observations(23, seed=7):
        http.observe(endpoint, method, status, seconds)
        requests.labels(endpoint, method, str(status)).inc()
        latency.labels(endpoint).observe(seconds)
        assert len(http._pending) < 5
    http.fold()
    assert _exposed(_registry_of(http)) == _exposed(registry)


# Run in a fresh interpreter: prometheus_client chooses its multiprocess values when it is imported.
_FORKED = """
import os, sys
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from idp.web.metrics import HttpMetrics, fold_all

http = HttpMetrics()
for _ in range(3):
    http.observe("/api/serving_num", "GET", 200, 0.001)   # queued in the parent when it forks
pid = os.fork()
if pid == 0:
    for _ in range(5):
        http.observe("/api/serving_num", "GET", 200, 0.02)
    sys.exit(0)  # folded at exit
_, status = os.waitpid(pid, 0)
assert status == 0, status
http.observe("/api/assign_queue_num", "POST", 200, 0.3)
fold_all()
registry = CollectorRegistry()
multiprocess.MultiProcessCollector(registry, path=os.environ["PROMETHEUS_MULTIPROC_DIR"])
sys.stdout.write(generate_latest(registry).decode())
"""


def test_workers_forked_with_queued_requests_count_each_request_once(tmp_path: Path) -> None:
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", _FORKED], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = set(result.stdout.splitlines())
    assert 'idp_http_requests_total{endpoint="/api/serving_num",method="GET",status="200"} 8.0' in lines
    assert 'idp_http_requests_total{endpoint="/api/assign_queue_num",method="POST",status="200"} 1.0' in lines
    assert 'idp_http_request_duration_seconds_bucket{endpoint="/api/serving_num",le="0.002"} 3.0' in lines
    assert 'idp_http_request_duration_seconds_bucket{endpoint="/api/serving_num",le="0.025"} 8.0' in lines
    assert 'idp_http_request_duration_seconds_count{endpoint="/api/serving_num"} 8.0' in lines
    assert 'idp_http_request_duration_seconds_bucket{endpoint="/api/assign_queue_num",le="0.25"} 0.0' in lines
    assert 'idp_http_request_duration_seconds_bucket{endpoint="/api/assign_queue_num",le="0.5"} 1.0' in lines
