"""The injected clock: production reads the system time, tests move a frozen one."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Return the current time in epoch seconds."""


class SystemClock:
    def now(self) -> float:
        return time.time()


class FrozenClock:
    """A clock that only moves when told to; safe to share across threads."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def set(self, value: float) -> None:
        with self._lock:
            self._now = float(value)

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            return self._now
