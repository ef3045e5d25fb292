"""``GET /metrics``: Prometheus text from prometheus_client, correct under several gunicorn workers.

Request counts and latencies are counted per process; under gunicorn ``PROMETHEUS_MULTIPROC_DIR`` is set
(``idp/gunicorn_conf.py``) and every worker writes its samples there, so any worker's ``/metrics`` merges
all of them. Per-event gauges (queue, serving, waiting, active tokens), the worker's job runs and
failures and the webhook delivery lag are read from the stores at scrape time, so they are the same
whichever worker answers and need no process to remember anything.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from idp.errors import UnavailableError
from idp.periodic import Periodic
from idp.queue.engine import StoreLostError
from idp.queue.redis_store import RedisQueueStore

if TYPE_CHECKING:
    from idp.services import Services

log = logging.getLogger("idp.metrics")

MAX_EVENTS = 200
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def multiprocess_dir() -> str | None:
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return folder if folder and os.path.isdir(folder) else None


class HttpMetrics:
    """Requests by endpoint (the URL rule, never the raw path), method and status; latency histograms.

    A request only appends its observation to a queue (``observe``): writing the samples themselves
    (three values, each under a lock and, under gunicorn, packed into a memory-mapped file) cost a
    request as much as building its log line. The queue is folded into the counter and the histogram,
    one write per child for all the requests since the last fold, by a daemon thread every
    ``FOLD_SECONDS`` (under gevent a greenlet), right before this process renders ``/metrics`` and when
    the process exits. The samples are then exactly those observing each request would have written: the
    same counts, the same buckets and the same float sum, added in the order the requests were observed.
    So another worker's requests reach a scrape at most ``FOLD_SECONDS`` late, and an idle worker holds
    none back.
    """

    def __init__(self) -> None:
        self.requests = Counter(
            "idp_http_requests",
            "HTTP requests by endpoint, method and status",
            ["endpoint", "method", "status"],
            registry=None,
        )
        self.latency = Histogram(
            "idp_http_request_duration_seconds",
            "HTTP request latency by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=None,
        )

        # The labelled children, looked up once: labels() validates and locks on every call. Bounded by
        # the routes, methods and statuses the app answers (unmatched paths share one endpoint label).
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._histograms: dict[str, Histogram] = {}
        # Observations not yet folded, oldest first: deque.append and popleft are atomic, so requests
        # on several threads (or greenlets) queue them without a lock.
        self._pending: deque[tuple[str, str, int, float]] = deque()
        # Folds one at a time: a histogram's sum is read, added to and written back.
        self._fold_lock = threading.Lock()
        _register(self)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        pending = self._pending
        pending.append((endpoint, method, status, seconds))
        if not _flusher.running:
            _flusher.start()
        if len(pending) >= FOLD_AT:  # the flusher is behind (or gone): this request folds, so memory stays bounded
            self.fold()

    def fold(self) -> None:
        """Write every observation queued so far into the counter and the histogram."""
        pending = self._pending
        if not pending:
            return
        with self._fold_lock:
            counts: dict[tuple[str, str, int], int] = {}
            latencies: dict[str, list[float]] = {}
            popleft = pending.popleft
            # Only what is queued now: requests that keep coming wait for the next fold.
            for _ in range(len(pending)):
                endpoint, method, status, seconds = popleft()
                key = (endpoint, method, status)
                counts[key] = counts.get(key, 0) + 1
                values = latencies.get(endpoint)
                if values is None:
                    latencies[endpoint] = [seconds]
                else:
                    values.append(seconds)
            for key, count in counts.items():
                self._counter(key).inc(count)
            for endpoint, values in latencies.items():
                _observe_all(self._histogram(endpoint), values)

    def _counter(self, key: tuple[str, str, int]) -> Counter:
        child = self._counters.get(key)
        if child is None:
            endpoint, method, status = key
            child = self.requests.labels(endpoint, method, str(status))
            if len(self._counters) < 10_000:
                self._counters[key] = child
        return child

    def _histogram(self, endpoint: str) -> Histogram:
        child = self._histograms.get(endpoint)
        if child is None:
            child = self.latency.labels(endpoint)
            if len(self._histograms) < 10_000:
                self._histograms[endpoint] = child
        return child


def _observe_all(child: Histogram, values: list[float]) -> None:
    """``child.observe(v)`` for every value in order, writing each bucket and the sum once.

    ``Histogram.observe`` adds the value to the sum and counts it in the first bucket whose upper bound
    is at least the value (buckets are stored per bucket, made cumulative when collected); a NaN, which
    no bound is at least, adds to the sum and to no bucket. The sum is added value by value, as that
    would, so the float result is the same to the last bit.
    """
    bounds: list[float] | None = getattr(child, "_upper_bounds", None)
    buckets: list[Any] | None = getattr(child, "_buckets", None)
    total_value: Any = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total_value is None or len(bounds) != len(buckets):
        for value in values:  # a prometheus_client laid out otherwise: its own observe, one by one
            child.observe(value)
        return
    last = len(bounds)
    hits = [0] * last
    total = total_value.get()
    for value in values:
        total += value
        index = bisect_left(bounds, value)
        if index < last and value == value:  # noqa: PLR0124 - NaN lands in no bucket
            hits[index] += 1
    total_value.set(total)
    for index, count in enumerate(hits):
        if count:
            buckets[index].inc(count)


# Every HttpMetrics of this process, for the flusher, the fold at exit and the reset in a forked child.
_instances: weakref.WeakSet[HttpMetrics] = weakref.WeakSet()
_instances_lock = threading.Lock()


def _register(metrics: HttpMetrics) -> None:
    with _instances_lock:
        _instances.add(metrics)


def fold_all() -> None:
    """Fold the observations every ``HttpMetrics`` of this process holds (the flusher; process exit)."""
    with _instances_lock:
        instances = list(_instances)
    for metrics in instances:
        try:
            metrics.fold()
        except Exception:  # noqa: BLE001 - one failing write must not stop the others (or the flusher)
            log.warning("could not count requests")


# Observations wait at most about this long before a fold writes them, or until this many are queued.
FOLD_SECONDS = 0.25
FOLD_AT = 4096


# The daemon thread (a greenlet under gevent) that folds every FOLD_SECONDS, one per process, started
# by the first observation in the process that serves (idp.periodic).
_flusher = Periodic("idp-metrics-fold", lambda: FOLD_SECONDS, fold_all)


def _after_fork_in_child() -> None:
    # Only the forking thread lives on: locks another thread held are made anew, and the parent's
    # queued observations are the parent's to write (this process writes its own samples).
    global _instances_lock
    _flusher.stop()  # a flusher greenlet copied by the fork ends
    _instances_lock = threading.Lock()
    for metrics in list(_instances):
        metrics._pending = deque()
        metrics._fold_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(fold_all)


# Failures a scrape survives: the figures it cannot read are left out and the *_up gauges say why.
_UNAVAILABLE: tuple[type[BaseException], ...] = (UnavailableError, RedisError, SQLAlchemyError, OSError)


class StoreCollector(Collector):
    """Gauges read from the queue store and the database when scraped.

    A scrape never fails because a backing service is down: ``idp_queue_store_up`` and
    ``idp_database_up`` fall to 0, the figures that need the missing service are left out, and the
    alert rules in ``deploy/prometheus/alerts.yaml`` fire on the gauges.
    """

    def __init__(self, services: Services) -> None:
        self.services = services

    @staticmethod
    def _up(name: str, ping: Callable[[], object]) -> bool:
        try:
            ping()
            return True
        except _UNAVAILABLE as exc:
            log.warning("metrics: a backing service is unavailable", extra={"check": name, "error": type(exc).__name__})
            return False

    def collect(self) -> Iterator[Metric]:
        from idp.worker.jobs import active_tokens, default_lease, job_stats

        svc = self.services
        now = int(svc.clock.now())
        database_ok = self._up("database", svc.db.ping)
        store_ok = self._up("queue_store", svc.store.ping)
        yield GaugeMetricFamily(
            "idp_database_up", "1 when the database answers this process, else 0", value=int(database_ok)
        )
        yield GaugeMetricFamily(
            "idp_queue_store_up", "1 when the queue store answers this process, else 0", value=int(store_ok)
        )

        queue = GaugeMetricFamily("idp_event_queue", "Positions handed out (queue counter)", labels=["event_id"])
        serving = GaugeMetricFamily("idp_event_serving", "Serving counter", labels=["event_id"])
        waiting = GaugeMetricFamily("idp_event_waiting", "Visitors waiting", labels=["event_id"])
        active = GaugeMetricFamily("idp_event_active_tokens", "Active sessions (tokens)", labels=["event_id"])
        lost = GaugeMetricFamily(
            "idp_queue_store_lost",
            "1 while an event refuses joins because its queue store lost acknowledged state, else 0",
            labels=["event_id"],
        )
        losses = CounterMetricFamily(
            "idp_queue_store_losses", "Losses of an event's queue store state detected", labels=["event_id"]
        )
        lost_positions = GaugeMetricFamily(
            "idp_queue_lost_positions",
            "Positions skipped after queue store losses (held by nobody)",
            labels=["event_id"],
        )
        if database_ok and store_ok:
            try:
                ledger = svc.store.ledger if isinstance(svc.store, RedisQueueStore) else None
                rows = {row.event_id: row for row in ledger.all()} if ledger is not None else {}
                for event in svc.events.list(limit=MAX_EVENTS):
                    eid = event.event_id
                    row = rows.get(eid)
                    try:
                        counters = svc.room.counters(eid)
                    except StoreLostError:
                        lost.add_metric([eid], 1)
                        continue
                    finally:
                        if row is not None:
                            losses.add_metric([eid], row.losses)
                            lost_positions.add_metric([eid], row.lost_positions)
                    queue.add_metric([eid], counters.queue)
                    serving.add_metric([eid], counters.serving)
                    waiting.add_metric([eid], counters.waiting)
                    active.add_metric([eid], active_tokens(svc, eid, now))
                    lost.add_metric([eid], int(row is not None and row.status == "lost"))
            except _UNAVAILABLE as exc:
                log.warning("metrics: per-event figures unavailable", extra={"error": type(exc).__name__})
        yield from (queue, serving, waiting, active, lost, losses, lost_positions)

        runs = CounterMetricFamily("idp_worker_job_runs", "Worker job runs", labels=["job"])
        failures = CounterMetricFamily("idp_worker_job_failures", "Worker job failures", labels=["job"])
        last = GaugeMetricFamily("idp_worker_job_last_run_timestamp_seconds", "Last run of a job", labels=["job"])
        lease: list[int] = []
        if database_ok:
            try:
                for stat in job_stats(svc.db):
                    runs.add_metric([stat.job], stat.runs)
                    failures.add_metric([stat.job], stat.failures)
                    last.add_metric([stat.job], stat.last_run_at)
                if store_ok or not svc.settings.redis_url:
                    lease.append(int(default_lease(svc, "metrics", 0).held()))
            except _UNAVAILABLE as exc:
                log.warning("metrics: worker figures unavailable", extra={"error": type(exc).__name__})
        yield from (runs, failures, last)
        held = GaugeMetricFamily(
            "idp_worker_lease_held", "1 while some idp worker holds the lease (so the periodic jobs run), else 0"
        )
        for value in lease:
            held.add_metric([], value)
        yield held

        lag = GaugeMetricFamily(
            "idp_webhook_delivery_lag_seconds",
            "Age of the oldest notification not yet delivered to a subscriber",
            labels=["event_id", "webhook"],
        )
        if database_ok:
            try:
                for event_id, webhook_id, seconds in svc.webhooks.lags(now):
                    lag.add_metric([event_id, webhook_id], seconds)
            except _UNAVAILABLE as exc:
                log.warning("metrics: webhook figures unavailable", extra={"error": type(exc).__name__})
        yield lag


# Families every scrape declares, with their type and help, even before anything was counted (a fresh
# server, or a gunicorn whose workers have not answered yet): alert rules and dashboards can name them
# from the start. A part of the service that counts one of them registers it itself; a declaration is
# added only when no collector produced the family.
DECLARED: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "idp_http_requests": ("counter", "HTTP requests by endpoint, method and status", ("endpoint", "method", "status")),
    "idp_http_request_duration_seconds": ("histogram", "HTTP request latency by endpoint", ("endpoint",)),
    "idp_joins_refused": (
        "counter",
        "Joins refused by rate limits and challenges, by event and reason",
        ("event_id", "reason"),
    ),
}


def _declaration(name: str) -> Metric:
    kind, documentation, labels = DECLARED[name]
    if kind == "counter":
        return CounterMetricFamily(name, documentation, labels=list(labels))
    if kind == "histogram":
        return HistogramMetricFamily(name, documentation, labels=list(labels))
    return GaugeMetricFamily(name, documentation, labels=list(labels))


class _Declared:
    """What a registry collects, plus a declaration for each family of ``DECLARED`` it lacks."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        seen: set[str] = set()
        for family in self.registry.collect():
            seen.add(family.name)
            yield family
        for name in DECLARED:
            if name not in seen:
                yield _declaration(name)


