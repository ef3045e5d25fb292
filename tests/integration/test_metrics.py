"""``GET /metrics`` is valid Prometheus text with per-event gauges, request counts by route and worker stats."""

from __future__ import annotations

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import all_backends
from tests.worker_support import admitted_with_tokens, make_worker, webhook_receiver

pytestmark = pytest.mark.integration


def scrape(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


@all_backends
def test_per_event_gauges(client, services, event):
    services.events.create({"event_id": "other"})
    admitted_with_tokens(services, "sale", 3)
    for _ in range(4):
        services.room.join("sale")
    samples = scrape(client)
    assert value(samples, "idp_event_queue", event_id="sale") == 7
    assert value(samples, "idp_event_serving", event_id="sale") == 3
    assert value(samples, "idp_event_waiting", event_id="sale") == 4
    assert value(samples, "idp_event_active_tokens", event_id="sale") == 3
    assert value(samples, "idp_event_queue", event_id="other") == 0


def test_requests_are_counted_by_route_not_by_raw_path(client, services, event):
    for request_id in ("00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"):
        client.get("/api/queue_num", query_string={"event_id": "sale", "request_id": request_id})
    client.get("/admin/api/events/sale/inlet")
    client.get("/admin/api/events/other-event/inlet")
    client.get("/no/such/path/12345")
    samples = scrape(client)
    assert value(samples, "idp_http_requests_total", endpoint="/api/queue_num", method="GET", status="404") == 2
    assert (
        value(
            samples,
            "idp_http_requests_total",
            endpoint="/admin/api/events/<event_id>/inlet",
            method="GET",
            status="401",
        )
        == 2
    )
    assert value(samples, "idp_http_requests_total", endpoint="unmatched", method="GET", status="404") == 1
    assert value(samples, "idp_http_request_duration_seconds_count", endpoint="/api/queue_num") == 2
    assert not any("12345" in str(labels) or "other-event" in str(labels) for _name, labels in samples)


def test_worker_job_runs_failures_and_webhook_lag(client, services, event, clock, monkeypatch):
    with webhook_receiver(fail_first=100) as receiver:
        services.webhooks.create("sale", {"url": receiver.url})
        admitted_with_tokens(services, "sale", 1)
        worker = make_worker(services)

        def broken(_now):
            raise RuntimeError("boom")

        monkeypatch.setattr(worker.jobs[0], "run", broken)
        worker.tick()
        clock.advance(90)
        worker.tick()
        samples = scrape(client)
    assert value(samples, "idp_worker_job_runs_total", job="expiry_sweep") == 2
    assert value(samples, "idp_worker_job_failures_total", job="expiry_sweep") == 2
    assert value(samples, "idp_worker_job_runs_total", job="webhooks") == 2
    assert value(samples, "idp_worker_job_failures_total", job="webhooks") == 0
    hooks = [k for k in samples if k[0] == "idp_webhook_delivery_lag_seconds"]
    assert len(hooks) == 1 and samples[hooks[0]] == 90


def _gauge(text: str, name: str) -> str | None:
    match = re.search(rf"^{name} (\S+)$", text, flags=re.M)
    return match.group(1) if match else None


@pytest.mark.parametrize("backend_settings", ["sqlite", "redis"], indirect=True)
def test_the_worker_lease_gauge_follows_the_lease(client, services, clock):
    from idp.worker.jobs import default_lease

    assert _gauge(client.get("/metrics").get_data(as_text=True), "idp_worker_lease_held") == "0.0"
    lease = default_lease(services, "worker-a", 30_000)
    assert lease.acquire()
    assert _gauge(client.get("/metrics").get_data(as_text=True), "idp_worker_lease_held") == "1.0"
    lease.release()
    assert _gauge(client.get("/metrics").get_data(as_text=True), "idp_worker_lease_held") == "0.0"


def test_a_scrape_survives_a_queue_store_that_is_down(backend_settings, clock):
    import dataclasses

    from idp.app import create_app

    app = create_app(dataclasses.replace(backend_settings, redis_url="redis://127.0.0.1:1/0"), clock=clock)
    try:
        app.extensions["idp"].events.create({"event_id": "sale", "name": "Sale"})
        response = app.test_client().get("/metrics")
        assert response.status_code == 200
        text = response.get_data(as_text=True)
        assert _gauge(text, "idp_queue_store_up") == "0.0"
        assert _gauge(text, "idp_database_up") == "1.0"
        # Figures that need the store are left out rather than guessed; their families stay declared.
        assert "# TYPE idp_event_waiting gauge" in text
        assert 'idp_event_waiting{event_id="sale"}' not in text
    finally:
        app.extensions["idp"].close()


def test_families_nobody_counted_yet_are_declared_once(client):
    text = client.get("/metrics").get_data(as_text=True)
    for name in ("idp_http_requests_total", "idp_http_request_duration_seconds", "idp_joins_refused_total"):
        assert text.count(f"# TYPE {name} ") == 1, name
    client.get("/api/serving_num?event_id=none")
    text = client.get("/metrics").get_data(as_text=True)
    assert text.count("# TYPE idp_http_requests_total counter") == 1
    assert 'idp_http_requests_total{endpoint="/api/serving_num"' in text


@pytest.mark.parametrize("backend_settings", ["redis"], indirect=True)
def test_an_event_whose_queue_store_lost_its_places_is_reported(client, services, event, backend_settings):
    import redis

    for _ in range(3):
        assert client.post("/api/assign_queue_num", json={"event_id": "sale"}).status_code == 200
    text = client.get("/metrics").get_data(as_text=True)
    assert 'idp_queue_store_lost{event_id="sale"} 0.0' in text
    redis.Redis.from_url(backend_settings.redis_url).flushdb()  # the store comes back empty
    text = client.get("/metrics").get_data(as_text=True)
    assert 'idp_queue_store_lost{event_id="sale"} 1.0' in text
    assert 'idp_event_queue{event_id="sale"}' not in text  # no figure that may be wrong


def test_scraped_request_samples_are_those_of_observing_each_request(app, client, event):
    """Requests are queued and folded into the samples later; a scrape shows every one, exactly once."""
    from collections import deque

    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from idp.web.metrics import LATENCY_BUCKETS

    http = app.extensions["idp_metrics"]
    seen = []

    class Recording(deque):
        def append(self, item):
            seen.append(item)
            super().append(item)

    http.fold()
    assert not http._counters, "no request counted before this test's"
    http._pending = Recording()
    for _ in range(120):  # the fast path
        assert client.get("/api/serving_num", query_string={"event_id": "sale"}).status_code == 200
    for _ in range(30):
        assert client.post("/api/assign_queue_num", json={"event_id": "sale"}).status_code == 200
    for _ in range(10):  # Flask views and an unmatched path
        client.get("/api/serving_num", query_string={"event_id": "sale", "x": "1"})
        client.get("/no/such/path")
    observed = list(seen)
    text = client.get("/metrics").get_data(as_text=True)

    registry = CollectorRegistry(auto_describe=False)
    requests_ = Counter("idp_http_requests", "x", ["endpoint", "method", "status"], registry=registry)
    latency = Histogram(
        "idp_http_request_duration_seconds", "x", ["endpoint"], buckets=LATENCY_BUCKETS, registry=registry
    )
    for endpoint, method, status, seconds in observed:
        requests_.labels(endpoint, method, str(status)).inc()
        latency.labels(endpoint).observe(seconds)
    expected = {
        line
        for line in generate_latest(registry).decode().splitlines()
        if line.startswith("idp_http_") and "_created" not in line
    }
    scraped = {line for line in text.splitlines() if line.startswith("idp_http_") and "_created" not in line}
    assert len(observed) == 170
    assert scraped == expected
