"""When a waiting visitor should ask for its status next (framework-free).

The server chooses every visitor's next poll, so the total polling load is a property of the schedule,
not of the clients. The interval grows linearly with the number of people ahead, from ``min_ms`` at
the front to ``max_ms``, and is spread by +/- ``jitter`` so visitors who arrived together do not poll
together. DESIGN.md §8 budgets 100,000 waiting visitors at <= 2,000 requests/s in total;
:func:`expected_rate` computes what a queue of N visitors costs and the unit tests hold it to that.

Visitors near the front poll every couple of seconds, so an admitted visitor is redirected within
one short interval; visitors far back poll about once a minute (their place cannot expire while they
wait: expiry starts at admission).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

BUDGET_VISITORS = 100_000
BUDGET_REQUESTS_PER_SECOND = 2_000.0


@dataclass(frozen=True)
class PollSchedule:
    min_ms: int = 2_000
    per_person_ms: float = 20.0
    max_ms: int = 75_000
    jitter: float = 0.2
    # Admitted, expired or unknown places: the page moves on at once or stops polling.
    admitted_ms: int = 0
    # The no-JavaScript page reloads whole; never faster than this.
    min_refresh_seconds: int = 2

    def base_ms(self, ahead: int) -> float:
        """The interval before jitter for a visitor with ``ahead`` people in front."""
        ahead = max(0, int(ahead))
        return float(min(self.max_ms, self.min_ms + ahead * self.per_person_ms))

    def poll_after_ms(self, ahead: int, rng: random.Random | None = None) -> int:
        """The jittered interval to send to a waiting visitor."""
        base = self.base_ms(ahead)
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(1, int(round(base * (1.0 + spread))))

    def refresh_seconds(self, poll_after_ms: int) -> int:
        """The meta-refresh delay matching a poll interval (whole seconds, rounded up)."""
        return max(self.min_refresh_seconds, math.ceil(poll_after_ms / 1000.0))

    def mean_rate(self, ahead: int) -> float:
        """Expected requests per second from one visitor (the mean of 1/interval over the jitter)."""
        base = self.base_ms(ahead) / 1000.0
        if self.jitter <= 0:
            return 1.0 / base
        lo, hi = 1.0 - self.jitter, 1.0 + self.jitter
        return math.log(hi / lo) / ((hi - lo) * base)

    def expected_rate(self, visitors: int) -> float:
        """Total requests per second from ``visitors`` waiting visitors at places 1..N (0..N-1 ahead)."""
        visitors = max(0, int(visitors))
        if self.per_person_ms <= 0:
            return visitors * self.mean_rate(0)
        ramp_end = min(visitors, int(math.ceil((self.max_ms - self.min_ms) / self.per_person_ms)))
        total = sum(self.mean_rate(ahead) for ahead in range(ramp_end))
        return total + (visitors - ramp_end) * self.mean_rate(ramp_end)


DEFAULT_SCHEDULE = PollSchedule()


def poll_after_ms(ahead: int, rng: random.Random | None = None) -> int:
    """The default schedule's next poll for a waiting visitor with ``ahead`` people in front."""
    return DEFAULT_SCHEDULE.poll_after_ms(ahead, rng)
