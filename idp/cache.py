"""A tiny in-process cache for answers that may be a moment stale (counters, event settings)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TTLCache(Generic[V]):
    """Keep each value for ``ttl`` seconds; a miss loads it. Bounded so unknown keys cannot grow it forever."""

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._data: dict[Hashable, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], V]) -> V:
        return self.entry(key, load)[1]

    def entry(self, key: Hashable, load: Callable[[], V]) -> tuple[float, V]:
        """Like :meth:`get`, with the cache's own record of the value (its expiry, the value): while
        :meth:`current` says that record is the live one (not expired, not invalidated), a caller may keep
        what it derived from the value. With ``ttl`` <= 0 nothing is kept and no record is current."""
        if self.ttl <= 0:
            return (0.0, load())
        now = time.monotonic()
        hit = self._data.get(key)
        if hit is not None and hit[0] > now:
            return hit
        record = (now + self.ttl, load())
        with self._lock:
            if len(self._data) >= self.max_entries:
                self._data.clear()
            self._data[key] = record
        return record

    def current(self, key: Hashable, record: tuple[float, V]) -> bool:
        """True while ``record`` (from :meth:`entry`) is the live value of ``key``."""
        return self._data.get(key) is record and record[0] > time.monotonic()

    def invalidate(self, key: Hashable | None = None) -> None:
        with self._lock:
            if key is None:
                self._data.clear()
            else:
                self._data.pop(key, None)
