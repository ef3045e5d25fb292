"""The queue engine: one interface, two stores (Redis and SQL), the same semantics.

Semantics (DESIGN.md §4):

* Positions are 1..N, contiguous, unique, in arrival order; entry times never decrease with position.
* The serving counter is the highest admitted position. Raising it records ``(counter, issue_time)``.
* A position ``q`` is *admitted at* ``max(entry_time(q), issue time of the first serving value >= q)``.
  It may claim its token while ``now - admitted_at <= period``; after that it has expired, unless it
  already claimed. Because entry and issue times both grow with position, the expired positions are
  always a prefix of the admitted ones, so the sweep finds its end by binary search and never stalls.
* The sweep records the highest expired position and, when ``incr_serving_on_expiry`` is on, moves the
  serving counter on by the number of expired *unclaimed* positions in the new prefix.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from idp.clock import Clock, SystemClock
from idp.errors import IdpError, NotFoundError, UnavailableError, ValidationError
from idp.randomness import id_bytes

INT64_MAX = 2**63 - 1
REQUEST_ID_RE = re.compile(r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def new_request_id() -> str:
    """A random version-4 UUID in canonical form: ``str(uuid.uuid4())`` without building UUID objects."""
    raw = bytearray(id_bytes())
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


IDEMPOTENCY_KEY_RE = re.compile(r"\A[\x21-\x7e]{1,200}\Z")
MARK_RE = re.compile(r"\A[\x21-\x7e]{1,100}\Z")


class CounterOverflowError(IdpError):
    code = "counter_overflow"
    status = 400
    message = "The serving counter would exceed 2^63-1."


class StoreLostError(UnavailableError):
    """The event's queue store lost data; it answers nothing that may already be held until recovered."""

    code = "queue_store_lost"
    message = "The queue store of this event lost data; joins resume once it is recovered."


class PlaceLostError(NotFoundError):
    """The place existed but was lost with the queue store; its position is never handed out again."""

    code = "place_lost"
    status = 410
    message = "This place was lost with the queue store; join the queue again."


@dataclass(frozen=True)
class ExpiryPolicy:
    """An event's queue-position expiry settings."""

    enabled: bool = True
    period: int = 900
    incr_serving_on_expiry: bool = False


@dataclass(frozen=True)
class Entry:
    request_id: str
    position: int
    entry_time: int


@dataclass(frozen=True)
class Pending:
    """A pre-queue join: a request id and its public lottery entry id, no position yet.

    ``request_id`` is empty in :meth:`QueueStore.pending_entries`: stores keep only a hash of it.
    """

    request_id: str
    entry_id: str
    joined_at: int


@dataclass(frozen=True)
class DrawState:
    """An event's pre-queue: how many entered, and when (and from which position) it was drawn."""

    entrants: int = 0
    drawn_at: int | None = None
    first_position: int = 0


class DrawOutcome(enum.Enum):
    DRAWN = 1  # this call drew
    ALREADY_DRAWN = 2  # another call drew before; nothing changed
    STALE = 3  # the entrants changed since they were read; read them again and retry


class PlaceState(enum.Enum):
    UNKNOWN = 0
    WAITING = 1  # position above the serving counter
    ADMITTED = 2  # served, may claim its token
    CLAIMED = 3  # served and its token was issued
    EXPIRED = 4  # served, not claimed within the period
    PENDING = 5  # joined during a pre-queue, no position until the draw


@dataclass(frozen=True)
class PlaceStatus:
    state: PlaceState
    entry: Entry | None = None
    serving: int = 0
    admitted_at: int | None = None
    # Seconds left to claim; None while waiting, when expiry is disabled, or once claimed.
    expires_in: int | None = None
    # True only for the call that first claimed the place.
    first_claim: bool = False


@dataclass(frozen=True)
class Counters:
    queue: int = 0
    serving: int = 0
    tokens: int = 0
    expired: int = 0
    completed: int = 0
    abandoned: int = 0
    max_expired: int = 0
    # Positions lost with an earlier store (held by nobody now), skipped by the serving counter.
    lost: int = 0

    @property
    def waiting(self) -> int:
        """Queued, not yet issued a token, not expired and not lost."""
        return max(0, self.queue - self.tokens - self.expired - self.lost)


