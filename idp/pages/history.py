"""The serving counter's recent history, read from the queue store, cached per event and process.

Both stores already record ``(serving_counter, issue_time)`` at every increment (the start of the
claim window, DESIGN.md §4), so the admission rate needs no extra writes: this module reads the last
few records (one ``ZREVRANGE`` on Redis, one indexed query on the SQL store) at most once per cache
period per event and process, whatever the number of waiting visitors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from idp.cache import TTLCache
from idp.pages.estimate import MAX_SAMPLES


def _from_redis(store: Any, event_id: str, limit: int) -> list[tuple[int, int]]:
    from idp.queue import keys

    members = store.client.zrevrange(keys.issues(event_id), 0, limit - 1)
    samples = []
    for member in members:
        text = member.decode() if isinstance(member, bytes) else str(member)
        serving, _, issue_time = text.partition(":")
        if serving.isdigit() and issue_time.isdigit():
            samples.append((int(issue_time), int(serving)))
    return samples


def _from_sql(store: Any, event_id: str, limit: int) -> list[tuple[int, int]]:
    from sqlalchemy import select

    from idp.storage.models import ServingIssue

    stmt = (
        select(ServingIssue.issue_time, ServingIssue.serving_counter)
        .where(ServingIssue.event_id == event_id)
        .order_by(ServingIssue.serving_counter.desc())
        .limit(limit)
    )
    with store.db.session(readonly=True) as session:
        return [(int(t), int(s)) for t, s in session.execute(stmt)]


def _none(store: Any, event_id: str, limit: int) -> list[tuple[int, int]]:
    return []


class ServingHistory:
    """Recent ``(issue_time, serving)`` records per event, refreshed at most every ``ttl`` seconds."""

    def __init__(self, store: Any, ttl: float, limit: int = MAX_SAMPLES) -> None:
        self.store = store
        self.limit = limit
        self._cache: TTLCache[list[tuple[int, int]]] = TTLCache(ttl)
        self._read: Callable[[Any, str, int], list[tuple[int, int]]] = _none
        if hasattr(store, "client"):
            self._read = _from_redis
        elif hasattr(store, "db"):
            self._read = _from_sql

    def recent(self, event_id: str) -> list[tuple[int, int]]:
        return self._cache.get(event_id, lambda: self._read(self.store, event_id, self.limit))

    def invalidate(self, event_id: str | None = None) -> None:
        self._cache.invalidate(event_id)
