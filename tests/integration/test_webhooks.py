"""Notifications reach webhook subscribers on loopback: all of them, signed, in order, at least once."""

from __future__ import annotations

import json

import pytest

from idp.notify.webhooks import BACKOFF_CAP_SECONDS, verify
from tests.admin_support import bearer, make_key
from tests.conftest import all_backends
from tests.worker_support import admitted_with_tokens, make_worker, webhook_receiver

pytestmark = pytest.mark.integration


class Crash(BaseException):
    """The worker process dying at a chosen point."""


def subscribe(services, url, **extra):
    subscription, secret = services.webhooks.create("sale", {"url": url, **extra})
    return subscription["id"], secret


def make_notifications(services, clock):
    """Two tokens, one finished session, an automatic increment after expiry: 5 notifications in order."""
    ids = admitted_with_tokens(services, "sale", 2)  # token_generated x2
    services.tokens.update_session("sale", ids[0], 1)  # session_updated
    for _ in range(2):
        services.room.join("sale")
    services.room.increment_serving("sale", 2)
    clock.advance(120)  # the two new places expire unclaimed (period 60)
    return ids


def expected_kinds():
    return ["token_generated", "token_generated", "session_updated", "automatic_serving_counter_incr"]


@pytest.fixture
def sale(services):
    return services.events.create(
        {"event_id": "sale", "queue_position_expiry_period": 60, "incr_serving_on_expiry": True}
    )


@all_backends
def test_every_notification_arrives_signed_and_in_order(services, sale, clock):
    with webhook_receiver() as receiver:
        _id, secret = subscribe(services, receiver.url)
        ids = make_notifications(services, clock)
        worker = make_worker(services)
        worker.tick()  # the sweep writes its notification, then the delivery job sends everything
        messages = [r.message for r in receiver.received]
        assert [m["kind"] for m in messages] == expected_kinds()
        assert [m["id"] for m in messages] == sorted(m["id"] for m in messages)
        place = services.tokens.place_reference("sale", ids[0])
        # Subscribers get an opaque place value, never the request id (the place's bearer secret).
        assert messages[0]["detail"] == {"event_id": "sale", "place": place}
        assert messages[2]["detail"] == {"event_id": "sale", "place": place, "status": "completed"}
        assert not any(rid in json.dumps(m) for m in messages for rid in ids)
        assert messages[3]["detail"] == {
            "event_id": "sale",
            "previous_serving_counter_position": 4,
            "increment_by": 2,
            "current_serving_counter_position": 6,
        }
        assert all(m["event_id"] == "sale" and isinstance(m["created_at"], int) for m in messages)
        for item in receiver.received:
            timestamp = item.headers["X-Idp-Timestamp"]
            signature = item.headers["X-Idp-Signature"]
            assert signature.startswith("sha256=")
            assert verify(secret, timestamp, item.body, signature)
            assert not verify(secret, timestamp, item.body + b" ", signature)
            assert not verify("whsec_wrong", timestamp, item.body, signature)
            assert not verify(secret, str(int(timestamp) + 1), item.body, signature)
        worker.tick()
        assert len(receiver.received) == 4, "a delivered notification is not sent again"


@all_backends
def test_a_receiver_failing_three_times_still_gets_everything_in_order(services, sale, clock, client):
    with webhook_receiver(fail_first=3) as receiver:
        hook_id, _secret = subscribe(services, receiver.url)
        make_notifications(services, clock)
        worker = make_worker(services)
        waits = []
        for _ in range(3):
            worker.tick()
            row = services.webhooks.get("sale", hook_id)
            waits.append(row["next_attempt_at"] - int(clock.now()))
            worker.tick()  # not due yet: nothing is sent
            clock.advance(waits[-1])
        assert waits == [2, 4, 8], "exponential backoff"
        assert receiver.received == []
        first_id = receiver.refused[0].message["id"]
        assert [r.message["id"] for r in receiver.refused] == [first_id] * 3, "N+1 is never sent before N"
        worker.tick()
        assert [r.message["kind"] for r in receiver.received] == expected_kinds()
        assert receiver.accepted_ids()[0] == first_id
        log = client.get(
            f"/admin/api/events/sale/webhooks/{hook_id}/deliveries",
            headers=bearer(make_key(services, "events:read")),
        ).get_json()["deliveries"]
        oldest_first = list(reversed(log))
        assert [(d["ok"], d["attempt"], d["status_code"]) for d in oldest_first[:4]] == [
            (False, 1, 500),
            (False, 2, 500),
            (False, 3, 500),
            (True, 4, 204),
        ]
        assert all(d["ok"] for d in oldest_first[4:]) and len(oldest_first) == 3 + 4
        assert services.webhooks.get("sale", hook_id)["attempts"] == 0


