"""The bad-input table (tests/badinput.py) sent to a real gunicorn server, and backing services down."""

from __future__ import annotations

import pytest
import requests

from tests.badinput import all_cases, check_answer, make_context
from tests.e2e.server import closed_port

pytestmark = pytest.mark.e2e


def test_every_bad_request_gets_a_json_4xx_through_gunicorn(live_server):
    server = live_server("redis")
    ctx = make_context(server.services())
    batch = all_cases(ctx)
    failures = []
    with requests.Session() as session:
        for case in batch:
            response = session.request(
                case.method,
                server.url + case.url(),
                headers=case.headers,
                data=case.body,
                timeout=30,
                allow_redirects=False,
            )
            problem = check_answer(
                case, response.status_code, response.headers.get("Content-Type", ""), response.content
            )
            if problem:
                failures.append(f"{case.id}: {problem}")
    assert not failures, f"{len(failures)} of {len(batch)} requests were not refused properly:\n" + "\n".join(failures)
    assert server.running, server.log()


@pytest.mark.parametrize("down", ["redis", "postgres"])
def test_a_backing_service_down_gives_503_through_gunicorn(live_server, down):
    if down == "redis":
        server = live_server("sqlite", IDP_REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0", IDP_RETRY_AFTER_SECONDS=3)
        server.services(redis_url=None).events.create({"event_id": "sale", "name": "Sale"})
        what = "queue store"
    else:
        server = live_server(
            "sqlite",
            migrate=False,
            IDP_RETRY_AFTER_SECONDS=3,
            IDP_DATABASE_URL=f"postgresql+psycopg2://postgres@127.0.0.1:{closed_port()}/idp",
        )
        what = "database"
    joined = requests.post(server.url + "/api/assign_queue_num", json={"event_id": "sale"}, timeout=30)
    assert joined.status_code == 503
    assert joined.headers["Retry-After"] == "3"
    assert joined.json() == {"error": "service_unavailable", "message": f"The {what} is unavailable."}
    serving = requests.get(server.url + "/api/serving_num", params={"event_id": "sale"}, timeout=30)
    assert serving.status_code == 503
    assert serving.headers["Retry-After"] == "3"
    ready = requests.get(server.url + "/readyz", timeout=30)
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert requests.get(server.url + "/healthz", timeout=30).status_code == 200
