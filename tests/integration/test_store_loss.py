"""A Redis that loses what it acknowledged, with a redis-server of the test's own, under concurrent load.

FLUSHALL, a restart with persistence off, and a restart from a snapshot saved earlier: each happens while
visitors join and admitted places fetch their tokens. Whatever happens, no position is handed out twice
(not in answers, not in token records), no acknowledged place changes position (it keeps it, or answers
410 ``place_lost``), and joins answer 503 with Retry-After until the store is safe again. Then a paused
Redis: joins whose clients were told 503 leave no place behind, and a retried Idempotency-Key one place.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from idp.config import Settings
from idp.errors import IdpError
from idp.queue import keys
from idp.queue.engine import PlaceLostError
from idp.storage.models import QueueLedger, TokenRecord
from tests.conftest import TEST_SECRET
from tests.own_services import RedisServer

pytestmark = pytest.mark.integration

E = "sale"
WAIT_SECONDS = 90.0


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(folder=tmp_path / "redis").start()
    yield server
    server.stop()


def loss_settings(tmp_path: Path, own_redis: RedisServer, **extra: Any) -> Settings:
    from idp.storage.db import upgrade_database

    url = f"sqlite:///{tmp_path / 'idp.sqlite3'}"
    upgrade_database(url)
    return Settings(
        env="test",
        secret_key=TEST_SECRET,
        database_url=url,
        redis_url=own_redis.url,
        cache_ttl_ms=0,
        session_cache_seconds=0,
        instance_path=str(tmp_path),
        log_level="WARNING",
        retry_after_seconds=1,
        queue_block_size=40,
        # Several joiners share one test address: the per-address join limit is not what these tests are about.
        rate_limits="off",
        **extra,
    )


@pytest.fixture
def loss_app(tmp_path: Path, own_redis: RedisServer) -> Iterator[Any]:
    from idp.app import create_app

    app = create_app(loss_settings(tmp_path, own_redis))
    app.extensions["idp"].events.create({"event_id": E, "name": "Sale"})
    yield app
    app.extensions["idp"].close()


@pytest.fixture
def second_app(tmp_path: Path, own_redis: RedisServer, loss_app: Any) -> Iterator[Any]:
    """Another instance on the same Redis and database, with caches of its own (another web process)."""
    from idp.app import create_app

    app = create_app(loss_settings(tmp_path, own_redis))
    yield app
    app.extensions["idp"].close()


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Load:
    """Joiners and a token fetcher against the app; every answer is recorded."""

    def __init__(self, app: Any, joiners: int = 3, others: tuple[Any, ...] = ()) -> None:
        self.app = app
        # Other instances of the service (as other web processes would be): joiners take turns.
        self.apps = (app, *others)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.joins: list[tuple[float, int, dict[str, Any], dict[str, str]]] = []  # (at, status, body, headers)
        self.places: dict[str, int] = {}  # acknowledged request id -> position
        self.tokens: dict[str, int] = {}
        self.settled: set[str] = set()  # request ids whose token answer was final (200 or 410)
        self.token_answers: list[int] = []
        self.errors: list[str] = []  # error codes of every refused operation, joins included
        self.threads = [
            threading.Thread(target=self._join, args=(self.apps[i % len(self.apps)],)) for i in range(joiners)
        ]
        self.threads.append(threading.Thread(target=self._admit))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def acknowledged(self) -> int:
        with self.lock:
            return len(self.places)

    def _join(self, app: Any) -> None:
        client = app.test_client()
        while not self.stop.is_set():
            response = client.post("/api/assign_queue_num", json={"event_id": E})
            body = response.get_json(silent=True) or {}
            with self.lock:
                self.joins.append((time.monotonic(), response.status_code, body, dict(response.headers)))
                if response.status_code == 200:
                    self.places[body["api_request_id"]] = body["queue_number"]
                else:
                    self.errors.append(body.get("error", ""))

    def _admit(self) -> None:
        client = self.app.test_client()
        room = self.app.extensions["idp"].room
        while not self.stop.is_set():
            try:
                serving = room.increment_serving(E, 3)
            except IdpError as exc:
                with self.lock:
                    self.errors.append(exc.code)
                time.sleep(0.05)
                continue
            with self.lock:
                due = [(r, p) for r, p in self.places.items() if p <= serving and r not in self.settled]
            for rid, position in due[:10]:
                response = client.post("/api/generate_token", json={"event_id": E, "request_id": rid})
                with self.lock:
                    self.token_answers.append(response.status_code)
                    if response.status_code == 503:
                        self.errors.append((response.get_json() or {}).get("error", ""))
                    if response.status_code == 200:
                        self.tokens[rid] = position
                    if response.status_code in (200, 410):
                        self.settled.add(rid)
            time.sleep(0.01)


def check_answers(load: Load) -> None:
    for _at, status, body, headers in load.joins:
        assert status in (200, 503), (status, body)
        if status == 503:
            assert body.get("error") in ("queue_store_lost", "service_unavailable"), body
            assert int(headers["Retry-After"]) >= 1
    assert 500 not in load.token_answers
    positions = list(load.places.values())
    assert len(positions) == len(set(positions)), "a position was handed out twice"


def check_token_records(app: Any, load: Load) -> None:
    svc = app.extensions["idp"]
    db = svc.db
    # Token records are found by the request id's tag (the request id itself is not kept readable).
    places = {svc.lookup.hex_tag("request id", rid): position for rid, position in load.places.items()}
    with db.session(readonly=True) as session:
        doubled = session.execute(
            select(TokenRecord.queue_position)
            .where(TokenRecord.event_id == E)
            .group_by(TokenRecord.queue_position)
            .having(func.count() > 1)
        ).all()
        assert doubled == [], "a position is held by two token records"
        for tag, position in session.execute(
            select(TokenRecord.request_id, TokenRecord.queue_position).where(TokenRecord.event_id == E)
        ):
            assert places[tag] == position


def place_answers(app: Any, places: dict[str, int]) -> dict[str, int]:
    """Ask queue_num for every acknowledged place: 200 with the same position or 410 place_lost."""
    client = app.test_client()
    counts = {"kept": 0, "lost": 0}
    for rid, position in places.items():
        response = client.get(f"/api/queue_num?event_id={E}&request_id={rid}")
        body = response.get_json()
        if response.status_code == 200:
            assert body["queue_number"] == position, "an acknowledged place changed position"
            counts["kept"] += 1
        else:
            assert (response.status_code, body["error"]) == (410, "place_lost"), body
            counts["lost"] += 1
    return counts


@pytest.mark.parametrize("fault", ["flushall", "restart_without_persistence", "restart_from_old_snapshot"])
def test_a_store_that_loses_data_never_hands_out_a_position_twice(
    loss_app: Any, second_app: Any, own_redis: RedisServer, fault: str
) -> None:
    with Load(loss_app, joiners=4, others=(second_app,)) as load:
        wait_for(lambda: load.acknowledged() >= 120 and len(load.tokens) >= 5, "joins and tokens before the fault")
        saved: dict[str, int] = {}
        if fault == "restart_from_old_snapshot":
            with load.lock:
                saved = dict(load.places)  # answered before the snapshot: inside it
            own_redis.client().save()
            wait_for(lambda: load.acknowledged() >= len(saved) + 100, "joins after the snapshot")
        with load.lock:
            before = dict(load.places)
            fault_at = time.monotonic()
        if fault == "flushall":
            own_redis.client().flushall()
        else:
            own_redis.restart()
        wait_for(
            lambda: sum(1 for at, status, *_ in load.joins if at > fault_at and status == 200) >= 100,
            "joins after recovery",
        )
        wait_for(lambda: len(load.tokens) >= 5 + 5, "tokens after recovery")

    check_answers(load)
    check_token_records(loss_app, load)
    # The operation that found the loss (a join, a token or an increment) was refused with the code.
    assert "queue_store_lost" in load.errors, "the loss was not reported"
    after = {rid: pos for rid, pos in load.places.items() if rid not in before}
    # Joins acknowledged after the fault continue above every position acknowledged before it
    # (the few answered around the fault itself excepted: they ran before the store lost anything).
    late = sorted(after.values())
    assert late[-100] > max(before.values())

    counts = place_answers(loss_app, load.places)
    assert counts["lost"] > 0
    if fault == "restart_from_old_snapshot":
        kept = place_answers(loss_app, saved)
        assert kept == {"kept": len(saved), "lost": 0}, "a place in the snapshot was lost"

    svc = loss_app.extensions["idp"]
    with svc.db.session(readonly=True) as session:
        ledger = session.get(QueueLedger, E)
        assert ledger is not None and ledger.losses == 1 and ledger.status == "ok" and ledger.generation == 2
    counters = svc.room.counters(E, fresh=True)
    assert counters.lost > 0
    assert counters.queue >= max(load.places.values())


def test_joins_told_503_by_a_paused_store_leave_no_place(loss_app: Any, own_redis: RedisServer) -> None:
    with Load(loss_app, joiners=4) as load:
        wait_for(lambda: load.acknowledged() >= 50, "joins before the pause")
        own_redis.pause()
        time.sleep(3.0)  # longer than the client's socket timeout: joins in flight are answered 503
        own_redis.resume()
        paused_until = time.monotonic()
        wait_for(
            lambda: sum(1 for at, status, *_ in load.joins if at > paused_until and status == 200) >= 30,
            "joins after the pause",
        )
    check_answers(load)
    assert any(status == 503 for _at, status, *_ in load.joins), "no join was refused during the pause"
    places = own_redis.client().hlen(keys.places(E))
    assert places == len(load.places), "a join answered 503 left a place in the queue"


def test_a_join_retried_with_its_idempotency_key_after_a_503_has_one_place(
    loss_app: Any, own_redis: RedisServer
) -> None:
    client = loss_app.test_client()
    headers = {"Idempotency-Key": "visitor-42-attempt-1"}
    first = client.post("/api/assign_queue_num", json={"event_id": E}, headers=headers)
    assert first.status_code == 200
    own_redis.pause()
    try:
        stalled = client.post("/api/assign_queue_num", json={"event_id": E}, headers={"Idempotency-Key": "k2"})
    finally:
        own_redis.resume()
    assert stalled.status_code == 503 and stalled.headers["Retry-After"]
    again = client.post("/api/assign_queue_num", json={"event_id": E}, headers={"Idempotency-Key": "k2"})
    repeat = client.post("/api/assign_queue_num", json={"event_id": E}, headers={"Idempotency-Key": "k2"})
    assert again.status_code == repeat.status_code == 200
    assert again.get_json() == repeat.get_json()
    assert again.get_json()["queue_number"] == first.get_json()["queue_number"] + 1
    assert own_redis.client().hlen(keys.places(E)) == 2


def test_a_pre_queue_entry_lost_with_the_store_answers_410_place_lost(loss_app: Any, own_redis: RedisServer) -> None:
    svc = loss_app.extensions["idp"]
    now = int(time.time())
    svc.events.create({"event_id": "early", "name": "Early", "prequeue_opens_at": now - 60, "opens_at": now + 3600})
    client = loss_app.test_client()

    def queue_num(request_id: str) -> Any:
        return client.get("/api/queue_num", query_string={"event_id": "early", "request_id": request_id})

    entered = [client.post("/api/assign_queue_num", json={"event_id": "early"}) for _ in range(2)]
    assert [e.status_code for e in entered] == [200, 200]
    rids = [e.get_json()["api_request_id"] for e in entered]
    assert [queue_num(rid).status_code for rid in rids] == [202, 202]  # in the pre-queue, no place yet
    own_redis.client().flushall()
    refused = client.post("/api/assign_queue_num", json={"event_id": "early"})
    assert refused.status_code == 503 and refused.get_json()["error"] == "queue_store_lost"
    kept = client.post("/api/assign_queue_num", json={"event_id": "early"})
    assert kept.status_code == 200
    for rid in rids:
        gone = queue_num(rid)
        assert (gone.status_code, gone.get_json()["error"]) == (410, "place_lost"), gone.get_json()
    assert queue_num(kept.get_json()["api_request_id"]).status_code == 202
    unknown = queue_num(str(uuid.uuid4()))
    assert unknown.status_code == 404


def test_without_automatic_recovery_the_event_waits_for_idp_queue_recover(
    tmp_path: Path, own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from idp import cli
    from idp.app import create_app
    from tests.admin_support import bearer, make_key

    settings = loss_settings(tmp_path, own_redis, queue_auto_recover=False)
    app = create_app(settings)
    try:
        svc = app.extensions["idp"]
        svc.events.create({"event_id": E, "name": "Sale"})
        client = app.test_client()
        key = make_key(svc, "admin")
        held = [client.post("/api/assign_queue_num", json={"event_id": E}).get_json() for _ in range(3)]
        assert [h["queue_number"] for h in held] == [1, 2, 3]
        own_redis.client().flushall()
        for _ in range(2):  # refused, and still refused: nobody recovers it automatically
            refused = client.post("/api/assign_queue_num", json={"event_id": E})
            assert refused.status_code == 503 and refused.get_json()["error"] == "queue_store_lost"
            assert refused.headers["Retry-After"] == "1"
        assert 'idp_queue_store_lost{event_id="sale"} 1.0' in client.get("/metrics").get_data(as_text=True)
        # Readiness is about this process: a lost event (and Redis without AOF) leaves it ready.
        assert client.get("/readyz").status_code == 200
        lost_place = client.get(f"/api/queue_num?event_id={E}&request_id={held[0]['api_request_id']}")
        assert lost_place.status_code == 503

        for name, value in {
            "IDP_ENV": "test",
            "IDP_DATABASE_URL": settings.database_url,
            "IDP_REDIS_URL": own_redis.url,
            "IDP_SECRET_KEY": TEST_SECRET,
            "IDP_INSTANCE_PATH": str(tmp_path),
            "IDP_QUEUE_AUTO_RECOVER": "0",
        }.items():
            monkeypatch.setenv(name, value)
        assert cli.main(["queue", "recover", E]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["outcome"] == "recovered" and report["status"] == "ok" and report["generation"] == 2
        assert cli.main(["queue", "recover", E]) == 0  # nothing left to do: still exit 0
        assert json.loads(capsys.readouterr().out)["outcome"] == "current"

        again = client.post("/api/assign_queue_num", json={"event_id": E})
        assert again.status_code == 200 and again.get_json()["queue_number"] > 3
        gone = client.get(f"/api/queue_num?event_id={E}&request_id={held[0]['api_request_id']}")
        assert (gone.status_code, gone.get_json()["error"]) == (410, "place_lost")
        unknown = client.get(f"/api/queue_num?event_id={E}&request_id=00000002-0000-4000-8000-000000000000")
        assert unknown.status_code == 404
        metrics = client.get("/metrics").get_data(as_text=True)
        assert 'idp_queue_store_lost{event_id="sale"} 0.0' in metrics
        assert 'idp_queue_store_losses_total{event_id="sale"} 1.0' in metrics
        stats = client.get(f"/admin/api/events/{E}/stats", headers=bearer(key)).get_json()
        assert stats["queue_store"]["losses"] == 1 and stats["queue_store"]["status"] == "ok"
        assert stats["waiting"] == 1 and stats["queue"] == again.get_json()["queue_number"]
        # The serving counter skips the lost positions: one increment admits the new place.
        assert svc.room.increment_serving(E, 1) == again.get_json()["queue_number"]
    finally:
        app.extensions["idp"].close()


def test_serve_and_worker_warn_when_redis_has_no_aof(
    tmp_path: Path, own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    from idp.queue.cli import warn_without_persistence

    settings = loss_settings(tmp_path, own_redis)
    with caplog.at_level("WARNING", logger="idp.queue"):
        warn_without_persistence(settings)
    assert any("without AOF persistence" in r.getMessage() for r in caplog.records)
    caplog.clear()
    own_redis.client().config_set("appendonly", "yes")
    with caplog.at_level("WARNING", logger="idp.queue"):
        warn_without_persistence(settings)
    assert not any("AOF" in r.getMessage() for r in caplog.records)


def test_the_aof_warning_checks_every_master_of_a_cluster(
    tmp_path: Path, redis_cluster: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from idp.queue.cli import warn_without_persistence

    settings = Settings(env="test", secret_key=TEST_SECRET, redis_url=redis_cluster.url, instance_path=str(tmp_path))
    masters = redis_cluster.nodes
    before = [node.cli("CONFIG", "GET", "appendonly").split()[-1] for node in masters]
    try:
        for node in masters:
            node.cli("CONFIG", "SET", "appendonly", "yes")
        # One master without AOF, and not one of the seed nodes the URL names: it is still found.
        lagging = masters[-1]
        assert f":{lagging.port}" not in redis_cluster.url
        lagging.cli("CONFIG", "SET", "appendonly", "no")
        with caplog.at_level("WARNING", logger="idp.queue"):
            warn_without_persistence(settings)
        warnings = [r.getMessage() for r in caplog.records if "without AOF persistence" in r.getMessage()]
        assert len(warnings) == 1 and f"127.0.0.1:{lagging.port}" in warnings[0]
        assert not any(f"127.0.0.1:{node.port}" in warnings[0] for node in masters[:-1])
        caplog.clear()
        lagging.cli("CONFIG", "SET", "appendonly", "yes")
        with caplog.at_level("WARNING", logger="idp.queue"):
            warn_without_persistence(settings)
        assert not any("AOF" in r.getMessage() for r in caplog.records)
    finally:
        for node, value in zip(masters, before, strict=True):
            node.cli("CONFIG", "SET", "appendonly", value)


@pytest.mark.parametrize("backend_settings", ["redis"], indirect=True)
def test_the_serving_counter_and_the_sweep_skip_lost_positions(backend_settings: Settings, clock: Any) -> None:
    import redis as redis_lib

    from idp.app import build_services
    from idp.queue.engine import ExpiryPolicy, StoreLostError

    auto = ExpiryPolicy(enabled=True, period=100, incr_serving_on_expiry=True)
    svc = build_services(backend_settings, clock)
    try:
        engine = svc.engine
        first = [engine.enqueue(E) for _ in range(5)]
        assert engine.increment_serving(E, 2) == 2
        redis_lib.Redis.from_url(backend_settings.redis_url or "").flushdb()
        with pytest.raises(StoreLostError):
            engine.enqueue(E)  # the operation that finds the loss is refused
        after = engine.enqueue(E)
        reserved = backend_settings.queue_block_size
        assert after.position == reserved + 1  # above every position the database reserved
        counters = engine.counters(E)
        assert (counters.queue, counters.serving, counters.lost, counters.waiting) == (reserved + 1, 2, reserved, 1)
        # Admitting one place skips the lost ones: the counter lands on the new place.
        assert engine.increment_serving(E, 1) == after.position
        clock.advance(101)
        swept = engine.sweep(E, auto)
        # Only the new place expired unclaimed; the lost positions are not counted and not compensated.
        assert (swept.expired_unclaimed, swept.max_expired) == (1, after.position)
        assert swept.serving == after.position + 1
        assert engine.counters(E).expired == 1
        with pytest.raises(PlaceLostError):
            engine.entry(E, first[0].request_id)
    finally:
        svc.close()
