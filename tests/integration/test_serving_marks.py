"""Idempotent serving-counter increments, the same on every queue store."""

from __future__ import annotations

import threading

import pytest

from idp.errors import ValidationError
from tests.conftest import all_backends

pytestmark = pytest.mark.integration


@all_backends
def test_a_mark_is_applied_once_per_event(services, event):
    services.events.create({"event_id": "other"})
    room = services.room
    assert room.increment_serving_once("sale", 5, "periodic:1") == (5, True)
    assert room.increment_serving_once("sale", 5, "periodic:1") == (5, False)
    assert room.increment_serving_once("sale", 7, "periodic:1") == (5, False), "the mark, not the amount, decides"
    assert room.increment_serving_once("other", 5, "periodic:1") == (5, True), "marks belong to one event"
    assert room.increment_serving("sale", 1) == 6
    assert room.increment_serving_once("sale", 5, "periodic:2") == (11, True)
    assert room.counters("sale", fresh=True).serving == 11


@all_backends
def test_an_applied_mark_records_the_issue_time_for_expiry(services, clock):
    services.events.create({"event_id": "sale", "queue_position_expiry_period": 100})
    _event, entry = services.room.join("sale")
    clock.advance(500)
    services.room.increment_serving_once("sale", 1, "m")
    _event, status = services.room.status("sale", entry.request_id)
    assert status.expires_in == 100, "the claim window starts when the marked increment admitted the place"


@all_backends
def test_concurrent_calls_with_one_mark_add_once(services, event):
    barrier = threading.Barrier(6)
    results = []

    def call():
        barrier.wait()
        results.append(services.room.increment_serving_once("sale", 3, "periodic:9")[1])

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 5 + [True]
    assert services.room.counters("sale", fresh=True).serving == 3


@pytest.mark.parametrize("by", [0, -1, 1.5, "3", True, 2**63])
def test_bad_increments_and_marks_are_refused(services, event, by):
    with pytest.raises(ValidationError):
        services.room.increment_serving_once("sale", by, "m")
    for mark in ("", "has space", "x" * 101, None, 5):
        with pytest.raises(ValidationError):
            services.room.increment_serving_once("sale", 1, mark)
    assert services.room.counters("sale", fresh=True).serving == 0
