"""Calls that arrive together go together (idp.queue.coalesce): outcomes, order, limits and failures."""

from __future__ import annotations

import importlib
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from idp.queue import coalesce
from idp.queue.coalesce import CoalesceInterrupted, Coalescer, Runner

pytestmark = pytest.mark.unit


class Gate:
    """A runner that records its calls and holds the first one until released."""

    def __init__(self, answer: Callable[[int], int | BaseException] = lambda item: item * 10) -> None:
        self.calls: list[list[int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.answer = answer

    def __call__(self, key: str, items: Sequence[int]) -> list[int | BaseException]:
        self.calls.append(list(items))
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(10)
        return [self.answer(i) for i in items]


def run_in_threads(
    coalescer: Coalescer[int, int], key: str, items: Sequence[int]
) -> tuple[dict[int, object], list[threading.Thread]]:
    """Submit each item from a thread of its own: their outcomes (filled as they finish) and the threads."""
    outcomes: dict[int, object] = {}

    def one(item: int) -> None:
        try:
            outcomes[item] = coalescer.submit(key, item)
        except BaseException as exc:  # noqa: BLE001 - the outcome under test
            outcomes[item] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in items]
    for t in threads:
        t.start()
    return outcomes, threads


def join_all(*groups: list[threading.Thread]) -> None:
    for group in groups:
        for t in group:
            t.join(10)
            assert not t.is_alive()


def queued(coalescer: Coalescer[int, int], key: str) -> int:
    with coalescer._lock:
        return len(coalescer._queues.get(key) or [])


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_a_lone_call_goes_at_once_and_alone() -> None:
    gate = Gate()
    gate.release.set()
    coalescer: Coalescer[int, int] = Coalescer(gate)
    assert coalescer.submit("e", 1) == 10
    assert coalescer.submit("e", 2) == 20
    assert gate.calls == [[1], [2]]


def test_items_that_arrive_during_a_call_go_together_in_arrival_order() -> None:
    gate = Gate()
    coalescer: Coalescer[int, int] = Coalescer(gate)
    first, first_threads = run_in_threads(coalescer, "e", [0])
    assert gate.entered.wait(10)
    results: dict[int, int] = {}
    threads = []
    for i in range(1, 6):  # one at a time, so the arrival order is known
        t = threading.Thread(target=lambda i=i: results.__setitem__(i, coalescer.submit("e", i)))
        t.start()
        threads.append(t)
        wait_until(lambda i=i: queued(coalescer, "e") == i)
    gate.release.set()
    join_all(threads, first_threads)
    assert gate.calls == [[0], [1, 2, 3, 4, 5]]
    assert results == {i: i * 10 for i in range(1, 6)}
    assert first[0] == 0
    assert coalescer.calls == 2 and coalescer.items == 6
    assert coalescer._queues == {}  # the key is free again


def test_keys_do_not_wait_for_each_other() -> None:
    gate = Gate()
    coalescer: Coalescer[int, int] = Coalescer(gate)
    first, first_threads = run_in_threads(coalescer, "a", [1])
    assert gate.entered.wait(10)
    assert coalescer.submit("b", 2) == 20  # "a" is still held
    gate.release.set()
    join_all(first_threads)
    assert first[1] == 10


def test_a_batch_holds_at_most_max_batch_items_and_the_rest_follow() -> None:
    gate = Gate()
    coalescer: Coalescer[int, int] = Coalescer(gate, max_batch=3)
    first, first_threads = run_in_threads(coalescer, "e", [0])
    assert gate.entered.wait(10)
    rest, rest_threads = run_in_threads(coalescer, "e", list(range(1, 8)))
    wait_until(lambda: queued(coalescer, "e") == 7)
    gate.release.set()
    join_all(first_threads, rest_threads)
    assert [len(c) for c in gate.calls] == [1, 3, 3, 1]
    assert sorted(i for c in gate.calls for i in c) == list(range(8))
    assert all(rest[i] == i * 10 for i in range(1, 8))


def test_each_item_gets_its_own_outcome_and_a_failed_call_fails_only_its_batch() -> None:
    def answer(item: int) -> int | BaseException:
        return ValueError(f"item {item}") if item % 2 else item

    gate = Gate(answer)
    coalescer: Coalescer[int, int] = Coalescer(gate)
    first, first_threads = run_in_threads(coalescer, "e", [0])
    assert gate.entered.wait(10)
    rest, rest_threads = run_in_threads(coalescer, "e", [1, 2, 3])
    wait_until(lambda: queued(coalescer, "e") == 3)
    gate.release.set()
    join_all(first_threads, rest_threads)
    assert first[0] == 0 and rest[2] == 2
    assert isinstance(rest[1], ValueError) and str(rest[1]) == "item 1"
    assert isinstance(rest[3], ValueError) and str(rest[3]) == "item 3"


def test_a_call_that_raises_fails_every_item_of_its_batch_and_the_key_goes_on() -> None:
    calls: list[list[int]] = []
    entered, release = threading.Event(), threading.Event()

    def run(key: str, items: Sequence[int]) -> list[int | BaseException]:
        calls.append(list(items))
        if len(calls) == 1:
            entered.set()
            assert release.wait(10)
        if len(calls) == 2:
            raise ConnectionError("the store went away")
        return list(items)

    coalescer: Coalescer[int, int] = Coalescer(run)
    first, first_threads = run_in_threads(coalescer, "e", [0])
    assert entered.wait(10)
    rest, rest_threads = run_in_threads(coalescer, "e", [1, 2])
    wait_until(lambda: queued(coalescer, "e") == 2)
    release.set()
    join_all(first_threads, rest_threads)
    assert first[0] == 0
    assert isinstance(rest[1], ConnectionError) and isinstance(rest[2], ConnectionError)
    assert coalescer.submit("e", 3) == 3  # the key was handed on, not left busy
    assert coalescer._queues == {}


def test_an_interrupted_leader_settles_its_batch_and_hands_the_key_on() -> None:
    class Interrupted(BaseException):
        pass

    calls: list[list[int]] = []

    def run(key: str, items: Sequence[int]) -> list[int | BaseException]:
        calls.append(list(items))
        raise Interrupted

    coalescer: Coalescer[int, int] = Coalescer(run)
    with pytest.raises(Interrupted):
        coalescer.submit("e", 1)
    assert coalescer._queues == {}


def test_a_wrong_number_of_outcomes_fails_the_batch() -> None:
    coalescer: Coalescer[int, int] = Coalescer(lambda key, items: [1, 2])
    with pytest.raises(RuntimeError, match="wrong number"):
        coalescer.submit("e", 1)


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Coalescer(lambda key, items: [], max_batch=0)


# -- interruptions and failures: nobody is left waiting, and every caller can still answer ----------------


@pytest.fixture
def green(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Real gevent greenlets: the coalescer's locks and events made cooperative, as gunicorn's worker does."""
    gevent = pytest.importorskip("gevent")
    event = importlib.import_module("gevent.event")
    lock = importlib.import_module("gevent.lock")
    monkeypatch.setattr(coalesce, "threading", SimpleNamespace(Lock=lock.Semaphore, Event=event.Event))
    return gevent


def green_gate(gevent: Any) -> tuple[list[list[int]], list[Any], Runner[int, int]]:
    """A runner whose n-th call waits for ``releases[n]`` (calls past the list go at once)."""
    calls: list[list[int]] = []
    releases = [gevent.event.Event(), gevent.event.Event()]

    def run(key: str, items: Sequence[int]) -> list[int | BaseException]:
        calls.append(list(items))
        if len(calls) <= len(releases):
            releases[len(calls) - 1].wait()
        return [i * 10 for i in items]

    return calls, releases, run


@pytest.mark.parametrize("interrupt", ["kill", "timeout"])
def test_a_greenlet_interrupted_while_queued_withdraws_and_the_key_goes_on(green: Any, interrupt: str) -> None:
    gevent = green
    calls, releases, run = green_gate(gevent)
    releases.pop()  # only the first call waits
    coalescer: Coalescer[int, int] = Coalescer(run)

    def within_timeout(key: str, item: int) -> int:
        with gevent.Timeout(0.05):
            return coalescer.submit(key, item)

    first = gevent.spawn(coalescer.submit, "e", 0)
    gevent.sleep(0)
    victim = gevent.spawn(coalescer.submit if interrupt == "kill" else within_timeout, "e", 1)
    rest = [gevent.spawn(coalescer.submit, "e", i) for i in (2, 3)]
    gevent.sleep(0)
    assert queued(coalescer, "e") == 3
    if interrupt == "kill":
        victim.kill()
    else:
        victim.join(5)
        assert isinstance(victim.exception, gevent.Timeout)
    assert queued(coalescer, "e") == 2  # withdrawn: it is nobody's leader
    releases[0].set()
    assert gevent.joinall([first, *rest], timeout=5) and all(g.ready() for g in rest)
    assert [first.value] + [g.value for g in rest] == [0, 20, 30]
    assert calls == [[0], [2, 3]]  # the withdrawn item never went out
    assert coalescer._queues == {}


def test_a_greenlet_killed_while_it_runs_a_call_leaves_its_batch_an_answer(green: Any) -> None:
    gevent = green
    calls, releases, run = green_gate(gevent)
    coalescer: Coalescer[int, int] = Coalescer(run)
    first = gevent.spawn(coalescer.submit, "e", 0)
    gevent.sleep(0)
    batch = [gevent.spawn(coalescer.submit, "e", i) for i in (1, 2, 3)]
    gevent.sleep(0)
    releases[0].set()
    gevent.sleep(0.01)
    assert calls == [[0], [1, 2, 3]]  # the second call waits, run by the greenlet of item 1
    batch[0].kill(gevent.GreenletExit)
    assert gevent.joinall([first, *batch], timeout=5)
    assert first.value == 0
    for g in batch[1:]:
        # An Exception the request can answer (a 503), not the GreenletExit that ended another greenlet.
        assert isinstance(g.exception, CoalesceInterrupted)
        assert isinstance(g.exception.__cause__, gevent.GreenletExit)
    assert batch[1].exception is not batch[2].exception
    assert coalescer.submit("e", 4) == 40 and coalescer._queues == {}


def coalescer_waiter(item: int) -> Any:
    waiter = coalesce._Waiter[int, int](item)
    waiter.done = threading.Event()
    return waiter


def test_a_waiter_interrupted_just_after_it_was_handed_a_batch_hands_it_on() -> None:
    coalescer: Coalescer[int, int] = Coalescer(lambda key, items: [i * 10 for i in items])
    victim, second, third = coalescer_waiter(1), coalescer_waiter(2), coalescer_waiter(3)

    class Interrupting(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            super().wait(timeout)
            raise KeyboardInterrupt  # arrives as the waiter wakes to run its batch

    victim.done = Interrupting()
    coalescer._queues["e"] = [victim, second, third]
    coalescer._hand_on("e")
    assert victim.batch == [victim, second, third]
    with pytest.raises(KeyboardInterrupt):
        coalescer._wait("e", victim)
    assert second.done is not None and second.done.is_set()
    assert second.batch == [second, third]  # the next waiter runs the rest
    assert coalescer._wait("e", second) == [second, third]
    coalescer._lead("e", [second, third])
    assert (second.outcome(), third.outcome()) == (20, 30)
    assert coalescer._queues == {}


def test_an_exception_that_fails_a_batch_is_an_object_of_its_own_in_each_caller() -> None:
    cause = OSError("reset")
    calls: list[list[int]] = []
    entered, release = threading.Event(), threading.Event()

    def run(key: str, items: Sequence[int]) -> list[int | BaseException]:
        calls.append(list(items))
        if len(calls) == 1:
            entered.set()
            assert release.wait(10)
            return list(items)
        try:
            raise cause
        except OSError as exc:
            raise ConnectionError("the store went away") from exc

    coalescer: Coalescer[int, int] = Coalescer(run)
    first, first_threads = run_in_threads(coalescer, "e", [0])
    assert entered.wait(10)
    rest, rest_threads = run_in_threads(coalescer, "e", [1, 2, 3])
    wait_until(lambda: queued(coalescer, "e") == 3)
    release.set()
    join_all(first_threads, rest_threads)
    errors = [rest[i] for i in (1, 2, 3)]
    assert all(type(e) is ConnectionError and str(e) == "the store went away" for e in errors)
    assert all(isinstance(e, BaseException) and e.__cause__ is cause for e in errors)
    assert len({id(e) for e in errors}) == 3  # raised at once in three threads, never one shared object
    # Each traceback runs through its own caller only: raising in one never lengthened another's.
    tracebacks = [traceback.extract_tb(e.__traceback__) for e in errors if isinstance(e, BaseException)]
    assert all(sum(f.name == "submit" for f in tb) == 1 for tb in tracebacks)


def test_outcomes_that_share_an_exception_object_are_raised_as_objects_of_their_own() -> None:
    shared = ConnectionError("the ledger went away")
    gate = Gate(answer=lambda item: shared)
    coalescer: Coalescer[int, int] = Coalescer(gate)
    first, first_threads = run_in_threads(coalescer, "e", [0])
    assert gate.entered.wait(10)
    rest, rest_threads = run_in_threads(coalescer, "e", [1, 2])
    wait_until(lambda: queued(coalescer, "e") == 2)
    gate.release.set()
    join_all(first_threads, rest_threads)
    assert first[0] is shared
    assert type(rest[1]) is type(rest[2]) is ConnectionError and rest[1] is not rest[2]
    assert str(rest[1]) == str(rest[2]) == "the ledger went away"


def test_a_failure_while_handing_the_key_on_still_wakes_the_batch() -> None:
    gate = Gate()
    coalescer: Coalescer[int, int] = Coalescer(gate)
    first, first_threads = run_in_threads(coalescer, "e", [0])
    assert gate.entered.wait(10)
    rest, rest_threads = run_in_threads(coalescer, "e", [1, 2])
    wait_until(lambda: queued(coalescer, "e") == 2)
    real_hand_on = coalescer._hand_on
    broken = [True]

    def hand_on(key: str) -> None:
        if broken and gate.calls == [[0], [1, 2]]:
            broken.clear()
            raise MemoryError
        real_hand_on(key)

    coalescer._hand_on = hand_on  # type: ignore[method-assign]
    gate.release.set()
    join_all(first_threads, rest_threads)
    assert first[0] == 0
    assert isinstance(rest[1], MemoryError)  # the caller whose call failed so
    assert rest[2] == 20  # woken with its outcome all the same


def test_many_keys_many_greenlets_and_random_interruptions_leave_no_one_waiting(green: Any) -> None:
    import random

    gevent = green
    rng = random.Random(7)
    sent: list[tuple[str, int]] = []

    def run(key: str, items: Sequence[int]) -> list[int | BaseException]:
        gevent.sleep(rng.random() * 0.002)  # a round trip: others queue meanwhile, and may be killed in it
        sent.extend((key, i) for i in items)
        return [i if i % 7 else ConnectionError(f"item {i}") for i in items]

    coalescer: Coalescer[int, int] = Coalescer(run, max_batch=5)
    greenlets = {}
    for i in range(1, 401):
        key = f"event-{i % 6}"
        greenlets[i] = (key, gevent.spawn(coalescer.submit, key, i))
        if rng.random() < 0.3:
            gevent.sleep(0)
        if rng.random() < 0.15:
            victim = rng.choice(list(greenlets))
            greenlets[victim][1].kill(block=False)
    assert gevent.joinall([g for _, g in greenlets.values()], timeout=20)
    assert all(g.ready() for _, g in greenlets.values())  # nobody waits forever
    assert coalescer._queues == {}
    for i, (key, g) in greenlets.items():
        if g.successful() and not isinstance(g.value, gevent.GreenletExit):
            assert g.value == i and (key, i) in sent
        elif isinstance(g.exception, ConnectionError):
            assert i % 7 == 0
        else:
            assert (
                isinstance(g.exception, CoalesceInterrupted)
                or g.value is None
                or isinstance(g.value, gevent.GreenletExit)
            )
    assert len(sent) == len(set(sent))  # no item went out twice


def test_a_gathering_caller_takes_along_whoever_queued_while_it_yielded(monkeypatch: pytest.MonkeyPatch) -> None:
    import idp.queue.coalesce as coalesce

    calls: list[list[int]] = []
    coalescer: Coalescer[int, int] = Coalescer(lambda key, items: calls.append(list(items)) or list(items), gather=True)
    others: list[threading.Thread] = []

    def yield_to_others() -> None:
        _outcomes, started = run_in_threads(coalescer, "e", [1, 2])
        others.extend(started)
        wait_until(lambda: queued(coalescer, "e") == 2)

    monkeypatch.setattr(coalesce, "_let_others_run", yield_to_others)
    assert coalescer.submit("e", 0) == 0
    join_all(others)
    assert calls == [[0, 1, 2]]  # one call, not one for the first caller and another for the rest
    assert coalescer._queues == {}


def test_a_caller_interrupted_while_it_gathers_hands_the_key_on(monkeypatch: pytest.MonkeyPatch) -> None:
    import idp.queue.coalesce as coalesce

    calls: list[list[int]] = []
    coalescer: Coalescer[int, int] = Coalescer(lambda key, items: calls.append(list(items)) or list(items), gather=True)
    results: list[dict[int, object]] = []
    others: list[threading.Thread] = []

    def interrupted() -> None:
        got, started = run_in_threads(coalescer, "e", [1])
        results.append(got)
        others.extend(started)
        wait_until(lambda: queued(coalescer, "e") == 1)
        raise KeyboardInterrupt

    monkeypatch.setattr(coalesce, "_let_others_run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        coalescer.submit("e", 0)
    monkeypatch.undo()
    join_all(others)
    assert results[0][1] == 1 and calls == [[1]]  # the interrupted caller's item never went out
    assert coalescer._queues == {}
