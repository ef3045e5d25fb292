"""The live-server fixture itself: a real gunicorn answers, and the test process shares its stores."""

from __future__ import annotations

import pytest
import requests

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "redis"])
def test_live_server_serves_the_app_on_the_shared_stores(live_server, backend):
    server = live_server(backend)
    assert requests.get(server.url + "/healthz", timeout=10).json() == {"status": "ok"}
    assert requests.get(server.url + "/readyz", timeout=10).status_code == 200
    services = server.services()
    services.events.create({"event_id": "sale", "name": "Sale"})
    joined = requests.post(server.url + "/api/assign_queue_num", json={"event_id": "sale"}, timeout=10)
    assert joined.status_code == 200, joined.text
    assert joined.json()["queue_number"] == 1
    # The test process sees the place the server created.
    assert services.room.place("sale", joined.json()["api_request_id"]).position == 1
    assert server.env["IDP_ISSUER"] == server.url
    assert (server.redis_url is not None) == (backend == "redis")


def test_stop_ends_the_server(live_server):
    server = live_server("sqlite")
    server.stop()
    assert not server.running
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/healthz", timeout=5)
