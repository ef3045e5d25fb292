"""The waiting page's poll schedule: grows with the distance from the front, jittered, within budget."""

from __future__ import annotations

import random

import pytest

from idp.pages.schedule import (
    BUDGET_REQUESTS_PER_SECOND,
    BUDGET_VISITORS,
    DEFAULT_SCHEDULE,
    PollSchedule,
    poll_after_ms,
)

pytestmark = pytest.mark.unit


def test_interval_grows_with_the_distance_from_the_front_and_is_capped() -> None:
    s = DEFAULT_SCHEDULE
    bases = [s.base_ms(ahead) for ahead in (0, 10, 100, 1_000, 10_000, 100_000, 10_000_000)]
    assert bases == sorted(bases)
    assert bases[0] == s.min_ms
    assert bases[-1] == s.max_ms
    assert s.base_ms(1_000) > s.base_ms(10)
    assert s.base_ms(-5) == s.min_ms  # nonsense distances poll like the front, never faster


def test_the_front_polls_every_couple_of_seconds_and_the_back_about_once_a_minute() -> None:
    s = DEFAULT_SCHEDULE
    assert s.base_ms(0) <= 2_000
    assert 30_000 <= s.base_ms(100_000) <= 90_000


@pytest.mark.parametrize("ahead", [0, 1, 50, 500, 5_000, 50_000, 500_000])
def test_jitter_stays_within_its_bounds_and_actually_spreads(ahead: int) -> None:
    rng = random.Random(7)
    s = DEFAULT_SCHEDULE
    values = [s.poll_after_ms(ahead, rng) for _ in range(2_000)]
    base = s.base_ms(ahead)
    assert min(values) >= base * (1 - s.jitter) - 1
    assert max(values) <= base * (1 + s.jitter) + 1
    assert len(set(values)) > 100  # visitors who arrived together do not poll together
    assert sum(values) / len(values) == pytest.approx(base, rel=0.03)


def test_module_level_helper_follows_the_default_schedule() -> None:
    value = poll_after_ms(0, random.Random(1))
    assert DEFAULT_SCHEDULE.min_ms * 0.8 - 1 <= value <= DEFAULT_SCHEDULE.min_ms * 1.2 + 1


def test_budget_of_design_section_8_holds_for_100000_waiting_visitors() -> None:
    rate = DEFAULT_SCHEDULE.expected_rate(BUDGET_VISITORS)
    assert rate <= BUDGET_REQUESTS_PER_SECOND
    # And the model agrees with jittered intervals drawn the way the server draws them.
    rng = random.Random(42)
    simulated = sum(1000.0 / DEFAULT_SCHEDULE.poll_after_ms(ahead, rng) for ahead in range(BUDGET_VISITORS))
    assert simulated == pytest.approx(rate, rel=0.01)
    assert simulated <= BUDGET_REQUESTS_PER_SECOND


def test_expected_rate_grows_with_the_queue_but_sublinearly_at_the_front() -> None:
    s = DEFAULT_SCHEDULE
    assert s.expected_rate(0) == 0
    assert s.expected_rate(1) == pytest.approx(s.mean_rate(0))
    assert s.expected_rate(1_000) < s.expected_rate(10_000) < s.expected_rate(100_000)
    assert s.expected_rate(10_000) < 10_000 * s.mean_rate(0) / 10


def test_a_schedule_that_breaks_the_budget_is_detected() -> None:
    aws_like = PollSchedule(min_ms=500, per_person_ms=0, max_ms=500, jitter=0)  # AWS's sample: every 0.5 s
    assert aws_like.expected_rate(BUDGET_VISITORS) == pytest.approx(200_000)
    assert aws_like.expected_rate(BUDGET_VISITORS) > BUDGET_REQUESTS_PER_SECOND


@pytest.mark.parametrize(("ms", "seconds"), [(1, 2), (1_999, 2), (2_001, 3), (59_000, 59), (75_000, 75)])
def test_meta_refresh_uses_the_same_interval_rounded_up(ms: int, seconds: int) -> None:
    assert DEFAULT_SCHEDULE.refresh_seconds(ms) == seconds
