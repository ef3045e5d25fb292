"""The admin API of the worker's domain: inlet settings, the MaxSize inlet and webhook subscriptions."""

from __future__ import annotations

import uuid

import pytest

from tests.admin_support import bearer, make_key
from tests.conftest import all_backends
from tests.openapi_check import ValidatingClient
from tests.worker_support import admitted_with_tokens

pytestmark = pytest.mark.integration


@pytest.fixture
def client(client):
    """Every answer in this module is also held to idp/admin/openapi.yaml."""
    return ValidatingClient(client)


@pytest.fixture
def admin(services):
    return bearer(make_key(services, "admin"))


def set_max_size(client, admin, value):
    response = client.put("/admin/api/events/sale/inlet", json={"max_size": value}, headers=admin)
    assert response.status_code == 200, response.get_json()


def max_size(client, admin, **body):
    response = client.post("/admin/api/events/sale/inlet/max_size", json=body, headers=admin)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@all_backends
def test_max_size_reproduces_the_aws_scenarios(client, services, event, admin):
    set_max_size(client, admin, 10)
    ids = admitted_with_tokens(services, "sale", 10)
    for _ in range(5):
        services.room.join("sale")
    assert services.tokens.active_count("sale") == 10

    # Max 10 with 10 active: five visitors reported as exited free nothing yet (their sessions are active).
    report = max_size(client, admin, exited=5)
    assert report["increment"] == 0 and report["capacity"] == 0
    assert services.room.counters("sale", fresh=True).serving == 10

    # After 5 completions: +5.
    report = max_size(client, admin, completed=ids[:5])
    assert report["updated"] == 5 and report["active"] == 5 and report["increment"] == 5
    assert services.room.counters("sale", fresh=True).serving == 15

    # The same ids again: already finished, not counted, nothing admitted; never an error.
    report = max_size(client, admin, completed=ids[:5], abandoned=[str(uuid.uuid4()), "not-a-uuid"])
    assert report["updated"] == 0 and report["not_updated"] == 7 and report["increment"] == 0
    assert services.room.counters("sale", fresh=True).serving == 15


def test_max_size_never_moves_the_counter_back(client, services, event, admin):
    set_max_size(client, admin, 3)
    admitted_with_tokens(services, "sale", 5)  # more active than max_size: negative capacity
    report = max_size(client, admin, exited=4)
    assert report["capacity"] == 0 and report["increment"] == 0
    assert services.room.counters("sale", fresh=True).serving == 5


def test_max_size_admits_no_more_than_freed_and_keeps_no_state_between_calls(client, services, event, admin):
    set_max_size(client, admin, 10)
    ids = admitted_with_tokens(services, "sale", 4)
    report = max_size(client, admin, abandoned=ids[:2])
    assert (report["freed"], report["increment"]) == (2, 2)
    # AWS kept a module-global count of finished sessions; a later call without any must admit none.
    report = max_size(client, admin)
    assert (report["updated"], report["increment"]) == (0, 0)
    # exited wins over the number of finished sessions, capped by the room left (10 - 2 active).
    report = max_size(client, admin, exited=50, completed=ids[2:3])
    assert report["active"] == 1 and report["increment"] == 9
    assert services.room.counters("sale", fresh=True).serving == 4 + 2 + 9


def test_max_size_without_a_configured_size_is_a_conflict(client, event, admin):
    response = client.post("/admin/api/events/sale/inlet/max_size", json={"exited": 1}, headers=admin)
    assert response.status_code == 409
    assert response.get_json()["error"] == "max_size_not_configured"


def test_inlet_settings_round_trip_and_pause_resume(client, event, admin):
    response = client.get("/admin/api/events/sale/inlet", headers=admin)
    assert response.status_code == 200
    assert response.get_json()["periodic"]["enabled"] is False
    body = {
        "periodic": {
            "enabled": True,
            "increment_by": 25,
            "start_time": 1_800_000_000,
            "end_time": None,
            "health_url": "http://127.0.0.1:9/health",
            "health_timeout": 1.5,
        },
        "metrics_notifications": True,
    }
    saved = client.put("/admin/api/events/sale/inlet", json=body, headers=admin).get_json()
    assert saved["periodic"]["increment_by"] == 25 and saved["metrics_notifications"] is True
    paused = client.post("/admin/api/events/sale/inlet/pause", headers=admin).get_json()
    assert paused["periodic"]["paused"] is True and paused["periodic"]["increment_by"] == 25
    resumed = client.post("/admin/api/events/sale/inlet/resume", headers=admin).get_json()
    assert resumed["periodic"]["paused"] is False
    partial = client.put("/admin/api/events/sale/inlet", json={"periodic": {"paused": True}}, headers=admin)
    assert partial.get_json()["periodic"]["health_url"] == "http://127.0.0.1:9/health"
    assert client.get("/admin/api/events/sale/inlet", headers=admin).get_json()["periodic"]["paused"] is True


