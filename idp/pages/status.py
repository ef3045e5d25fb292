"""What a waiting visitor is told: the status of one place, in one shape for every waiting page.

Framework-free: the queue-first page (``/wait/<event_id>``) and the OpenID Connect interaction page
both build their status JSON and their HTML context with :meth:`WaitStatusService.describe`, so the
poll schedule, the estimate and the wording of states are the same everywhere.

Cost for a waiting visitor: the place's status is one queue-store call; the event's settings, its
waiting count and its serving history come from per-process caches (one refresh per event per cache
period, however many visitors poll). Nothing here reads the database for a waiting visitor.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from idp.cache import TTLCache
from idp.clock import Clock
from idp.events import lottery
from idp.events.service import EventConfig
from idp.pages.estimate import AdmissionModel, Estimate, admission_model
from idp.pages.history import ServingHistory
from idp.pages.schedule import DEFAULT_SCHEDULE, PollSchedule
from idp.queue.engine import Entry, PlaceState, PlaceStatus

# The page's states (the JSON ``state`` field).
WAITING = "waiting"
ADMITTED = "admitted"
EXPIRED = "expired"
FINISHED = "finished"
UNKNOWN = "unknown"
PENDING = "pending"  # a pre-queue entry: its place is drawn when the room opens

_STATE_NAMES = {
    PlaceState.WAITING: WAITING,
    PlaceState.ADMITTED: ADMITTED,
    PlaceState.CLAIMED: ADMITTED,
    PlaceState.EXPIRED: EXPIRED,
    PlaceState.UNKNOWN: UNKNOWN,
    PlaceState.PENDING: PENDING,
}

# A pre-queue entry asks again at most this often, and spreads its first ask after the opening.
PENDING_MIN_MS = 2_000
PENDING_MAX_MS = 60_000
PENDING_SPREAD_MS = 3_000


def pending_poll_ms(seconds_to_opening: float, rng: random.Random) -> int:
    """When a pre-queue entry asks next: at the opening (plus a spread), at most a minute from now."""
    due = seconds_to_opening * 1000.0 + rng.uniform(0, PENDING_SPREAD_MS)
    return int(max(PENDING_MIN_MS, min(PENDING_MAX_MS, due)))


@dataclass(frozen=True)
class WaitStatus:
    state: str
    event_id: str
    position: int | None
    ahead: int | None
    serving: int
    waiting: int
    estimate: Estimate | None
    poll_after_ms: int | None
    updated_at: int
    continue_url: str | None = None
    # Seconds left to go on once admitted (None: no limit, or not admitted).
    expires_in: int | None = None
    # Admitted and its token already issued (the place has been used to sign in).
    claimed: bool = False
    # A pre-queue entry: its public lottery entry id and the opening, when its place is drawn.
    entry_id: str | None = None
    opens_at: int | None = None

    @property
    def progress_percent(self) -> int:
        """How far the serving counter has come towards this place, 0-100."""
        if self.position is None or self.position <= 0:
            return 100 if self.state == ADMITTED else 0
        return max(0, min(100, int(self.serving * 100 / self.position)))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "state": self.state,
            "position": self.position,
            "ahead": self.ahead,
            "serving": self.serving,
            "waiting": self.waiting,
            "estimate": self.estimate.to_dict() if self.estimate else None,
            "poll_after_ms": self.poll_after_ms,
            "updated_at": self.updated_at,
            "progress": self.progress_percent,
        }
        if self.continue_url and self.state == ADMITTED:
            data["continue_url"] = self.continue_url
        if self.expires_in is not None:
            data["expires_in"] = self.expires_in
        if self.entry_id is not None:
            data["entry_id"] = self.entry_id
        if self.opens_at is not None:
            data["opens_at"] = self.opens_at
        return data


class WaitStatusService:
    """Turn a place's queue status into what the waiting page shows and when it should ask again."""

    def __init__(
        self,
        room: Any,
        history: ServingHistory,
        clock: Clock,
        schedule: PollSchedule = DEFAULT_SCHEDULE,
        rng: random.Random | None = None,
    ) -> None:
        self.room = room
        self.history = history
        self.clock = clock
        self.schedule = schedule
        self.rng = rng or random.Random()
        # Keyed by (event, serving, whole second): a new second or a moved counter is a new entry.
        self._models: TTLCache[AdmissionModel | None] = TTLCache(1.0, max_entries=1_000)

    def estimate(self, event_id: str, position: int, serving: int) -> Estimate | None:
        """The estimated wait for ``position`` from the event's recent admission rate.

        The admission model is per event: it is computed once per second and serving value in each
        process, so a visitor's estimate costs a division.
        """
        if position <= serving:
            return Estimate(0, 0, 0.0)
        now = self.clock.now()
        key = (event_id, serving, int(now))
        model = self._models.get(key, lambda: admission_model(self.history.recent(event_id), now=now, serving=serving))
        return None if model is None else model.estimate(position - serving)

    def poll_after_ms(self, ahead: int) -> int:
        return self.schedule.poll_after_ms(ahead, self.rng)

    def describe(
        self, event: EventConfig, status: PlaceStatus, continue_url: str | None = None, *, finished: bool = False
    ) -> WaitStatus:
        """The visitor-facing status of a place whose queue status was just read."""
        state = FINISHED if finished else _STATE_NAMES.get(status.state, UNKNOWN)
        waiting = self.room.waiting(event.event_id)
        now = int(self.clock.now())
        position = status.entry.position if status.entry else None
        serving = status.serving
        if state == PENDING:
            opens_at = event.opens_at if event.opens_at is not None else now
            return WaitStatus(
                state=state,
                event_id=event.event_id,
                position=None,
                ahead=None,
                serving=serving,
                waiting=waiting,
                estimate=None,
                poll_after_ms=pending_poll_ms(opens_at - now, self.rng),
                updated_at=now,
                continue_url=continue_url,
                entry_id=lottery.entry_id(status.entry.request_id) if status.entry else None,
                opens_at=event.opens_at,
            )
        if state == WAITING and position is not None:
            ahead = max(0, position - serving - 1)
            return WaitStatus(
                state=state,
                event_id=event.event_id,
                position=position,
                ahead=ahead,
                serving=serving,
                waiting=waiting,
                estimate=self.estimate(event.event_id, position, serving),
                poll_after_ms=self.poll_after_ms(ahead),
                updated_at=now,
                continue_url=continue_url,
            )
        return WaitStatus(
            state=state,
            event_id=event.event_id,
            position=position,
            ahead=0 if state == ADMITTED else None,
            serving=serving,
            waiting=waiting,
            estimate=None,
            poll_after_ms=None,
            updated_at=now,
            continue_url=continue_url,
            expires_in=status.expires_in if state == ADMITTED else None,
            claimed=status.state is PlaceState.CLAIMED,
        )

    def for_place(
        self, event_id: str, request_id: str, continue_url: str | None = None, *, position: int | None = None
    ) -> WaitStatus:
        """Read a place and describe it; unknown places are described as ``unknown``, not raised.

        ``position``, when the caller knows it from a trusted source (a signed cookie), answers a
        waiting place from the event's cached counters without a queue-store call: positions never
        change, and a place above the serving counter is waiting. Near or past the front, or when the
        counters do not fit, the store is asked.
        """
        from idp.queue.waiting_room import RequestNotFoundError

        event = self.room.events.get(event_id)
        if position is not None:
            counters = self.room.counters(event.event_id)
            if counters.serving < position <= counters.queue:
                entry = Entry(request_id, position, 0)
                return self.describe(event, PlaceStatus(PlaceState.WAITING, entry, counters.serving), continue_url)
        try:
            _, status = self.room.status(event.event_id, request_id)
        except RequestNotFoundError:
            status = PlaceStatus(PlaceState.UNKNOWN, serving=self.room.serving(event.event_id))
        return self.describe(event, status, continue_url)

    def interaction_payload(
        self, event_id: str, request_id: str | None, continue_url: str, *, position: int | None = None
    ) -> dict[str, Any]:
        """The status JSON of a parked sign-in: ``state`` is waiting, admitted or expired, and
        ``continue_url`` (the interaction's page, which finishes or explains) is always present.

        Without ``request_id`` the caller has seen from the cached counters that the place at
        ``position`` is waiting; it is described as such, without a queue-store call."""
        if request_id is None:
            event = self.room.events.get(event_id)
            serving = min(self.room.serving(event.event_id), max(0, (position or 1) - 1))
            entry = Entry("", position or 0, 0)
            data = self.describe(event, PlaceStatus(PlaceState.WAITING, entry, serving), continue_url).to_dict()
        else:
            data = self.for_place(event_id, request_id, continue_url, position=position).to_dict()
        if data["state"] not in (WAITING, ADMITTED, PENDING):
            data["state"] = EXPIRED
        data["continue_url"] = continue_url
        return data
