"""A tiny in-process cache for answers that may be a moment stale (counters, event settings).

One load of a key at a time: when a value expires while many requests want it (every poll of a busy
event, under a gevent worker whose loads wait on the network and let the other requests run), the
first caller loads it and the others wait for that value instead of each loading it again. The value
they get was read after it expired, even when the read took longer than the TTL. A caller that comes after
an invalidate never gets a value whose load began before it, and such a value is not kept.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

# A caller that finds its key being loaded waits at most this long for that load, then loads it itself.
FLIGHT_WAIT_SECONDS = 5.0


class _Flight(Generic[V]):
    """One load of a key: who runs it, what its waiters wait on, and the record it made (None till then,
    and if it failed)."""

    __slots__ = ("done", "owner", "record")

    def __init__(self, owner: int) -> None:
        self.owner = owner
        self.done = threading.Event()
        self.record: tuple[float, V] | None = None


class TTLCache(Generic[V]):
    """Keep each value for ``ttl`` seconds; a miss loads it. Bounded so unknown keys cannot grow it forever."""

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._data: dict[Hashable, tuple[float, V]] = {}
        self._lock = threading.Lock()
        # Keys being loaded: the loader's thread (greenlet) id and what its waiters wait on.
        self._flights: dict[Hashable, _Flight[V]] = {}
        # Invalidations, counted: a load keeps its value only if its key was not invalidated while it ran
        # (the value may predate the change). ``_changed`` holds the count at each key's last invalidation,
        # ``_all_changed`` the count at the last invalidation of every key (or when ``_changed`` was full).
        self._version = 0
        self._changed: dict[Hashable, int] = {}
        self._all_changed = 0

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
        me = threading.get_ident()
        with self._lock:
            since = self._version
            flight = self._flights.get(key)
            if flight is None:
                mine = self._flights[key] = _Flight[V](me)
        if flight is None:
            try:
                mine.record = self._store(key, (now + self.ttl, load()), since)
                return mine.record
            finally:
                with self._lock:
                    if self._flights.get(key) is mine:  # (an invalidate may have dropped it)
                        del self._flights[key]
                mine.done.set()
        if flight.owner == me:  # a load that needs its own key again loads it
            return self._store(key, (now + self.ttl, load()), since)
        # Another caller is loading it: its value, read after it expired, is the one to use (even when
        # the read took longer than the TTL: reading it again here would be no fresher when it came).
        flight.done.wait(FLIGHT_WAIT_SECONDS)
        if flight.record is not None:
            return flight.record
        hit = self._data.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit
        # That load failed (or is too slow): load it here.
        with self._lock:
            since = self._version
        return self._store(key, (time.monotonic() + self.ttl, load()), since)

    def _store(self, key: Hashable, record: tuple[float, V], since: int) -> tuple[float, V]:
        """Keep ``record``, loaded since invalidation ``since``, unless its key was invalidated meanwhile."""
        with self._lock:
            if self._all_changed > since or self._changed.get(key, 0) > since:
                return record  # its caller may use it; later callers load the value after the change
            if len(self._data) >= self.max_entries:
                self._data.clear()
            self._data[key] = record
        return record

    def current(self, key: Hashable, record: tuple[float, V]) -> bool:
        """True while ``record`` (from :meth:`entry`) is the live value of ``key``."""
        return self._data.get(key) is record and record[0] > time.monotonic()

    def invalidate(self, key: Hashable | None = None) -> None:
        """Forget ``key`` (every key with None): callers from now on get a value loaded from now on."""
        with self._lock:
            self._version += 1
            if key is None or len(self._changed) >= self.max_entries:
                self._changed.clear()
                self._all_changed = self._version
            if key is None:
                self._data.clear()
                self._flights.clear()
            else:
                self._changed[key] = self._version
                self._data.pop(key, None)
                self._flights.pop(key, None)  # its load may predate the change: nobody else waits for it
