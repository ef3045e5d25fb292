"""TTLCache: values live for their TTL on the monotonic clock, and the cache stays bounded."""

from __future__ import annotations

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