@dataclass(frozen=True)
class SweepResult:
    expired_unclaimed: int
    max_expired: int
    serving: int
    previous_serving: int


class QueueStore(Protocol):
    """What a store must do; each method is one atomic step (a Lua script or one transaction)."""

    def enqueue(self, event_id: str, request_id: str, now: int, idempotency_key: str | None) -> Entry: ...

    def entry(self, event_id: str, request_id: str) -> Entry | None: ...

    def counters(self, event_id: str) -> Counters: ...

    def increment_serving(self, event_id: str, by: int, now: int) -> int: ...

    def increment_serving_once(self, event_id: str, by: int, now: int, mark: str) -> tuple[int, bool]: ...

    def status(self, event_id: str, request_id: str, now: int, policy: ExpiryPolicy, claim: bool) -> PlaceStatus: ...

    def sweep(self, event_id: str, now: int, policy: ExpiryPolicy) -> SweepResult: ...

    def record_session(self, event_id: str, outcome: int) -> None: ...

    def reset(self, event_id: str) -> None: ...

    def enqueue_pending(
        self,
        event_id: str,
        request_id: str,
        entry_id_of: Callable[[str], str],
        now: int,
        idempotency_key: str | None,
    ) -> Pending | None:
        """Join the pre-queue; None once the event has been drawn (the caller then joins the queue).

        The store may mark ``request_id`` (as joins mark theirs); the entry id is ``entry_id_of`` the
        request id it answers.
        """

    def pending(self, event_id: str, request_id: str) -> Pending | None: ...

    def pending_entries(self, event_id: str) -> list[Pending]:
        """The pre-queue's entries, without their request ids."""

    def pending_positions(self, event_id: str) -> dict[str, int]:
        """Entry id -> position the draw gave it (0 before the draw)."""

    def draw_state(self, event_id: str) -> DrawState: ...

    def draw(self, event_id: str, ordered_entry_ids: list[str], now: int) -> DrawOutcome:
        """Give the pre-queue positions queue+1.. in the given order of entry ids, all at once and only once."""

    def admit_up_to(self, event_id: str, cap: int, by: int, now: int, mark: str) -> tuple[int, int]:
        """Raise serving to ``min(cap, queue, serving + by)`` at most once per mark: (serving, admitted)."""

    def ping(self) -> None: ...


def validate_request_id(value: object) -> str:
    """Accept only a canonical lower-case UUID string (anchored, unlike the AWS check)."""
    if not isinstance(value, str) or not REQUEST_ID_RE.match(value):
        raise ValidationError("request_id must be a UUID.", code="invalid_request_id")
    return value


