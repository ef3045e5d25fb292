"""``GET /metrics``: Prometheus text from prometheus_client, correct under several gunicorn workers.

Request counts and latencies are counted per process; under gunicorn ``PROMETHEUS_MULTIPROC_DIR`` is set
(``idp/gunicorn_conf.py``) and every worker writes its samples there, so any worker's ``/metrics`` merges
all of them. Per-event gauges (queue, serving, waiting, active tokens), the worker's job runs and
failures and the webhook delivery lag are read from the stores at scrape time, so they are the same
whichever worker answers and need no process to remember anything.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import select

from idp.storage.models import WorkerJobStat

log = logging.getLogger("idp.metrics")

MAX_EVENTS = 200
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def multiprocess_dir() -> str | None:
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return folder if folder and os.path.isdir(folder) else None


class HttpMetrics:
    """Requests by endpoint (the URL rule, never the raw path), method and status; latency histograms."""

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

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)


class StoreCollector(Collector):
    """Gauges read from the queue store and the database when scraped."""

    def __init__(self, services: Any) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        from idp.worker import active_tokens

        svc = self.services
        now = int(svc.clock.now())
        queue = GaugeMetricFamily("idp_event_queue", "Positions handed out (queue counter)", labels=["event_id"])
        serving = GaugeMetricFamily("idp_event_serving", "Serving counter", labels=["event_id"])
        waiting = GaugeMetricFamily("idp_event_waiting", "Visitors waiting", labels=["event_id"])
        active = GaugeMetricFamily("idp_event_active_tokens", "Active sessions (tokens)", labels=["event_id"])
        for event in svc.events.list(limit=MAX_EVENTS):
            eid = event.event_id
            counters = svc.room.counters(eid)
            queue.add_metric([eid], counters.queue)
            serving.add_metric([eid], counters.serving)
            waiting.add_metric([eid], counters.waiting)
            active.add_metric([eid], active_tokens(svc, eid, now))
        yield from (queue, serving, waiting, active)

        runs = CounterMetricFamily("idp_worker_job_runs", "Worker job runs", labels=["job"])
        failures = CounterMetricFamily("idp_worker_job_failures", "Worker job failures", labels=["job"])
        last = GaugeMetricFamily("idp_worker_job_last_run_timestamp_seconds", "Last run of a job", labels=["job"])
        with svc.db.session(readonly=True) as session:
            for stat in session.execute(select(WorkerJobStat).order_by(WorkerJobStat.job)).scalars():
                runs.add_metric([stat.job], stat.runs)
                failures.add_metric([stat.job], stat.failures)
                last.add_metric([stat.job], stat.last_run_at)
        yield from (runs, failures, last)

        lag = GaugeMetricFamily(
            "idp_webhook_delivery_lag_seconds",
            "Age of the oldest notification not yet delivered to a subscriber",
            labels=["event_id", "webhook"],
        )
        webhooks = getattr(svc, "webhooks", None)
        if webhooks is not None:
            for event_id, webhook_id, seconds in webhooks.lags(now):
                lag.add_metric([event_id, webhook_id], seconds)
        yield lag


def init_app(app: Flask, services: Any) -> None:
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
        registry = CollectorRegistry(auto_describe=False)
        folder = multiprocess_dir()
        if folder:
            from prometheus_client import multiprocess

            multiprocess.MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
        else:
            registry.register(http.requests)
            registry.register(http.latency)
            defence = getattr(services, "defence", None)
            for counter in defence.metrics.all() if defence is not None else []:
                registry.register(counter)
        registry.register(StoreCollector(services))
        response = Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST.split(";")[0])
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        response.headers["Cache-Control"] = "no-store"
        return response
