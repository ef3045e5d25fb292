"""The estimated wait: from the recent admission rate, an honest range that holds the actual wait."""

from __future__ import annotations

import random

import pytest

from idp.pages.estimate import admission_rate, estimate_wait, recent_samples

pytestmark = pytest.mark.unit

T0 = 1_800_000_000


def steady_history(
    step: int, every: int, count: int, start: int = T0, jitter: float = 0.0, rng: random.Random | None = None
) -> list[tuple[int, int]]:
    """Increments of about ``step`` every about ``every`` seconds, as the queue store records them."""
    rng = rng or random.Random(0)
    samples, serving, t = [], 0, start
    for _ in range(count):
        t += max(1, round(every * (1 + rng.uniform(-jitter, jitter))))
        serving += max(1, round(step * (1 + rng.uniform(-jitter, jitter))))
        samples.append((t, serving))
    return samples


def actual_wait(history: list[tuple[int, int]], now: int, position: int) -> int:
    """Seconds from ``now`` until the first record whose serving counter reaches ``position``."""
    for t, serving in history:
        if t > now and serving >= position:
            return t - now
    raise AssertionError("the history never reaches the position")


@pytest.mark.parametrize(("step", "every"), [(1, 1), (10, 5), (100, 60), (500, 30), (3, 20)])
@pytest.mark.parametrize("jitter", [0.0, 0.2])
def test_with_a_steady_admission_rate_the_range_contains_the_actual_wait(step: int, every: int, jitter: float) -> None:
    rng = random.Random(step * 1000 + every)
    # The whole run: the past the server has seen and the future that decides the actual wait.
    history = steady_history(step, every, 400, jitter=jitter, rng=rng)
    checked = 0
    for _ in range(300):
        cut = rng.randrange(15, 150)
        seen = history[:cut]
        last_time, serving = seen[-1]
        now = last_time + rng.randrange(0, every)  # anywhere between two increments
        distance = rng.randrange(1, step * 200)
        position = serving + distance
        if position > history[-1][1]:
            continue
        estimate = estimate_wait(seen, now=now, serving=serving, position=position)
        assert estimate is not None
        wait = actual_wait(history, now, position)
        assert estimate.low_seconds <= wait <= estimate.high_seconds, (seen[-3:], now, position, estimate, wait)
        checked += 1
    assert checked > 200


def test_the_range_is_a_range_not_a_wild_guess() -> None:
    history = steady_history(100, 60, 30)
    now, serving = history[-1][0] + 10, history[-1][1]
    estimate = estimate_wait(history, now=now, serving=serving, position=serving + 3_000)
    assert estimate is not None
    # 3,000 people at 100 a minute is about half an hour: the range brackets it tightly.
    assert 20 * 60 <= estimate.low_seconds < 30 * 60 < estimate.high_seconds <= 40 * 60
    assert estimate.rate_per_minute == pytest.approx(100, rel=0.05)


def test_a_faster_queue_gives_a_shorter_estimate() -> None:
    slow = steady_history(10, 60, 20)
    fast = steady_history(100, 60, 20)
    kwargs = {"now": slow[-1][0], "serving": 0, "position": 0}
    s = estimate_wait(slow, **{**kwargs, "serving": slow[-1][1], "position": slow[-1][1] + 500})
    f = estimate_wait(fast, **{**kwargs, "serving": fast[-1][1], "position": fast[-1][1] + 500})
    assert s is not None and f is not None
    assert f.high_seconds < s.low_seconds


def test_no_estimate_without_recent_admissions() -> None:
    assert estimate_wait([], now=T0, serving=0, position=10) is None
    # One increment tells no rate.
    assert estimate_wait([(T0, 5)], now=T0 + 10, serving=5, position=10) is None
    # Admissions stopped long ago: no estimate rather than a stale one.
    old = steady_history(10, 10, 10)
    assert estimate_wait(old, now=old[-1][0] + 3_600, serving=old[-1][1], position=old[-1][1] + 10) is None


def test_the_rate_decays_while_admissions_are_paused() -> None:
    history = steady_history(10, 10, 10)
    serving = history[-1][1]
    soon = estimate_wait(history, now=history[-1][0] + 1, serving=serving, position=serving + 100)
    later = estimate_wait(history, now=history[-1][0] + 200, serving=serving, position=serving + 100)
    assert soon is not None and later is not None
    assert later.low_seconds > soon.low_seconds


def test_an_admitted_place_waits_zero() -> None:
    estimate = estimate_wait([], now=T0, serving=10, position=10)
    assert estimate is not None and (estimate.low_seconds, estimate.high_seconds) == (0, 0)


def test_records_of_an_earlier_run_of_the_queue_are_ignored() -> None:
    before_reset = [(T0, 1_000), (T0 + 10, 2_000)]
    after_reset = [(T0 + 20, 10), (T0 + 30, 20), (T0 + 40, 30)]
    usable = recent_samples(before_reset + after_reset, now=T0 + 40, serving=30)
    assert usable == after_reset
    rate = admission_rate(usable, now=T0 + 40)
    assert rate == pytest.approx(1.0)


def test_records_from_the_future_or_above_the_counter_are_ignored() -> None:
    samples = [(T0, 10), (T0 + 10, 20), (T0 + 100, 30)]
    assert recent_samples(samples, now=T0 + 50, serving=20) == [(T0, 10), (T0 + 10, 20)]
