"""The worker's side of automatic admission: hold each event's targets, one tick at a time.

What a tick may admit (the rate budget, the active sessions, the marks that make a retried tick admit
nobody twice) is decided in ``idp.events.admission``; this runs it against the waiting room.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from idp.events.admission import active_sessions, rate_budget
from idp.events.service import EventConfig
from idp.queue.engine import INT64_MAX
from idp.queue.waiting_room import WaitingRoom

log = logging.getLogger("idp.admission")


@dataclass(frozen=True)
class TargetOutcome:
    event_id: str
    # admitted | full | paused | closed | unhealthy | idle
    action: str
    active: int = 0
    admitted: int = 0
    serving: int = 0


class TargetHolder:
    """The worker's side: hold each event's targets, one tick at a time."""

    def __init__(self, room: WaitingRoom) -> None:
        self.room = room
        self._last_second: dict[str, int] = {}

    def tick(self, event: EventConfig, now: float, *, healthy: bool = True) -> TargetOutcome:
        eid = event.event_id
        second = int(now)
        previous = self._last_second.get(eid)
        if event.mode == "closed":
            return TargetOutcome(eid, "closed")
        if not healthy:
            self._last_second[eid] = second  # no catching up on what the origin could not take
            return TargetOutcome(eid, "unhealthy")
        if event.policy.enabled:
            self.room.sweep(eid)  # unclaimed places whose window ended stop counting as active
        counters = self.room.engine.counters(eid)
        active = active_sessions(self.room.events.db, counters, eid, second, event.session_idle_seconds)
        if event.mode == "passthrough":
            serving, admitted = self.room.engine.admit_up_to(eid, INT64_MAX, INT64_MAX, f"target:{second}")
            self._last_second[eid] = second
            return TargetOutcome(eid, "admitted" if admitted else "idle", active, admitted, serving)
        budget = INT64_MAX
        if event.max_per_minute is not None:
            budget = rate_budget(event.max_per_minute, second, previous)
        cap = INT64_MAX
        if event.max_active is not None:
            free = event.max_active - active
            if free <= 0:
                self._last_second[eid] = second
                return TargetOutcome(eid, "full", active, 0, counters.serving)
            cap = counters.serving + free
        if budget <= 0:
            return TargetOutcome(eid, "idle", active, 0, counters.serving)
        serving, admitted = self.room.engine.admit_up_to(eid, cap, budget, f"target:{second}")
        self._last_second[eid] = second
        if admitted:
            self.room.invalidate(eid)
            log.info("admitted to hold targets", extra={"event_id": eid, "admitted": admitted, "active": active})
        return TargetOutcome(eid, "admitted" if admitted else "idle", active, admitted, serving)