@pytest.mark.parametrize(
    "body",
    [
        {"periodic": {"increment_by": 0}},
        {"periodic": {"increment_by": -5}},
        {"periodic": {"increment_by": 1.5}},
        {"periodic": {"increment_by": "10"}},
        {"periodic": {"increment_by": 2**64}},
        {"periodic": {"enabled": "yes"}},
        {"periodic": {"start_time": 10, "end_time": 5}},
        {"periodic": {"health_url": "ftp://x"}},
        {"periodic": {"health_timeout": 0}},
        {"periodic": {"health_timeout": 1e308}},
        {"periodic": {"nope": 1}},
        {"periodic": []},
        {"max_size": 0},
        {"max_size": -1},
        {"max_size": True},
        {"metrics_notifications": 1},
        {"unknown": 1},
    ],
)
def test_bad_inlet_settings_are_400(client, event, admin, body):
    response = client.put("/admin/api/events/sale/inlet", json=body, headers=admin)
    assert response.status_code == 400, body
    assert response.get_json()["error"] in {"invalid_field", "unknown_field"}


def test_the_inlet_routes_need_a_key_with_the_right_scope(client, services, event):
    assert client.get("/admin/api/events/sale/inlet").status_code == 401
    reader = bearer(make_key(services, "events:read"))
    assert client.get("/admin/api/events/sale/inlet", headers=reader).status_code == 200
    assert client.post("/admin/api/events/sale/inlet/pause", headers=reader).status_code == 403
    hook = client.post("/admin/api/events/sale/webhooks", json={"url": "http://x.test/"}, headers=reader)
    assert hook.status_code == 403


def test_unknown_and_malformed_events_are_404_and_400(client, admin):
    assert client.get("/admin/api/events/nope/inlet", headers=admin).status_code == 404
    assert client.get("/admin/api/events/-bad/inlet", headers=admin).status_code == 400
    assert client.get("/admin/api/events/nope/webhooks", headers=admin).status_code == 404


def test_webhook_subscriptions_create_list_read_delete(client, event, admin):
    created = client.post(
        "/admin/api/events/sale/webhooks",
        json={"url": "https://hooks.example/waiting", "kinds": ["session_updated"]},
        headers=admin,
    )
    assert created.status_code == 201
    body = created.get_json()
    assert body["secret"].startswith("whsec_") and body["kinds"] == ["session_updated"]
    listed = client.get("/admin/api/events/sale/webhooks", headers=admin).get_json()["webhooks"]
    assert [w["id"] for w in listed] == [body["id"]]
    assert "secret" not in listed[0], "the secret is shown once, at creation"
    one = client.get(f"/admin/api/events/sale/webhooks/{body['id']}", headers=admin)
    assert one.status_code == 200 and "secret" not in one.get_json()
    log = client.get(f"/admin/api/events/sale/webhooks/{body['id']}/deliveries", headers=admin)
    assert log.status_code == 200 and log.get_json() == {"deliveries": []}
    assert client.delete(f"/admin/api/events/sale/webhooks/{body['id']}", headers=admin).status_code == 204
    assert client.delete(f"/admin/api/events/sale/webhooks/{body['id']}", headers=admin).status_code == 404
    assert client.get(f"/admin/api/events/sale/webhooks/{body['id']}/deliveries", headers=admin).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"url": "not a url"},
        {"url": "javascript:alert(1)"},
        {"url": 5},
        {"url": "https://a.test", "kinds": "x"},
        {"url": "https://a.test", "kinds": ["Bad Kind"]},
        {"url": "https://a.test", "active": "yes"},
        {"url": "https://a.test", "secret": "mine"},
    ],
)
def test_bad_webhook_bodies_are_400(client, event, admin, body):
    response = client.post("/admin/api/events/sale/webhooks", json=body, headers=admin)
    assert response.status_code == 400
    assert response.get_json()["error"] in {"invalid_field", "unknown_field"}


def test_a_webhook_of_another_event_is_not_found(client, services, event, admin):
    services.events.create({"event_id": "other"})
    hook = client.post("/admin/api/events/other/webhooks", json={"url": "https://a.test/"}, headers=admin).get_json()
    assert client.get(f"/admin/api/events/sale/webhooks/{hook['id']}", headers=admin).status_code == 404
    assert client.delete(f"/admin/api/events/sale/webhooks/{hook['id']}", headers=admin).status_code == 404


def test_operator_writes_are_audited_with_the_acting_key(client, services, event, admin):
    client.put("/admin/api/events/sale/inlet", json={"max_size": 5}, headers=admin)
    client.post("/admin/api/events/sale/inlet/pause", headers=admin)
    hook = client.post("/admin/api/events/sale/webhooks", json={"url": "https://a.test/"}, headers=admin).get_json()
    client.delete(f"/admin/api/events/sale/webhooks/{hook['id']}", headers=admin)
    entries = client.get("/admin/api/audit", headers=admin).get_json()["entries"]
    actions = [(e["action"], e["target"]) for e in entries]
    for action in ("update_inlet", "pause_inlet", "create_webhook", "delete_webhook"):
        assert (action, "sale") in actions
    assert all(e["key_id"] for e in entries if e["action"].endswith(("_inlet", "_webhook")))
    assert hook["secret"] not in str(entries)
