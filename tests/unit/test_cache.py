"""TTLCache: values live for their TTL on the monotonic clock, and the cache stays bounded."""

from __future__ import annotations

from typing import Any

import pytest

import idp.cache
from idp.cache import TTLCache

pytestmark = pytest.mark.unit


class Ticker:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticker(monkeypatch: pytest.MonkeyPatch) -> Ticker:
    fake = Ticker()
    monkeypatch.setattr(idp.cache.time, "monotonic", fake)
    return fake


class Loader:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return self.calls


def test_a_value_is_reused_until_its_ttl_passes(ticker):
    cache: TTLCache[int] = TTLCache(0.25)
    load = Loader()
    assert cache.get("sale", load) == 1
    ticker.now += 0.2
    assert cache.get("sale", load) == 1
    ticker.now += 0.05  # exactly the TTL: stale
    assert cache.get("sale", load) == 2
    assert load.calls == 2


def test_keys_are_cached_separately(ticker):
    cache: TTLCache[str] = TTLCache(10)
    assert cache.get("a", lambda: "A") == "A"
    assert cache.get("b", lambda: "B") == "B"
    assert cache.get("a", lambda: "other") == "A"


def test_a_zero_or_negative_ttl_never_caches(ticker):
    for ttl in (0, -1):
        cache: TTLCache[int] = TTLCache(ttl)
        load = Loader()
        assert [cache.get("k", load) for _ in range(3)] == [1, 2, 3]


def test_invalidate_one_key_or_all(ticker):
    cache: TTLCache[int] = TTLCache(10)
    load_a, load_b = Loader(), Loader()
    cache.get("a", load_a)
    cache.get("b", load_b)
    cache.invalidate("a")
    assert cache.get("a", load_a) == 2
    assert cache.get("b", load_b) == 1
    cache.invalidate()
    assert cache.get("b", load_b) == 2
    cache.invalidate("never-cached")  # no error


def test_a_failed_load_is_not_cached(ticker):
    cache: TTLCache[int] = TTLCache(10)

    def broken() -> int:
        raise LookupError("backing store down")

    with pytest.raises(LookupError):
        cache.get("k", broken)
    assert cache.get("k", lambda: 7) == 7


def test_the_cache_never_holds_more_than_max_entries(ticker):
    cache: TTLCache[int] = TTLCache(10, max_entries=3)
    for key in range(10):
        cache.get(key, lambda key=key: key)
        assert len(cache._data) <= 3
    # The newest key survives the clearing.
    assert cache.get(9, lambda: -1) == 9


def test_a_record_is_current_until_its_value_expires_or_is_invalidated(ticker):
    cache: TTLCache[int] = TTLCache(ttl=1.0)
    record = cache.entry("k", lambda: 7)
    assert record[1] == 7
    assert cache.entry("k", lambda: 8) is record  # a hit gives the same record
    assert cache.current("k", record)
    ticker.now += 0.99
    assert cache.current("k", record)
    ticker.now += 0.02
    assert not cache.current("k", record)  # expired
    fresh = cache.entry("k", lambda: 9)
    assert fresh[1] == 9 and cache.current("k", fresh) and not cache.current("k", record)
    cache.invalidate("k")
    assert not cache.current("k", fresh)
    assert not cache.current("other", fresh)


def test_with_no_ttl_no_record_is_ever_current(ticker):
    cache: TTLCache[int] = TTLCache(ttl=0)
    record = cache.entry("k", lambda: 1)
    assert record[1] == 1
    assert not cache.current("k", record)


# Under load a read can take longer than the TTL (a busy worker resumes the loader late): its waiters
# still take the value it read for them, rather than each reading it again after waiting.
@pytest.mark.parametrize(("ttl", "held"), [(10, 0.0), (0.05, 0.1)], ids=["within-ttl", "outlasting-ttl"])
def test_callers_that_come_during_a_load_wait_for_its_value_instead_of_loading_again(ttl, held):
    import threading
    import time

    cache: TTLCache[int] = TTLCache(ttl)
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow() -> int:
        calls.append("slow")
        started.set()
        release.wait(5)
        return 7

    def other() -> int:
        calls.append("other")
        return 8

    got: list[int] = []
    first = threading.Thread(target=lambda: got.append(cache.get("k", slow)))
    first.start()
    assert started.wait(5)
    waiters = [threading.Thread(target=lambda: got.append(cache.get("k", other))) for _ in range(5)]
    for waiter in waiters:
        waiter.start()
    time.sleep(held)  # with 0.1 s against a 0.05 s TTL, the load outlasts the TTL
    release.set()
    for thread in (first, *waiters):
        thread.join(5)
    assert got == [7] * 6
    assert calls == ["slow"]


