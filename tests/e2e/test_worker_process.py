"""``idp worker`` as real processes: one acts while several run, SIGTERM stops it cleanly, and a worker
killed with SIGKILL and replaced never admits a minute twice."""

from __future__ import annotations

import os
import signal
import time

import pytest
from sqlalchemy import select

from idp.storage.models import WorkerLease, WorkerTick
from tests.conftest import TEST_SECRET
from tests.e2e.server import base_environment
from tests.worker_support import start_worker_process, wait_until

pytestmark = pytest.mark.e2e

WAIT_SECONDS = 60


def start_worker(env, log_path):
    return start_worker_process(env, log_path, lease_ms=1500)


def wait_for(condition, what):
    wait_until(condition, what, WAIT_SECONDS)


def periodic_minutes(services):
    with services.db.session(readonly=True) as session:
        return list(session.execute(select(WorkerTick.period_key).where(WorkerTick.job == "periodic_inlet")).scalars())


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_killed_and_replaced_workers_never_admit_a_minute_twice(tmp_path, request, backend):
    from idp.app import build_services
    from idp.config import Settings
    from idp.inlet.settings import InletService
    from idp.storage.db import upgrade_database

    url = f"sqlite:///{tmp_path / 'idp.sqlite3'}"
    upgrade_database(url)
    idp_env = {"IDP_ENV": "test", "IDP_DATABASE_URL": url, "IDP_SECRET_KEY": TEST_SECRET, "IDP_LOG_LEVEL": "INFO"}
    if backend == "redis":
        import redis

        idp_env["IDP_REDIS_URL"] = request.getfixturevalue("redis_available")
        redis.Redis.from_url(idp_env["IDP_REDIS_URL"]).flushdb()
    services = build_services(Settings.from_env(idp_env).validate())
    env = base_environment(idp_env)
    processes = []
    try:
        services.events.create({"event_id": "sale"})
        InletService(services.db, services.clock).update("sale", {"periodic": {"enabled": True, "increment_by": 10}})

        def serving():
            return services.room.counters("sale", fresh=True).serving

        first = start_worker(env, tmp_path / "first.log")
        second = start_worker(env, tmp_path / "second.log")
        processes += [first, second]
        wait_for(lambda: serving() >= 10, "the first admission")
        os.kill(first.pid, signal.SIGKILL)
        os.kill(second.pid, signal.SIGKILL)
        first.wait(10)
        second.wait(10)
        # Whoever held the lease died without releasing it; replacements wait for it to lapse, then act.
        third = start_worker(env, tmp_path / "third.log")
        processes.append(third)
        third_log = tmp_path / "third.log"
        wait_for(lambda: "worker holds the lease" in third_log.read_text(errors="replace"), "the replacement to act")
        wait_for(lambda: len(periodic_minutes(services)) >= 1, "the minute's bookkeeping")
        stopped_at = time.time()
        time.sleep(1.0)  # let the replacement tick several times; it must not admit the same minute again
        minutes = periodic_minutes(services)
        assert len(minutes) == len(set(minutes))
        assert serving() == 10 * len(minutes), (serving(), minutes)
        assert int(stopped_at // 60) in minutes or int(stopped_at // 60) - 1 in minutes

        # SIGTERM: the worker finishes its tick, releases the lease and exits 0.
        third.send_signal(signal.SIGTERM)
        assert third.wait(WAIT_SECONDS) == 0
        if backend == "sqlite":
            with services.db.session(readonly=True) as session:
                lease = session.get(WorkerLease, "worker")
                assert lease is not None and lease.expires_at_ms == 0
        else:
            assert services.store.client.get("idp:lease:worker") is None
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        services.close()
