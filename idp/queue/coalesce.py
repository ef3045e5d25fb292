"""Calls that arrive together go to the store together: a group commit, per key.

A join is one script call on Redis, and what a call costs around its round trip (framing, two system
calls, a switch to the event loop and back, the script's identity check on the server) is much of a join's
cost. When joins of one event arrive while a call for that event is in flight, they wait for it and then go
in the next call together, in their order of arrival; so a burst of joins costs a few calls, not one each.

Nothing waits when there is nothing to wait for: the first call for a key goes out at once, and a call
goes out as soon as the one before it returns, with whatever arrived meanwhile (at most ``max_batch``).
Under gunicorn's gevent worker the waiting is cooperative (``threading`` is patched before the app
loads); under threads it is real. Every caller gets its own outcome (a result or an exception). A waiter
has no timer of its own: a call always settles its batch and hands the key on, and the store's own
timeouts bound how long a call takes.

An exception that fails several items is raised in each caller as an object of its own (a copy with the
same type, arguments, cause and context), so callers raising it at once never share, and grow, one
traceback. A caller interrupted while it waits (``gevent.Timeout``, ``GreenletExit``, ``KeyboardInterrupt``)
withdraws its item, or hands on the batch it was given to run, so nobody is left waiting for it; when the
caller that runs a call is interrupted, the others of its batch get :class:`CoalesceInterrupted` (an
``Exception``: their requests can still answer), never the interruption itself.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - the item type
R = TypeVar("R")

# A call runs these items and gives one outcome per item, in order: a result or an exception to raise.
Runner = Callable[[str, Sequence[I]], Sequence["R | BaseException"]]


def _let_others_run() -> None:
    time.sleep(0)  # under gevent: a switch to the loop, which runs the greenlets that are ready


class CoalesceInterrupted(Exception):
    """The caller running this item's call was interrupted: whether the call took effect is unknown."""


def _own_copy(exc: BaseException) -> BaseException:
    """``exc`` for one more caller: an equal exception object of its own (``exc`` if it cannot be copied)."""
    if not isinstance(exc, Exception):
        interrupted = CoalesceInterrupted("the call carrying this item was interrupted")
        interrupted.__cause__ = exc
        return interrupted
    try:
        twin = copy.copy(exc)
    except Exception:  # noqa: BLE001 - an exception type that cannot be rebuilt from its arguments
        return exc
    if type(twin) is not type(exc) or twin.args != exc.args:
        return exc
    twin.__cause__ = exc.__cause__
    twin.__context__ = exc.__context__
    twin.__suppress_context__ = exc.__suppress_context__
    twin.__traceback__ = exc.__traceback__  # where it arose; raising the copy extends only the copy's
    return twin


class _Waiter(Generic[I, R]):
    __slots__ = ("batch", "done", "error", "finished", "item", "result")

    def __init__(self, item: I) -> None:
        self.item = item
        self.done: threading.Event | None = None
        self.batch: list[_Waiter[I, R]] | None = None  # set when this waiter is handed a batch to run
        self.finished = False
        self.result: R | None = None
        self.error: BaseException | None = None

    def settle(self, outcome: R | BaseException) -> None:
        if isinstance(outcome, BaseException):
            self.error = outcome
        else:
            self.result = outcome
        self.finished = True

    def outcome(self) -> R:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]  # settled: a result of type R


