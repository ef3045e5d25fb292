"""An event's lifecycle: not open -> pre-queue -> (draw at opening) -> open -> closed.

``phase`` is a pure function of the event's schedule and the time; the errors are what a join
answers outside the open phases. The room mode ``closed`` is a switch, not a phase, and has its own
answer (409 ``room_closed``; 503 stays the outage signal).
"""

from __future__ import annotations

import enum
from typing import Protocol

from idp.errors import ConflictError, IdpError

MODES = ("queue", "when_busy", "passthrough", "closed")


class Phase(enum.Enum):
    NOT_OPEN = "not_open"
    PREQUEUE = "prequeue"
    OPEN = "open"
    CLOSED = "closed"


class Schedule(Protocol):
    @property
    def prequeue_opens_at(self) -> int | None: ...

    @property
    def opens_at(self) -> int | None: ...

    @property
    def closes_at(self) -> int | None: ...


def phase(event: Schedule, now: float) -> Phase:
    """Where the event stands at ``now`` (the closing time wins over everything)."""
    if event.closes_at is not None and now >= event.closes_at:
        return Phase.CLOSED
    if event.opens_at is not None and now < event.opens_at:
        if event.prequeue_opens_at is not None and now >= event.prequeue_opens_at:
            return Phase.PREQUEUE
        return Phase.NOT_OPEN
    return Phase.OPEN


def opening_time(event: Schedule) -> int | None:
    """When joins are first accepted: the pre-queue's opening, or the room's."""
    return event.prequeue_opens_at if event.prequeue_opens_at is not None else event.opens_at


def has_draw(event: Schedule) -> bool:
    return event.prequeue_opens_at is not None and event.opens_at is not None


class EventNotOpenError(ConflictError):
    code = "event_not_open"
    message = "The waiting room is not open yet."

    def __init__(self, retry_after: int, opens_at: int) -> None:
        super().__init__()
        self.retry_after = max(1, retry_after)
        self.opens_at = opens_at

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "opens_at": self.opens_at}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class EventClosedError(IdpError):
    code = "event_closed"
    status = 410
    message = "The sale is over; the waiting room is closed."


class RoomClosedError(ConflictError):
    code = "room_closed"
    message = "The waiting room is closed for now."


def gate(event: Schedule, mode: str, now: float) -> Phase:
    """The phase a join meets, or the error it gets when no join is possible."""
    if mode == "closed":
        raise RoomClosedError()
    current = phase(event, now)
    if current is Phase.CLOSED:
        raise EventClosedError()
    if current is Phase.NOT_OPEN:
        opens = opening_time(event)
        assert opens is not None
        raise EventNotOpenError(int(opens - now + 0.999), opens)
    return current
