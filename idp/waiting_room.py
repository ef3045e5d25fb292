"""The waiting room service: joins, places and counters of an event, over the queue engine.

Views call one function here. Per-event answers that may be a moment stale (serving counter, waiting
count) come from a small in-process cache so polling costs no store round trip most of the time.
"""

from __future__ import annotations

from idp.cache import TTLCache
from idp.errors import IdpError, NotFoundError
from idp.events import EventConfig, EventService
from idp.queue.engine import Counters, Entry, PlaceLostError, PlaceState, PlaceStatus, QueueEngine, SweepResult


class RequestNotFoundError(NotFoundError):
    code = "request_not_found"
    message = "No such request id in this event."


class RequestLostError(RequestNotFoundError):
    """410: the place existed but was lost with the queue store (callers that rejoin treat it as gone)."""

    code = PlaceLostError.code
    status = PlaceLostError.status
    message = PlaceLostError.message


class NotServedError(IdpError):
    """Not an error so much as "not yet": 202, which CDNs do not cache."""

    code = "not_served_yet"
    status = 202
    message = "This request id is not being served yet."


class PositionExpiredError(IdpError):
    code = "queue_position_expired"
    status = 410
    message = "The queue position has expired."


class WaitingRoom:
    def __init__(self, events: EventService, engine: QueueEngine, cache_ttl: float) -> None:
        self.events = events
        self.engine = engine
        self._counters: TTLCache[Counters] = TTLCache(cache_ttl)

    def join(self, event_id: object, idempotency_key: str | None = None) -> tuple[EventConfig, Entry]:
        event = self.events.get(event_id)
        return event, self.engine.enqueue(event.event_id, idempotency_key)

    def place(self, event_id: object, request_id: object) -> Entry:
        event = self.events.get(event_id)
        try:
            entry = self.engine.entry(event.event_id, request_id)  # type: ignore[arg-type]
        except PlaceLostError:
            raise RequestLostError() from None
        if entry is None:
            raise RequestNotFoundError()
        return entry

    def counters(self, event_id: object, *, fresh: bool = False) -> Counters:
        event = self.events.get(event_id)
        if fresh:
            self._counters.invalidate(event.event_id)
        return self._counters.get(event.event_id, lambda: self.engine.counters(event.event_id))

    def serving(self, event_id: object) -> int:
        return self.counters(event_id).serving

    def waiting(self, event_id: object) -> int:
        return self.counters(event_id).waiting

    def status(self, event_id: object, request_id: object) -> tuple[EventConfig, PlaceStatus]:
        """A place's state; unknown request ids raise RequestNotFoundError."""
        event = self.events.get(event_id)
        try:
            status = self.engine.status(event.event_id, request_id, event.policy)  # type: ignore[arg-type]
        except PlaceLostError:
            raise RequestLostError() from None
        if status.state is PlaceState.UNKNOWN:
            raise RequestNotFoundError()
        return event, status

    def claim(self, event_id: object, request_id: object) -> tuple[EventConfig, PlaceStatus]:
        """Claim an admitted place (token issuance); idempotent."""
        event = self.events.get(event_id)
        try:
            status = self.engine.claim(event.event_id, request_id, event.policy)  # type: ignore[arg-type]
        except PlaceLostError:
            raise RequestLostError() from None
        if status.state is PlaceState.UNKNOWN:
            raise RequestNotFoundError()
        return event, status

    def increment_serving(self, event_id: object, by: object) -> int:
        event = self.events.get(event_id)
        serving = self.engine.increment_serving(event.event_id, by)
        self._counters.invalidate(event.event_id)
        return serving

    def increment_serving_once(self, event_id: object, by: object, mark: str) -> tuple[int, bool]:
        """Raise the serving counter at most once per ``mark``; returns (serving, applied)."""
        event = self.events.get(event_id)
        result = self.engine.increment_serving_once(event.event_id, by, mark)
        self._counters.invalidate(event.event_id)
        return result

    def sweep(self, event_id: object) -> SweepResult:
        event = self.events.get(event_id)
        result = self.engine.sweep(event.event_id, event.policy)
        self._counters.invalidate(event.event_id)
        return result

    def record_session(self, event_id: str, outcome: int) -> None:
        self.engine.record_session(event_id, outcome)
        self._counters.invalidate(event_id)

    def reset(self, event_id: object) -> None:
        event = self.events.get(event_id)
        self.engine.reset(event.event_id)
        self._counters.invalidate(event.event_id)