def test_backoff_is_capped(services, sale, clock):
    with webhook_receiver(fail_first=100) as receiver:
        hook_id, _secret = subscribe(services, receiver.url)
        make_notifications(services, clock)
        worker = make_worker(services)
        for _ in range(15):
            worker.tick()
            clock.set(services.webhooks.get("sale", hook_id)["next_attempt_at"])
        worker.tick()
        row = services.webhooks.get("sale", hook_id)
        assert row["next_attempt_at"] - int(clock.now()) == BACKOFF_CAP_SECONDS
        assert row["attempts"] == 16 and row["last_error"] == "HTTP 500"


@all_backends
def test_nothing_is_lost_when_the_worker_restarts(services, sale, clock, monkeypatch):
    with webhook_receiver() as receiver:
        subscribe(services, receiver.url)
        make_notifications(services, clock)
        doomed = make_worker(services)
        original = doomed.deliverer._advance
        calls = []

        def advance_then_die(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise Crash()  # the second notification was received, its cursor never moved
            return original(*args, **kwargs)

        monkeypatch.setattr(doomed.deliverer, "_advance", advance_then_die)
        with pytest.raises(Crash):
            doomed.tick()
        assert len(receiver.received) == 2
        # More happens while no worker runs.
        services.room.join("sale")
        if services.settings.redis_url:
            doomed.lease.release()
        else:
            clock.advance(60)
        restarted = make_worker(services)
        restarted.tick()
        restarted.tick()
        ids = receiver.accepted_ids()
        kinds = [r.message["kind"] for r in receiver.received]
        # At least once: the second notification came twice, everything came, in order.
        assert ids[1] == ids[2]
        assert sorted(set(ids)) == sorted(set(ids), key=ids.index)
        assert kinds[:2] + kinds[3:] == expected_kinds()


def test_kinds_filter_and_subscribers_only_get_their_event(services, sale, clock):
    services.events.create({"event_id": "other"})
    with webhook_receiver() as everything, webhook_receiver() as sessions, webhook_receiver() as other:
        subscribe(services, everything.url)
        subscribe(services, sessions.url, kinds=["session_updated"])
        services.webhooks.create("other", {"url": other.url})
        make_notifications(services, clock)
        make_worker(services).tick()
        assert len(everything.received) == 4
        assert [r.message["kind"] for r in sessions.received] == ["session_updated"]
        assert other.received == []


def test_metrics_notifications_arrive_once_a_minute_when_enabled(services, sale, clock):
    with webhook_receiver() as receiver:
        subscribe(services, receiver.url, kinds=["waiting_room_metrics"])
        worker = make_worker(services)
        worker.tick()
        assert receiver.received == [], "off by default"
        services.inlets.update("sale", {"metrics_notifications": True})
        admitted_with_tokens(services, "sale", 3)
        services.room.join("sale")
        clock.advance(60)
        worker.tick()
        worker.tick()
        clock.advance(30)
        worker.tick()
        clock.advance(30)
        worker.tick()
        details = [r.message["detail"] for r in receiver.received]
        assert len(details) == 2
        assert details[0] == {
            "event_id": "sale",
            "num_active_tokens": 3,
            "total_num_tokens": 3,
            "queue_counter": 4,
            "serving_number": 3,
            "completed_sessions": 0,
            "abandoned_sessions": 0,
        }


def test_a_new_subscriber_starts_with_what_happens_next(services, sale, clock):
    admitted_with_tokens(services, "sale", 1)
    with webhook_receiver() as receiver:
        subscribe(services, receiver.url)
        worker = make_worker(services)
        worker.tick()
        assert receiver.received == []
        admitted_with_tokens(services, "sale", 1)
        worker.tick()
        assert [r.message["kind"] for r in receiver.received] == ["token_generated"]