class Coalescer(Generic[I, R]):
    """Runs ``run(key, items)`` for items submitted under ``key``, several at once when they queue up."""

    def __init__(self, run: Runner[I, R], *, max_batch: int = 64, gather: bool = False) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._run = run
        self.max_batch = max_batch
        # A caller that finds its key idle lets the others run once (time.sleep(0): under gevent, the
        # requests already readable reach their join) and takes those that queued meanwhile along.
        self.gather = gather and max_batch > 1
        self._lock = threading.Lock()
        # A key is busy while it is in here: its list holds the waiters that arrived since its call went out.
        self._queues: dict[str, list[_Waiter[I, R]]] = {}
        # Calls made and items they carried: the average batch (not exact under threads).
        self.calls = 0
        self.items = 0

    def submit(self, key: str, item: I) -> R:
        """Run ``item`` (alone or with others of ``key``) and give its outcome: its result, or raise."""
        waiter: _Waiter[I, R] = _Waiter(item)
        with self._lock:
            queue = self._queues.get(key)
            if queue is None:
                self._queues[key] = []
                batch: list[_Waiter[I, R]] | None = [waiter]
            else:
                waiter.done = threading.Event()
                queue.append(waiter)
                batch = None
        if batch is None:
            batch = self._wait(key, waiter)
            if batch is None:
                return waiter.outcome()
        elif self.gather:
            batch = self._gather(key, waiter)
        self._lead(key, batch)
        return waiter.outcome()

    def _gather(self, key: str, waiter: _Waiter[I, R]) -> list[_Waiter[I, R]]:
        """Yield once, then take the waiters that queued meanwhile into this caller's batch."""
        try:
            _let_others_run()
        except BaseException:
            self._hand_on(key)  # this caller's item was never sent; whoever queued goes on without it
            raise
        with self._lock:
            queue = self._queues.get(key)
            if not queue:
                return [waiter]
            taken = queue[: self.max_batch - 1]
            del queue[: len(taken)]
        return [waiter, *taken]

    def _wait(self, key: str, waiter: _Waiter[I, R]) -> list[_Waiter[I, R]] | None:
        """Wait until the waiter is settled (None) or handed a batch to run (the batch)."""
        done = waiter.done
        assert done is not None
        try:
            done.wait()
        except BaseException:
            self._abandon(key, waiter)
            raise
        return waiter.batch

    def _abandon(self, key: str, waiter: _Waiter[I, R]) -> None:
        """A waiter interrupted while it waits: nothing is done for its item, and nobody waits for it.

        Still queued: it leaves the queue. Handed a batch to run: the next waiter of that batch runs the
        rest, or the key is handed on. In a call another caller runs: that call settles it, unheard.
        """
        with self._lock:
            queue = self._queues.get(key)
            if queue is not None and waiter in queue:
                queue.remove(waiter)
                return
            batch = waiter.batch
            if batch is None or batch[0] is not waiter:
                return
            waiter.batch = None
            rest = batch[1:]
            if rest:
                rest[0].batch = rest
        if not rest:
            self._hand_on(key)
            return
        assert rest[0].done is not None
        rest[0].done.set()

    def _lead(self, key: str, batch: list[_Waiter[I, R]]) -> None:
        """Run one batch, settle every waiter in it, then hand the key to whoever queued meanwhile."""
        try:
            self.calls += 1
            self.items += len(batch)
            outcomes = self._run(key, [w.item for w in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError("a coalesced call gave the wrong number of outcomes")
            for waiter, outcome in zip(batch, outcomes, strict=True):
                waiter.settle(outcome)
            if len(batch) > 1:
                # An exception object that is several items' outcome: each caller raises one of its own.
                seen: set[int] = set()
                for waiter in batch:
                    error = waiter.error
                    if error is not None:
                        if id(error) in seen:
                            waiter.error = _own_copy(error)
                        seen.add(id(error))
        except BaseException as exc:  # every waiter of the batch learns what happened to its item
            for waiter in batch:
                if not waiter.finished:
                    waiter.settle(exc if waiter is batch[0] else _own_copy(exc))
            if not isinstance(exc, Exception):
                raise  # an interrupted greenlet or thread: the others are settled and the key handed on
        finally:
            try:
                self._hand_on(key)
            finally:
                for waiter in batch[1:]:
                    assert waiter.done is not None
                    waiter.done.set()

    def _hand_on(self, key: str) -> None:
        with self._lock:
            queue = self._queues.get(key)
            if not queue:
                self._queues.pop(key, None)
                return
            batch = queue[: self.max_batch]
            del queue[: self.max_batch]
            leader = batch[0]
            leader.batch = batch  # under the lock: an interrupted waiter sees whether it was handed a batch
        assert leader.done is not None
        leader.done.set()
