"""``/metrics`` on a real gunicorn with several workers: every worker's counts, whichever answers."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e


def scrape(url):
    response = requests.get(url + "/metrics", timeout=10)
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def get_serving(url):
    # A new connection per request, several at once, so the requests spread over the workers.
    response = requests.get(url + "/api/serving_num", params={"event_id": "sale"}, timeout=10)
    return response.status_code


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_metrics_merge_all_gunicorn_workers(live_server, backend, tmp_path):
    folder = tmp_path / "prometheus"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"stale")  # left by an earlier run: removed at start
    server = live_server(backend, IDP_WORKERS=3, PROMETHEUS_MULTIPROC_DIR=str(folder))
    services = server.services()
    services.events.create({"event_id": "sale"})
    for _ in range(5):
        requests.post(server.url + "/api/assign_queue_num", json={"event_id": "sale"}, timeout=10)
    count = 90
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(get_serving, [server.url] * count))
    assert statuses == [200] * count
    key = ("idp_http_requests_total", (("endpoint", "/api/serving_num"), ("method", "GET"), ("status", "200")))
    # Each worker writes its requests' samples within FOLD_SECONDS; then every scrape shows all of them.
    deadline = time.monotonic() + 10
    while scrape(server.url).get(key) != count and time.monotonic() < deadline:
        time.sleep(0.1)
    writers = {path.name.rsplit("_", 1)[1] for path in folder.glob("counter_*.db")}
    assert "1.db" not in writers
    assert len(writers) >= 2, "the requests were served by more than one worker process"
    for _ in range(5):  # several scrapes, answered by different workers, agree
        samples = scrape(server.url)
        assert samples[key] == count
        assert samples[("idp_event_queue", (("event_id", "sale"),))] == 5
        assert samples[("idp_event_waiting", (("event_id", "sale"),))] == 5
        assert samples[("idp_event_serving", (("event_id", "sale"),))] == 0
        assert ("idp_event_active_tokens", (("event_id", "sale"),)) in samples


@pytest.mark.parametrize("worker_class", ["gevent", "gthread", "sync"])
def test_a_worker_that_restarts_keeps_the_requests_it_counted(live_server, worker_class, tmp_path):
    """A worker writes the requests it has not yet folded when it exits (here: restarted after max requests)."""
    folder = tmp_path / "prometheus"
    folder.mkdir()
    server = live_server(
        "sqlite",
        IDP_WORKERS=1,
        IDP_WORKER_CLASS=worker_class,
        IDP_THREADS=2,
        IDP_MAX_REQUESTS=20,
        PROMETHEUS_MULTIPROC_DIR=str(folder),
    )
    server.services().events.create({"event_id": "sale"})
    count = 60
    for _ in range(count):  # spread out: the worker stops taking connections a moment after its 20th
        assert get_serving(server.url) == 200
        time.sleep(0.05)
    key = ("idp_http_requests_total", (("endpoint", "/api/serving_num"), ("method", "GET"), ("status", "200")))
    deadline = time.monotonic() + 15
    while (seen := scrape(server.url).get(key)) != count and time.monotonic() < deadline:
        time.sleep(0.2)
    assert seen == count
    writers = {path.name for path in folder.glob("counter_*.db")}
    assert len(writers) >= 2, "the worker was restarted"
