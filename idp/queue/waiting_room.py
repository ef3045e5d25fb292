"""The waiting room service: joins, places and counters of an event, over the queue engine.

Views call one function here. Per-event answers that may be a moment stale (serving counter, waiting
count) come from a small in-process cache so polling costs no store round trip most of the time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from idp.cache import TTLCache
from idp.errors import IdpError, NotFoundError
from idp.events import admission, lottery
from idp.events.lifecycle import Phase, gate, has_draw
from idp.events.service import EventConfig, EventService
from idp.queue.engine import (
    Counters,
    DrawOutcome,
    DrawState,
    Entry,
    Pending,
    PlaceLostError,
    PlaceState,
    PlaceStatus,
    QueueEngine,
    SweepResult,
)

log = logging.getLogger("idp.queue")
DRAW_ATTEMPTS = 10


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
        # (event, opening time) pairs known to be drawn: a draw is never undone, so this may be kept.
        self._drawn: set[tuple[str, int]] = set()
        self._drawn_lock = threading.Lock()
        self.idle = admission.SessionIdle(events.db, engine.clock)

    def _now(self) -> int:
        return int(self.engine.clock.now())

    def fast_joinable(self, event: EventConfig) -> bool:
        """True when a join of this event always answers with a position (no pre-queue to enter)."""
        return event.prequeue_opens_at is None

    def enter(self, event_id: object, idempotency_key: str | None = None) -> tuple[EventConfig, Entry | Pending]:
        """Join the event as its schedule and mode allow: a place, or a pre-queue entry before the draw.

        ``event_id`` may be the event's settings as the caller just read them (``EventService.get``)."""
        event = event_id if isinstance(event_id, EventConfig) else self.events.get(event_id)
        current = gate(event, event.mode, self._now())
        if current is Phase.PREQUEUE:
            pending = self.engine.enqueue_pending(event.event_id, lottery.entry_id, idempotency_key)
            if pending is not None:
                return event, pending
        self.ensure_drawn(event)
        entry = self.engine.enqueue(event.event_id, idempotency_key)
        self.admit_on_join(event, entry)
        return event, entry

    def join(self, event_id: object, idempotency_key: str | None = None) -> tuple[EventConfig, Entry]:
        """Join; a pre-queue entry is given as an entry at position 0 (its place comes at the draw)."""
        event, result = self.enter(event_id, idempotency_key)
        if isinstance(result, Pending):
            return event, Entry(result.request_id, 0, result.joined_at)
        return event, result

    def admit_on_join(self, event: EventConfig, entry: Entry) -> None:
        """Room modes that admit at the door (``passthrough``, ``when_busy`` under its targets)."""
        if event.mode in ("passthrough", "when_busy") and admission.admit_at_door(
            self.engine, self.events.db, event, entry
        ):
            self._counters.invalidate(event.event_id)

    def session_seen(self, event_id: str, request_tag: str) -> bool:
        """``/verify`` saw this session (named by its request id's tag, the tokens row key): renew its
        idle time; False when it had ended by being idle."""
        return self.idle.seen(self.events.get(event_id), request_tag)

    def invalidate(self, event_id: str) -> None:
        """Forget this process's cached counters of an event (another part just changed them)."""
        self._counters.invalidate(event_id)

    def ensure_drawn(self, event: EventConfig) -> bool:
        """Draw the pre-queue if its opening has come and nobody drew it yet; True once it is drawn."""
        if not has_draw(event):
            return False
        assert event.opens_at is not None
        if self._now() < event.opens_at:
            return False
        key = (event.event_id, event.opens_at)
        if key in self._drawn:
            return True
        for _attempt in range(DRAW_ATTEMPTS):
            state = self.engine.draw_state(event.event_id)
            if state.drawn_at is not None:
                break
            committed = lottery.load(self.events.db, event.event_id)
            if committed is None:
                log.warning(
                    "no committed seed for a pre-queue; committing one at the draw", extra={"event_id": event.event_id}
                )
                committed = lottery.renew(self.events.db, event.event_id, self._now())
            entries = [p.entry_id for p in self.engine.pending_entries(event.event_id)]
            order = lottery.draw_order(committed.seed, entries)
            outcome = self.engine.draw(event.event_id, order)
            if outcome is DrawOutcome.DRAWN:
                log.info("pre-queue drawn", extra={"event_id": event.event_id, "entrants": len(order)})
            if outcome is not DrawOutcome.STALE:
                break
        else:
            return False
        self._counters.invalidate(event.event_id)
        with self._drawn_lock:
            self._drawn.add(key)
        return True

    def draw_state(self, event_id: object) -> tuple[EventConfig, DrawState]:
        event = self.events.get(event_id)
        self.ensure_drawn(event)
        return event, self.engine.draw_state(event.event_id)

    def lottery(self, event_id: object) -> dict[str, Any]:
        """The event's published lottery (see :func:`idp.events.lottery.publication`)."""
        event, state = self.draw_state(event_id)
        committed = lottery.load(self.events.db, event.event_id)
        entries: list[str] = []
        if state.drawn_at is not None:
            entries = [p.entry_id for p in self.engine.pending_entries(event.event_id)]
        return lottery.publication(
            event.event_id, committed, event.opens_at, state.entrants, state.drawn_at, state.first_position, entries
        )

    def _pending_status(self, event: EventConfig, request_id: object) -> PlaceStatus | None:
        """The status of a pre-queue entry; drawn first when the opening has come."""
        pending = self.engine.pending(event.event_id, request_id)  # type: ignore[arg-type]
        if pending is None:
            return None
        if self.ensure_drawn(event):
            status = self.engine.status(event.event_id, pending.request_id, event.policy)
            if status.state is not PlaceState.UNKNOWN:
                return status
        serving = self.counters(event.event_id).serving
        return PlaceStatus(PlaceState.PENDING, Entry(pending.request_id, 0, pending.joined_at), serving)

    def pending(self, event_id: object, request_id: object) -> Pending | None:
        event = self.events.get(event_id)
        return self.engine.pending(event.event_id, request_id)  # type: ignore[arg-type]

    def place(self, event_id: object, request_id: object) -> Entry | Pending:
        """A place by request id; a pre-queue entry not yet drawn is returned as such."""
        event = self.events.get(event_id)
        try:
            entry = self.engine.entry(event.event_id, request_id)  # type: ignore[arg-type]
        except PlaceLostError:
            raise RequestLostError() from None
        if entry is None:
            pending = self.engine.pending(event.event_id, request_id)  # type: ignore[arg-type]
            if pending is None:
                raise RequestNotFoundError()
            if self.ensure_drawn(event):
                entry = self.engine.entry(event.event_id, pending.request_id)
            if entry is None:
                return pending
        return entry

    def counters(self, event_id: object, *, fresh: bool = False) -> Counters:
        event = self.events.get(event_id)
        if fresh:
            self._counters.invalidate(event.event_id)
        return self._counters.get(event.event_id, lambda: self.engine.counters(event.event_id))

    def counters_record(self, event_id: object) -> tuple[EventConfig, tuple[float, Counters]]:
        """The event and its cached counters' record: an answer built from them may be kept while
        :meth:`counters_current` says so (as long as the counters themselves, never longer)."""
        event = self.events.get(event_id)
        return event, self._counters.entry(event.event_id, lambda: self.engine.counters(event.event_id))

    def counters_current(self, event_id: str, record: tuple[float, Counters]) -> bool:
        return self._counters.current(event_id, record)

    def serving(self, event_id: object) -> int:
        return self.counters(event_id).serving

    def waiting(self, event_id: object) -> int:
        return self.counters(event_id).waiting

    def _place(
        self, event_id: object, request_id: object, read: Callable[..., PlaceStatus]
    ) -> tuple[EventConfig, PlaceStatus, PlaceStatus | None]:
        """``read`` (the engine's status or claim) of a place, and its pre-queue status when the queue
        does not know it; a place lost with the store raises RequestLostError, an unknown one
        RequestNotFoundError."""
        event = self.events.get(event_id)
        try:
            status = read(event.event_id, request_id, event.policy)
        except PlaceLostError:
            raise RequestLostError() from None
        if status.state is not PlaceState.UNKNOWN:
            return event, status, None
        pending = self._pending_status(event, request_id)
        if pending is None:
            raise RequestNotFoundError()
        return event, status, pending

    def status(self, event_id: object, request_id: object) -> tuple[EventConfig, PlaceStatus]:
        """A place's state; unknown request ids raise RequestNotFoundError."""
        event, status, pending = self._place(event_id, request_id, self.engine.status)
        return event, status if pending is None else pending

    def claim(self, event_id: object, request_id: object) -> tuple[EventConfig, PlaceStatus]:
        """Claim an admitted place (token issuance); idempotent."""
        event, status, pending = self._place(event_id, request_id, self.engine.claim)
        if pending is not None:
            if pending.state is PlaceState.PENDING:
                raise NotServedError()
            # The draw gave the pre-queue entry its place since: claim it there.
            status = self.engine.claim(event.event_id, request_id, event.policy)  # type: ignore[arg-type]
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
        with self._drawn_lock:
            self._drawn = {key for key in self._drawn if key[0] != event.event_id}
        if event.prequeue_opens_at is not None:
            # The old seed may have been revealed by a draw; the next pre-queue gets a new one.
            lottery.renew(self.events.db, event.event_id, self._now())
