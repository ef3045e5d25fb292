"""Two processes giving one event its first queue identity at once, on PostgreSQL: they must agree.

PostgreSQL cannot lock a ledger row that does not exist yet, so two processes may both start the first
use of an event. The second one's insert waits for the first's to commit and then does nothing; it must
then take the identity the first installed, not install its own over it (the database would know one
identity and Redis hold another: every later join of the first process would answer 503 for good).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

from idp.crypto import LookupKey
from idp.queue import keys
from idp.queue.ledger import Ledger
from idp.queue.redis_store import RedisQueueStore
from idp.storage.db import Database
from tests.conftest import _flush_redis, _truncate_pg

pytestmark = pytest.mark.integration

E = "sale"
LOOKUP = LookupKey(b"k" * 32)


def test_two_processes_starting_an_event_at_once_agree_on_its_identity(
    pg_database: str, redis_available: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _truncate_pg(pg_database)
    _flush_redis(redis_available)
    databases = [Database(pg_database), Database(pg_database)]
    first, second = (RedisQueueStore.from_url(redis_available, Ledger(db), LOOKUP, retry_after=1) for db in databases)
    second_looking = threading.Event()
    first_installed = threading.Event()
    install, inspect = first._install, second._inspect

    def first_install(*args: Any, **kwargs: Any) -> bool:
        # The first process has inserted the ledger row (not committed yet) once the second has read
        # that there is none and is about to look at Redis.
        assert second_looking.wait(10)
        done = install(*args, **kwargs)
        first_installed.set()
        return done

    def second_inspect(event_id: str) -> Any:
        second_looking.set()
        assert first_installed.wait(10)
        return inspect(event_id)

    monkeypatch.setattr(first, "_install", first_install)
    monkeypatch.setattr(second, "_inspect", second_inspect)
    answers: dict[str, Any] = {}

    def join(name: str, store: RedisQueueStore) -> None:
        try:
            answers[name] = store.enqueue(E, str(uuid.uuid4()), int(time.time()), None).position
        except Exception as exc:  # noqa: BLE001 - recorded and checked below
            answers[name] = exc

    threads = [threading.Thread(target=join, args=(n, s)) for n, s in (("first", first), ("second", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert first_installed.is_set() and second_looking.is_set(), "the two first uses did not overlap"
    try:
        row = first.ledger.get(E)
        assert row is not None and row.status == "ok" and row.generation == 1
        epoch = first.client.hget(keys.counters(E), "epoch")
        assert epoch is not None and epoch.decode() == row.epoch, "Redis holds an identity the database does not know"
        # Both processes join from now on (one of the racing joins may have answered 503, safe to retry).
        positions = [store.enqueue(E, str(uuid.uuid4()), int(time.time()), None).position for store in (first, second)]
        held = [p for p in answers.values() if isinstance(p, int)]
        assert sorted(held + positions) == list(range(1, len(held) + 3)), answers
    finally:
        for store, db in zip((first, second), databases, strict=True):
            store.close()
            db.dispose()
        _flush_redis(redis_available)
        _truncate_pg(pg_database)
