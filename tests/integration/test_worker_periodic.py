"""The worker's periodic inlet, lease and crash safety, driven by an injected clock."""

from __future__ import annotations

import threading

import pytest

from idp.inlet import periodic as periodic_module
from tests.conftest import all_backends
from tests.worker_support import AlwaysLease, health_server, make_worker

pytestmark = pytest.mark.integration

START = 1_800_000_000 - (1_800_000_000 % 60) + 60  # the first whole minute after the test clock's start


def configure(services, event_id="sale", **periodic):
    values = {"enabled": True, "increment_by": 10, "start_time": START, **periodic}
    return services.inlets.update(event_id, {"periodic": values})


def serving(services, event_id="sale"):
    return services.room.counters(event_id, fresh=True).serving


@all_backends
def test_admits_exactly_increment_by_per_minute_inside_the_window(services, event, clock):
    configure(services, end_time=START + 3 * 60)
    worker = make_worker(services)
    clock.set(START - 30)
    worker.tick()
    assert serving(services) == 0, "nothing before start_time"
    for minute in range(3):
        for second in (0, 5, 30, 59):
            clock.set(START + minute * 60 + second)
            worker.tick()
        assert serving(services) == 10 * (minute + 1)
    for later in (START + 3 * 60, START + 3 * 60 + 30, START + 10 * 60):
        clock.set(later)
        worker.tick()
    assert serving(services) == 30, "nothing at or after end_time"


@all_backends
def test_no_end_time_runs_forever_and_skipped_minutes_are_not_caught_up(services, event, clock):
    configure(services, increment_by=7, end_time=None)
    worker = make_worker(services)
    clock.set(START + 5)
    worker.tick()
    clock.set(START + 10 * 86400 + 5)  # ten days later, the worker was down in between
    worker.tick()
    assert serving(services) == 14


def test_the_manual_pause_switch_stops_admissions(services, event, clock):
    configure(services)
    worker = make_worker(services)
    clock.set(START)
    services.inlets.set_paused("sale", True)
    worker.tick()
    clock.set(START + 60)
    worker.tick()
    assert serving(services) == 0
    services.inlets.set_paused("sale", False)
    worker.tick()
    assert serving(services) == 10


def test_a_disabled_periodic_inlet_admits_nobody(services, event, clock):
    configure(services, enabled=False)
    clock.set(START + 1)
    make_worker(services).tick()
    assert serving(services) == 0


@all_backends
def test_the_health_gate_blocks_on_500_and_on_timeouts(services, event, clock):
    with health_server() as health:
        configure(services, health_url=health.url, health_timeout=0.2)
        worker = make_worker(services)
        health.status = 500
        clock.set(START)
        worker.tick()
        assert serving(services) == 0
        health.status = 503
        clock.set(START + 60)
        worker.tick()
        assert serving(services) == 0
        health.status, health.delay = 200, 1.0  # answers 200, but too late
        clock.set(START + 120)
        worker.tick()
        assert serving(services) == 0
        health.delay = 0.0
        clock.set(START + 150)
        worker.tick()
        assert serving(services) == 10, "a healthy gate admits that minute's visitors"
        clock.set(START + 170)
        worker.tick()
        assert serving(services) == 10
        assert health.hits == 4  # a done minute does not ask the gate again


def test_a_health_url_nobody_listens_on_blocks(services, event, clock):
    from tests.e2e.server import closed_port

    configure(services, health_url=f"http://127.0.0.1:{closed_port()}/health", health_timeout=0.5)
    clock.set(START)
    make_worker(services).tick()
    assert serving(services) == 0


@all_backends
def test_two_workers_never_double_increment(services, event, clock):
    configure(services)
    first, second = make_worker(services), make_worker(services)
    clock.set(START + 1)
    reports = [first.tick(), second.tick()]
    assert [r.active for r in reports] == [True, False], "the lease makes one worker act"
    assert serving(services) == 10
    # Even two workers that both believe they hold the lease, ticking at the same moment, admit once.
    racing = [make_worker(services, lease=AlwaysLease()) for _ in range(4)]
    clock.set(START + 61)
    barrier = threading.Barrier(len(racing))

    def run(worker):
        barrier.wait()
        worker.tick()

    threads = [threading.Thread(target=run, args=(w,)) for w in racing]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert serving(services) == 20


def test_the_lease_passes_to_another_worker_when_its_holder_stops(services, event, clock):
    configure(services)
    first, second = make_worker(services), make_worker(services)
    clock.set(START + 1)
    assert first.tick().active
    assert not second.tick().active
    first.lease.release()
    clock.set(START + 61)
    assert second.tick().active
    assert not first.tick().active
    assert serving(services) == 20


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the worker catches it."""


@all_backends
def test_a_worker_that_dies_after_the_increment_does_not_double_increment(services, event, clock, monkeypatch):
    configure(services)
    doomed = make_worker(services)

    def die(*_args, **_kwargs):
        raise Crash()

    monkeypatch.setattr(doomed.periodic, "record", die)
    clock.set(START + 5)
    with pytest.raises(Crash):
        doomed.tick()
    assert serving(services) == 10  # the increment happened; its bookkeeping did not
    # The dead worker's lease runs out; a fresh worker takes over within the same minute.
    doomed.lease.release() if services.settings.redis_url else clock.set(START + 40)
    restarted = make_worker(services)
    report = restarted.tick()
    assert report.active
    assert report.results["periodic_inlet"]["sale"].action == "already_done"
    assert serving(services) == 10
    clock.set(START + 65)
    restarted.tick()
    assert serving(services) == 20


def test_the_health_check_is_not_asked_outside_the_window(services, event, clock, monkeypatch):
    asked = []
    monkeypatch.setattr(periodic_module, "http_health", lambda url, timeout: asked.append(url) or True)
    configure(services, health_url="http://127.0.0.1:9/health")
    clock.set(START - 10)
    make_worker(services, health_check=lambda url, timeout: asked.append(url) or True).tick()
    assert asked == []
    assert serving(services) == 0


def test_a_deleted_event_does_not_stop_the_others(services, event, clock):
    services.events.create({"event_id": "gone"})
    configure(services, "gone")
    configure(services, "sale")
    services.events.delete("gone")
    clock.set(START + 1)
    report = make_worker(services).tick()
    assert "periodic_inlet" not in report.failed
    assert serving(services) == 10