def test_when_the_load_fails_its_waiters_load_for_themselves():
    import threading

    cache: TTLCache[int] = TTLCache(10)
    started, release = threading.Event(), threading.Event()

    def failing() -> int:
        started.set()
        release.wait(5)
        raise RuntimeError("store down")

    errors: list[BaseException] = []
    got: list[int] = []

    def first_caller() -> None:
        try:
            cache.get("k", failing)
        except RuntimeError as exc:
            errors.append(exc)

    first = threading.Thread(target=first_caller)
    first.start()
    assert started.wait(5)
    waiter = threading.Thread(target=lambda: got.append(cache.get("k", lambda: 3)))
    waiter.start()
    release.set()
    first.join(5)
    waiter.join(5)
    assert len(errors) == 1 and got == [3]
    assert cache.get("k", lambda: 99) == 3  # and the waiter's value is kept


def test_a_load_that_needs_its_own_key_again_does_not_wait_for_itself():
    cache: TTLCache[int] = TTLCache(10)
    assert cache.get("k", lambda: cache.get("k", lambda: 1) + 1) == 2


def _load_in_flight(cache: TTLCache[str]) -> tuple[Any, list[str], Any]:
    """Start a load of "k" (giving "before") in a thread and return it with its result list and release."""
    import threading

    started, release = threading.Event(), threading.Event()

    def before() -> str:
        started.set()
        release.wait(5)
        return "before"

    got: list[str] = []
    first = threading.Thread(target=lambda: got.append(cache.get("k", before)))
    first.start()
    assert started.wait(5)
    return first, got, release


@pytest.mark.parametrize("everything", [False, True], ids=["key", "all"])
def test_a_caller_after_an_invalidate_does_not_wait_for_a_load_begun_before_it(everything):
    import threading

    cache: TTLCache[str] = TTLCache(10)
    first, got, release = _load_in_flight(cache)
    cache.invalidate(None if everything else "k")  # e.g. the event was just changed
    after = threading.Thread(target=lambda: got.append(cache.get("k", lambda: "after")))
    after.start()
    after.join(2)
    try:
        assert got == ["after"]  # its own load, made after the change, not the one begun before it
    finally:
        release.set()
        first.join(5)
        after.join(5)


@pytest.mark.parametrize("everything", [False, True], ids=["key", "all"])
def test_a_value_loaded_across_an_invalidate_is_not_kept(everything):
    cache: TTLCache[str] = TTLCache(10)
    first, got, release = _load_in_flight(cache)
    cache.invalidate(None if everything else "k")
    release.set()
    first.join(5)
    assert got == ["before"]  # its caller came before the change: that value is fine for it
    record = cache.entry("k", lambda: "after")
    assert record[1] == "after"  # but it is not kept for the callers after the change
    assert cache.current("k", record)


def test_under_gevent_one_greenlet_loads_and_the_others_wait_for_it():
    # As gunicorn's gevent worker runs it: monkey-patched, so waiting lets the loader's greenlet run.
    import subprocess
    import sys

    pytest.importorskip("gevent")
    script = """
from gevent import monkey; monkey.patch_all()
import gevent
from idp.cache import TTLCache
cache = TTLCache(10)
calls = []
def load():
    calls.append(1); gevent.sleep(0.05); return 7
def killed_loader():
    with gevent.Timeout(0.01):
        cache.get("t", lambda: gevent.sleep(1))
first = gevent.spawn(killed_loader)
gevent.sleep(0)
after = gevent.spawn(cache.get, "t", lambda: 3)
greenlets = [gevent.spawn(cache.get, "k", load) for _ in range(20)]
assert gevent.joinall([first, after, *greenlets], timeout=5)
assert [g.value for g in greenlets] == [7] * 20 and calls == [1], calls
assert isinstance(first.exception, gevent.Timeout) and after.value == 3
assert not cache._flights
"""
    result = subprocess.run(  # noqa: S603 - the project's own interpreter
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
