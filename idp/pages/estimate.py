"""An honest estimated wait, computed on the server from the recent admission rate (framework-free).

Input: the serving counter's recent history, the ``(issue_time, serving)`` pairs that the queue store
records at every increment (DESIGN.md §4), the current time and serving counter, and the visitor's
position. The rate is the admissions since the oldest recent record divided by the time they took
(plus any pause longer than usual since the last one, so the rate decays while admissions stop).
The wait is the admissions still needed divided by that rate, given as a range that widens with how
unsteady the rate has been and with the typical gap between increments (admissions come in steps,
so the visitor can be admitted up to one step earlier or later than a smooth rate says).

No estimate (``None``) is better than a wrong one: fewer than two recent records, or no admission for
longer than the window, and the page says it cannot estimate yet.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# Records older than this are not "recent" (seconds).
WINDOW_SECONDS = 900
# At most this many records are read per event.
MAX_SAMPLES = 64
# The range is at least this much wider than the point estimate on each side (fraction).
BASE_SPREAD = 0.1
MAX_SPREAD = 1.0


@dataclass(frozen=True)
class Estimate:
    low_seconds: int
    high_seconds: int
    # Admissions per minute, for the page ("about N people are let in per minute").
    rate_per_minute: float

    def to_dict(self) -> dict[str, int]:
        return {"low_seconds": self.low_seconds, "high_seconds": self.high_seconds}


def recent_samples(
    samples: Sequence[tuple[int, int]], now: float, serving: int, window: int = WINDOW_SECONDS
) -> list[tuple[int, int]]:
    """The usable records: inside the window, not after ``now``, and consistent with ``serving``.

    Records are ``(issue_time, serving_counter)``. A counter reset leaves records above the current
    counter; they, and anything before a drop, describe another run of the queue and are dropped.
    """
    ordered = sorted((int(t), int(s)) for t, s in samples)
    kept: list[tuple[int, int]] = []
    for time_, value in ordered:
        if time_ < now - window or time_ > now or value > serving:
            continue
        if kept and value < kept[-1][1]:
            kept = []
        kept.append((time_, value))
    return kept


def admission_rate(samples: Sequence[tuple[int, int]], now: float) -> float | None:
    """Admissions per second over the recent records; None when it cannot be told.

    Between increments the rate is that of the completed steps (a queue let in by 100 every minute
    runs at 100 a minute, also halfway through a minute). Once the pause since the last increment is
    longer than the usual gap between increments, the extra time counts too, so the rate decays
    while admissions are paused.
    """
    if len(samples) < 2:
        return None
    first_time, first_serving = samples[0]
    last_time, last_serving = samples[-1]
    admitted = last_serving - first_serving
    if admitted <= 0:
        return None
    overdue = max(0.0, (now - last_time) - _typical_gap(samples))
    elapsed = max(1.0, (last_time - first_time) + overdue)
    return admitted / elapsed


def _spread(samples: Sequence[tuple[int, int]]) -> float:
    """How unsteady the rate has been: the coefficient of variation of per-step rates, plus a floor."""
    rates = []
    for (t0, s0), (t1, s1) in zip(samples, samples[1:], strict=False):
        rates.append((s1 - s0) / max(1, t1 - t0))
    if len(rates) < 2:
        return BASE_SPREAD + 0.25  # one step tells little about steadiness
    mean = math.fsum(rates) / len(rates)
    if mean <= 0:
        return MAX_SPREAD
    deviation = math.sqrt(math.fsum((r - mean) ** 2 for r in rates) / len(rates))
    return min(MAX_SPREAD, BASE_SPREAD + deviation / mean)


def _typical_gap(samples: Sequence[tuple[int, int]]) -> float:
    gaps = [t1 - t0 for (t0, _), (t1, _) in zip(samples, samples[1:], strict=False)]
    return max(1.0, float(statistics.median(gaps))) if gaps else 1.0


@dataclass(frozen=True)
class AdmissionModel:
    """The event's recent admissions, summarised once for every visitor's estimate."""

    per_second: float
    spread: float
    gap: float

    def estimate(self, needed: int) -> Estimate:
        """The range of seconds until ``needed`` more positions have been admitted."""
        if needed <= 0:
            return Estimate(0, 0, round(self.per_second * 60.0, 1))
        point = needed / self.per_second
        low = max(0.0, point * (1.0 - self.spread) - self.gap)
        high = point * (1.0 + self.spread) + self.gap
        return Estimate(int(math.floor(low)), int(math.ceil(high)), round(self.per_second * 60.0, 1))


def admission_model(
    samples: Sequence[tuple[int, int]], *, now: float, serving: int, window: int = WINDOW_SECONDS
) -> AdmissionModel | None:
    """Summarise the recent records (per event, not per visitor); None when no rate can be told."""
    usable = recent_samples(samples, now, serving, window)
    rate = admission_rate(usable, now)
    if rate is None:
        return None
    return AdmissionModel(rate, _spread(usable), _typical_gap(usable))


def estimate_wait(
    samples: Sequence[tuple[int, int]],
    *,
    now: float,
    serving: int,
    position: int,
    window: int = WINDOW_SECONDS,
) -> Estimate | None:
    """The range of seconds until ``serving`` reaches ``position``, or None when it cannot be told."""
    needed = position - serving
    if needed <= 0:
        return Estimate(0, 0, 0.0)
    model = admission_model(samples, now=now, serving=serving, window=window)
    return None if model is None else model.estimate(needed)
