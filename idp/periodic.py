"""A background loop per process, started on first use: the batched writers' flushers.

Access lines (:mod:`idp.logging`) and request metrics (:mod:`idp.web.metrics`) are queued by requests
and written in batches by a daemon thread (a greenlet under gunicorn's gevent worker) that wakes every
so often. The loop is started by the first use in the process that serves, not at import: under
gunicorn a module may be imported before gevent patches threading, and a worker forked from a process
that ran one does not inherit the thread. :meth:`Periodic.stop` (and a fork, through the owner's fork
hook) ends the current loop at its next wake; the next use starts a new one.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable


class Periodic:
    """Call ``work`` every ``interval()`` seconds in a daemon thread of this process, once started."""

    def __init__(self, name: str, interval: Callable[[], float], work: Callable[[], object]) -> None:
        self.name = name
        self._interval = interval
        self._work = work
        self.running = False
        self._generation = 0

    def start(self) -> None:
        # No lock: under gevent starting a thread switches to it, and a lock made before gevent patched
        # threading would then block the whole worker. Two callers that start one each at once leave
        # the older loop to end at its next wake (its generation is no longer current).
        self.running = True
        self._generation += 1
        threading.Thread(target=self._run, args=(self._generation,), name=self.name, daemon=True).start()

    def stop(self) -> None:
        """End the current loop at its next wake; the next :meth:`start` makes a new one."""
        self._generation += 1
        self.running = False

    def _run(self, generation: int) -> None:
        while self._generation == generation:
            time.sleep(self._interval())
            # A failing write must not end the loop: the next wake tries again.
            with contextlib.suppress(Exception):
                self._work()
