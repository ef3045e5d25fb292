"""A sale run by a real server and a real ``idp worker``: the pre-queue lottery, when_busy with
``max_active``, ``max_per_minute``, and workers killed during the draw and during admission ticks."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

from tests.admin_support import bearer
from tests.e2e.server import REPO_ROOT, base_environment, stop_process
from tests.e2e.static_site import stub_pages
from tests.worker_support import start_worker_process, wait_until

pytestmark = pytest.mark.e2e

# Generous: a shared two-core machine. These bound waits, they never claim speed.
WAIT_SECONDS = 60


def api_join(url: str) -> dict[str, Any]:
    answer = requests.post(f"{url}/api/assign_queue_num", json={"event_id": "sale"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def queue_num(url: str, request_id: str) -> requests.Response:
    return requests.get(f"{url}/api/queue_num", params={"event_id": "sale", "request_id": request_id}, timeout=10)


def worker(server: Any, tmp_path: Path, name: str, lease_ms: int = 1500) -> subprocess.Popen[bytes]:
    env = base_environment({**server.env, "IDP_LOG_LEVEL": "INFO"})
    return start_worker_process(env, tmp_path / f"{name}.log", lease_ms=lease_ms)


def idp_command(server: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "idp.cli", *args],
        cwd=str(REPO_ROOT),
        env=base_environment(server.env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            stop_process(process)


# --- the lottery ------------------------------------------------------------------------------------


def test_pre_queue_joins_are_drawn_by_the_worker_and_anyone_can_verify_the_draw(
    live_server: Any, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    server = live_server("redis")
    services = server.services()
    opens_at = int(time.time()) + 8
    services.events.create({"event_id": "sale", "prequeue_opens_at": int(time.time()) - 1, "opens_at": opens_at})
    commitment = requests.get(f"{server.url}/api/lottery", params={"event_id": "sale"}, timeout=10).json()
    assert len(commitment["commitment"]) == 64 and "seed" not in commitment

    joined = [api_join(server.url) for _ in range(40)]
    assert time.time() < opens_at, "the joins must happen during the pre-queue"
    assert all(j["status"] == "pending" and "queue_number" not in j for j in joined)
    for entry in joined[:5]:
        answer = queue_num(server.url, entry["api_request_id"])
        assert answer.status_code == 202 and answer.json()["opens_at"] == opens_at

    # Only the worker acts at the opening: nobody asks the web processes until the draw is done.
    workers.append(worker(server, tmp_path, "worker"))
    wait_until(lambda: services.engine.draw_state("sale").drawn_at is not None, "the draw", WAIT_SECONDS)
    assert services.engine.draw_state("sale").drawn_at >= opens_at
    assert "pre-queue drawn" in (tmp_path / "worker.log").read_text(errors="replace")

    positions = []
    for entry in joined:
        answer = queue_num(server.url, entry["api_request_id"])
        assert answer.status_code == 200, answer.text
        positions.append(answer.json()["queue_number"])
    assert sorted(positions) == list(range(1, 41))
    assert positions != list(range(1, 41)), "the draw is not the arrival order"
    assert api_join(server.url)["queue_number"] == 41

    published = requests.get(f"{server.url}/api/lottery", params={"event_id": "sale"}, timeout=10).json()
    assert hashlib.sha256(published["seed"].encode()).hexdigest() == commitment["commitment"]
    assert published["entrants"] == 40 and len(published["entries"]) == 40
    by_entry = {j["entry_id"]: p for j, p in zip(joined, positions, strict=True)}
    assert [by_entry[e] for e in published["entries"]] == list(range(1, 41))

    remote = idp_command(server, "lottery", "verify", "sale", "--url", server.url)
    assert remote.returncode == 0, remote.stdout + remote.stderr
    assert json.loads(remote.stdout)["ok"] is True
    local = idp_command(server, "lottery", "verify", "sale")
    assert local.returncode == 0, local.stdout + local.stderr
    assert json.loads(local.stdout) == {**json.loads(remote.stdout)}


# --- when_busy with max_active ----------------------------------------------------------------------


@pytest.fixture
def rp_url() -> Iterator[str]:
    with stub_pages() as pages:
        yield pages.url


def test_when_busy_admits_at_once_under_max_active_and_the_worker_refills(
    live_server: Any, browser: Any, rp_url: str, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    from idp.admin.keys import AdminKeyService

    server = live_server("redis")
    services = server.services()
    _record, key = AdminKeyService(services.db, services.clock).create("sale", ["admin"])
    created = requests.post(
        f"{server.url}/admin/api/events",
        headers=bearer(key),
        json={"event_id": "sale", "mode": "when_busy", "max_active": 3},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    callback = f"{rp_url}/callback"
    client = requests.post(
        f"{server.url}/admin/api/clients",
        headers=bearer(key),
        json={"client_id": "shop", "event_id": "sale", "redirect_uris": [callback]},
        timeout=10,
    )
    assert client.status_code == 201, client.text
    workers.append(worker(server, tmp_path, "worker"))

    # Two browsers through /authorize and one AWS API join: all three admitted at once.
    for n in range(2):
        context = browser.new_context()
        try:
            page = context.new_page()
            query = urlencode(
                {
                    "response_type": "code",
                    "client_id": "shop",
                    "redirect_uri": callback,
                    "scope": "openid",
                    "state": f"s{n}",
                    "nonce": f"n{n}",
                }
            )
            page.goto(f"{server.url}/authorize?{query}")
            page.wait_for_url(f"{callback}?*", timeout=WAIT_SECONDS * 1000)
        finally:
            context.close()
    third = api_join(server.url)
    token = requests.post(
        f"{server.url}/api/generate_token",
        json={"event_id": "sale", "request_id": third["api_request_id"]},
        timeout=10,
    )
    assert token.status_code == 200, token.text

    # The fourth waits: the room is at its target.
    fourth = api_join(server.url)
    assert fourth["queue_number"] == 4
    waiting = {"event_id": "sale", "request_id": fourth["api_request_id"]}
    time.sleep(2.0)  # several worker ticks: none may admit above the target
    assert requests.post(f"{server.url}/api/generate_token", json=waiting, timeout=10).status_code == 202

    # One session finishes; the worker admits the fourth by itself.
    finished = requests.post(
        f"{server.url}/admin/api/update_session",
        headers=bearer(key),
        json={"event_id": "sale", "request_id": third["api_request_id"], "status": 1},
        timeout=10,
    )
    assert finished.status_code == 200, finished.text
    wait_until(
        lambda: requests.post(f"{server.url}/api/generate_token", json=waiting, timeout=10).status_code == 200,
        "the worker to admit the fourth visitor",
        WAIT_SECONDS,
        step=0.25,
    )
    assert services.room.counters("sale", fresh=True).serving == 4


# --- max_per_minute ---------------------------------------------------------------------------------


def test_max_per_minute_120_admits_about_two_a_second(
    live_server: Any, tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    server = live_server("redis", IDP_RATE_LIMITS="off")  # 200 joins from one client
    services = server.services()
    services.events.create({"event_id": "sale", "max_per_minute": 120})
    for _ in range(200):
        api_join(server.url)
    workers.append(worker(server, tmp_path, "worker"))

    def serving() -> int:
        return int(services.room.counters("sale", fresh=True).serving)

    wait_until(lambda: serving() >= 2, "the first admissions", WAIT_SECONDS)
    start, t0 = serving(), time.monotonic()
    time.sleep(10.0)  # the span the rate is measured over
    admitted, elapsed = serving() - start, time.monotonic() - t0
    rate = admitted / elapsed
    assert 1.4 <= rate <= 2.6, f"{admitted} admitted in {elapsed:.1f}s"


# --- chaos: workers killed during the draw and during ticks -----------------------------------------


@pytest.mark.parametrize("backend", ["redis", "sqlite"])
def test_workers_killed_during_the_draw_and_ticks_never_draw_or_admit_twice(
    live_server: Any, tmp_path: Path, workers: list[subprocess.Popen[bytes]], backend: str
) -> None:
    server = live_server(backend)
    services = server.services()
    services.events.create(
        {
            "event_id": "sale",
            "prequeue_opens_at": int(time.time()) - 1,
            "opens_at": int(time.time()) + 3600,
            "max_per_minute": 600,
        }
    )
    entrants = [services.room.enter("sale")[1].request_id for _ in range(300)]
    # The operator brings the opening forward (the commitment stays); the server's cached settings
    # catch up within IDP_CACHE_TTL_MS.
    opens_at = int(time.time()) + 4
    services.events.update("sale", {"opens_at": opens_at})
    # Three workers; each is killed (SIGKILL: no lease release, no clean-up) while it may be drawing or
    # ticking, and replaced. The lease lapses after 1.5 s and the next one carries on.
    started_at = time.time()
    for n, lifetime in enumerate((None, 2.0, 2.6, 1.8, 2.3, 2.1)):
        process = worker(server, tmp_path, f"w{n}")
        workers.append(process)
        time.sleep(max(0.2, opens_at - time.time() - 0.1) if lifetime is None else lifetime)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    last = worker(server, tmp_path, "last")
    workers.append(last)
    wait_until(lambda: services.engine.draw_state("sale").drawn_at is not None, "the draw", WAIT_SECONDS)
    time.sleep(2.0)
    last.send_signal(signal.SIGTERM)
    last.wait(10)
    stopped_at = time.time()

    positions = sorted(services.engine.entry("sale", rid).position for rid in entrants)
    assert positions == list(range(1, 301)), "every entrant drawn exactly once"
    assert services.engine.counters("sale").queue == 300
    logs = "".join((tmp_path / f).read_text(errors="replace") for f in os.listdir(tmp_path) if f.endswith(".log"))
    # One draw at most in the logs: a worker killed between the draw's commit and its log line writes
    # none (the positions above are what prove the draw happened once).
    assert logs.count("pre-queue drawn") <= 1
    # 600 a minute is 10 a second: however the workers died, no second was admitted twice.
    serving = services.room.counters("sale", fresh=True).serving
    assert 0 < serving <= 10 * (int(stopped_at) - int(started_at) + 1)