def validate_increment(value: object) -> int:
    """A positive integer no larger than 2^63-1; bools, floats and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError("increment_by must be a positive integer.", code="invalid_increment")
    if value < 1 or value > INT64_MAX:
        raise ValidationError("increment_by must be between 1 and 2^63-1.", code="invalid_increment")
    return value


def validate_idempotency_key(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not IDEMPOTENCY_KEY_RE.match(value):
        raise ValidationError(
            "Idempotency-Key must be 1 to 200 printable ASCII characters.", code="invalid_idempotency_key"
        )
    return value


def admitted_at(entry_time: int, issue_time: int | None) -> int:
    return entry_time if issue_time is None else max(entry_time, issue_time)


def is_expired(now: int, admitted: int, period: int) -> bool:
    """Expired once more than ``period`` seconds have passed since admission (claimable at T+period)."""
    return now - admitted > period


def last_expired_position(low: int, high: int, expired: Callable[[int], bool]) -> int:
    """Return the largest p in [low, high] with expired(p), given that expiry is a prefix; low-1 if none."""
    if low > high or not expired(low):
        return low - 1
    if expired(high):
        return high
    lo, hi = low, high  # expired(lo) and not expired(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if expired(mid):
            lo = mid
        else:
            hi = mid
    return lo


class QueueEngine:
    """Validates input, applies the clock, and delegates to a store."""

    def __init__(self, store: QueueStore, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock or SystemClock()

    def _now(self) -> int:
        return int(self.clock.now())

    def enqueue(self, event_id: str, idempotency_key: str | None = None) -> Entry:
        key = validate_idempotency_key(idempotency_key)
        return self.store.enqueue(event_id, new_request_id(), self._now(), key)

    def entry(self, event_id: str, request_id: str) -> Entry | None:
        return self.store.entry(event_id, validate_request_id(request_id))

    def counters(self, event_id: str) -> Counters:
        return self.store.counters(event_id)

    def increment_serving(self, event_id: str, by: object) -> int:
        return self.store.increment_serving(event_id, validate_increment(by), self._now())

    def increment_serving_once(self, event_id: str, by: object, mark: str) -> tuple[int, bool]:
        """Raise the counter unless an increment under ``mark`` was applied before: ``(serving, applied)``.

        The mark is stored in the same atomic step as the increment, so a caller that crashed after the
        increment and retries with the same mark (a worker restarted mid-minute) never adds twice.
        """
        if not isinstance(mark, str) or not MARK_RE.match(mark):
            raise ValidationError("mark must be 1 to 100 printable ASCII characters.", code="invalid_mark")
        return self.store.increment_serving_once(event_id, validate_increment(by), self._now(), mark)

    def status(self, event_id: str, request_id: str, policy: ExpiryPolicy) -> PlaceStatus:
        return self.store.status(event_id, validate_request_id(request_id), self._now(), policy, False)

    def claim(self, event_id: str, request_id: str, policy: ExpiryPolicy) -> PlaceStatus:
        """Mark an admitted place as having its token; counts the token once, however often called."""
        return self.store.status(event_id, validate_request_id(request_id), self._now(), policy, True)

    def sweep(self, event_id: str, policy: ExpiryPolicy) -> SweepResult:
        return self.store.sweep(event_id, self._now(), policy)

    def record_session(self, event_id: str, outcome: int) -> None:
        if outcome not in (1, -1):
            raise ValidationError("status must be 1 (completed) or -1 (abandoned).", code="invalid_status")
        self.store.record_session(event_id, outcome)

    def reset(self, event_id: str) -> None:
        self.store.reset(event_id)

    # -- the pre-queue and automatic admission ---------------------------------------------------

    def enqueue_pending(
        self, event_id: str, entry_id_of: Callable[[str], str], idempotency_key: str | None = None
    ) -> Pending | None:
        """Join the pre-queue with a new request id; None when the draw has happened already."""
        key = validate_idempotency_key(idempotency_key)
        return self.store.enqueue_pending(event_id, new_request_id(), entry_id_of, self._now(), key)

    def pending(self, event_id: str, request_id: str) -> Pending | None:
        return self.store.pending(event_id, validate_request_id(request_id))

    def pending_entries(self, event_id: str) -> list[Pending]:
        return self.store.pending_entries(event_id)

    def pending_positions(self, event_id: str) -> dict[str, int]:
        return self.store.pending_positions(event_id)

    def draw_state(self, event_id: str) -> DrawState:
        return self.store.draw_state(event_id)

    def draw(self, event_id: str, ordered_entry_ids: list[str]) -> DrawOutcome:
        return self.store.draw(event_id, ordered_entry_ids, self._now())

    def admit_up_to(self, event_id: str, cap: int, by: int, mark: str = "") -> tuple[int, int]:
        """Admit up to ``by`` waiting visitors without the serving counter passing ``cap``.

        With a mark the step is applied at most once (a worker tick retried after a crash); the
        counter never passes the queue counter, so nobody is admitted before they have joined.
        """
        if mark and not MARK_RE.match(mark):
            raise ValidationError("mark must be 1 to 100 printable ASCII characters.", code="invalid_mark")
        if by <= 0:
            return self.store.counters(event_id).serving, 0
        return self.store.admit_up_to(event_id, min(cap, INT64_MAX), min(by, INT64_MAX), self._now(), mark)
