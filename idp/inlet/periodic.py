"""The periodic inlet: admit ``increment_by`` visitors per minute between ``start_time`` and ``end_time``.

Skipped while the manual pause switch is on or the health gate says no (an optional URL that must
answer 2xx within a timeout; AWS used a CloudWatch alarm). Exactly once per minute per event: the
increment carries the mark ``periodic:<minute>`` into the queue store, which applies a mark once in the
same atomic step as the increment, and the minute is then recorded as done in ``worker_ticks``. A
worker that crashes between the two steps and runs again (or a second worker) finds the mark applied and
only records the bookkeeping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import requests

from idp.inlet.settings import InletConfig
from idp.queue.waiting_room import WaitingRoom
from idp.storage.db import Database
from idp.targets import Outbound
from idp.worker import ticks

JOB = "periodic_inlet"
log = logging.getLogger("idp.inlet")

HealthCheck = Callable[[str, float], bool]


def health_checker(outbound: Outbound) -> HealthCheck:
    """A health check that asks through ``outbound``: True when the URL answers 2xx within the timeout."""

    def check(url: str, timeout: float) -> bool:
        try:
            status = outbound.send("GET", url, None, {}, timeout)
        except requests.RequestException as exc:
            log.info("health gate unreachable", extra={"error": type(exc).__name__})
            return False
        return 200 <= status < 300

    return check


http_health = health_checker(Outbound(public_only=False))


@dataclass(frozen=True)
class PeriodicOutcome:
    event_id: str
    minute: int
    # admitted | already_done | disabled | paused | outside_window | unhealthy
    action: str
    increment_by: int = 0
    serving: int | None = None


class PeriodicInlet:
    def __init__(self, db: Database, room: WaitingRoom, health_check: HealthCheck = http_health) -> None:
        self.db = db
        self.room = room
        self.health_check = health_check

    def run(self, config: InletConfig, now: float) -> PeriodicOutcome:
        """Admit this minute's visitors for one event, unless done, off, paused, outside or unhealthy."""
        periodic = config.periodic
        minute = int(now // 60)
        event_id = config.event_id
        if not periodic.enabled:
            return PeriodicOutcome(event_id, minute, "disabled")
        if periodic.paused:
            return PeriodicOutcome(event_id, minute, "paused")
        if not periodic.in_window(now):
            return PeriodicOutcome(event_id, minute, "outside_window")
        if ticks.is_done(self.db, JOB, event_id, minute):
            return PeriodicOutcome(event_id, minute, "already_done")
        if periodic.health_url and not self.health_check(periodic.health_url, periodic.health_timeout):
            # Not recorded as done: if the gate recovers within the minute, the minute still admits.
            return PeriodicOutcome(event_id, minute, "unhealthy")
        serving, applied = self.room.increment_serving_once(event_id, periodic.increment_by, f"periodic:{minute}")
        self.record(event_id, minute, int(now), serving, periodic.increment_by if applied else 0)
        if not applied:
            return PeriodicOutcome(event_id, minute, "already_done", 0, serving)
        return PeriodicOutcome(event_id, minute, "admitted", periodic.increment_by, serving)

    def record(self, event_id: str, minute: int, now: int, serving: int, increment_by: int) -> None:
        ticks.mark_done(self.db, JOB, event_id, minute, now, {"serving": serving, "increment_by": increment_by})