def init_app(app: Flask, services: Services) -> None:
    http = HttpMetrics()
    app.extensions["idp_metrics"] = http

    @app.before_request
    def _metrics_start() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _metrics_count(response: Response) -> Response:
        started = g.get("metrics_started")
        rule = request.url_rule
        endpoint = rule.rule if rule is not None else "unmatched"
        try:
            http.observe(
                endpoint, request.method, response.status_code, time.perf_counter() - started if started else 0.0
            )
        except Exception:  # noqa: BLE001 - counting must never fail a request
            log.warning("could not count a request")
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        # This process's requests so far; other workers fold theirs every FOLD_SECONDS.
        try:
            http.fold()
        except Exception:  # noqa: BLE001 - a scrape still answers, as a request is never failed by counting
            log.warning("could not count requests")
        registry = CollectorRegistry(auto_describe=False)
        folder = multiprocess_dir()
        if folder:
            from prometheus_client import multiprocess

            multiprocess.MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
        else:
            registry.register(http.requests)
            registry.register(http.latency)
            for counter in services.defence.metrics.all():
                registry.register(counter)
        registry.register(StoreCollector(services))
        response = Response(generate_latest(_Declared(registry)), mimetype=CONTENT_TYPE_LATEST.split(";")[0])
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        response.headers["Cache-Control"] = "no-store"
        return response
