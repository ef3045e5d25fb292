"""Webhooks end to end: a real gunicorn, real ``idp worker`` processes (one killed with SIGKILL and
replaced) and a receiver on loopback. Every notification arrives, signed, in order, none lost."""

from __future__ import annotations

import os
import signal

import pytest
import requests
from sqlalchemy import select

from idp.notify.webhooks import verify
from idp.storage.models import OutboxEntry
from tests.e2e.server import base_environment
from tests.worker_support import start_worker_process, wait_until, webhook_receiver

pytestmark = pytest.mark.e2e

WAIT_SECONDS = 90


def start_worker(server, log_path):
    return start_worker_process(base_environment(server.env), log_path, lease_ms=1000)


def wait_for(condition, what):
    wait_until(condition, what, WAIT_SECONDS, step=0.1)


@pytest.mark.parametrize("backend", ["postgres"])
def test_notifications_survive_a_killed_worker(live_server, backend, tmp_path):
    from idp.admin.keys import AdminKeyService

    server = live_server(backend, IDP_WORKERS=2)
    services = server.services()
    services.events.create({"event_id": "sale"})
    _record, key = AdminKeyService(services.db, services.clock).create("hooks", ["events:write"])
    admin = {"Authorization": f"Bearer {key}"}
    workers = []
    with webhook_receiver(fail_first=2) as receiver:
        created = requests.post(
            server.url + "/admin/api/events/sale/webhooks", json={"url": receiver.url}, headers=admin, timeout=10
        )
        assert created.status_code == 201
        secret = created.json()["secret"]
        try:
            workers.append(start_worker(server, tmp_path / "worker1.log"))
            ids = [
                requests.post(server.url + "/api/assign_queue_num", json={"event_id": "sale"}, timeout=10).json()[
                    "api_request_id"
                ]
                for _ in range(12)
            ]
            requests.post(
                server.url + "/admin/api/increment_serving_counter",
                json={"event_id": "sale", "increment_by": 12},
                headers=admin,
                timeout=10,
            ).raise_for_status()
            for number, request_id in enumerate(ids):
                token = requests.post(
                    server.url + "/api/generate_token",
                    json={"event_id": "sale", "request_id": request_id},
                    timeout=10,
                )
                assert token.status_code == 200
                if number == 5:
                    wait_for(lambda: len(receiver.received) >= 2, "the first deliveries")
                    os.kill(workers[0].pid, signal.SIGKILL)
                    workers[0].wait(10)
                    workers.append(start_worker(server, tmp_path / "worker2.log"))
            for request_id in ids[:4]:
                requests.post(
                    server.url + "/admin/api/update_session",
                    json={"event_id": "sale", "request_id": request_id, "status": -1},
                    headers=admin,
                    timeout=10,
                ).raise_for_status()

            with services.db.session(readonly=True) as session:
                expected = list(
                    session.execute(
                        select(OutboxEntry.id).where(OutboxEntry.event_id == "sale").order_by(OutboxEntry.id)
                    ).scalars()
                )
            assert len(expected) == 12 + 4
            wait_for(lambda: set(expected) <= set(receiver.accepted_ids()), "every notification")
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
                    worker.wait(30)
        received = receiver.accepted_ids()
        first_seen = list(dict.fromkeys(received))
        assert first_seen == expected, "in order; a repeat (at least once) is only ever of one already seen"
        kinds = [r.message["kind"] for r in receiver.received]
        assert kinds.count("session_updated") >= 4 and kinds[0] == "token_generated"
        for item in receiver.received + receiver.refused:
            assert verify(secret, item.headers["X-Idp-Timestamp"], item.body, item.headers["X-Idp-Signature"])
        log = requests.get(
            server.url + f"/admin/api/events/sale/webhooks/{created.json()['id']}/deliveries?limit=1000",
            headers=admin,
            timeout=10,
        ).json()["deliveries"]
        assert [d["ok"] for d in reversed(log)][:3] == [False, False, True]
