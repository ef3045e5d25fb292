"""The admission interaction: an authorization request parked while its visitor waits in the queue.

This module owns the interaction's states and the only transitions between them::

    parked --(joined the queue)--> waiting --(serving counter reached the place)--> admitted
    admitted --(code issued, 303 to the redirect URI)--> code_issued
    admitted --(parked longer than the client's max_parked_seconds; sent to initiate_login_uri)--> expired
    waiting --(the place expired unclaimed)--> expired
    parked | waiting | admitted --(replaced or given up)--> abandoned

Every transition is a compare-and-set on the stored state, so two tabs reloading the same waiting page
finish the request once. It also owns "one place per browser per event": the browser's long-lived
visitor cookie maps to one queue place per event (a second authorize from the same browser finds the
same place); the join uses an idempotency key derived from the visitor and a generation number, so
concurrent first joins get one place, and a forced re-login (``prompt=login``, a stale ``max_age``)
after the place was used moves to the next generation, a new place at the back of the queue; while
the place can still lead to a login, re-logins reuse it.
"""

from __future__ import annotations

import enum
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from idp.crypto import keyed_digest
from idp.errors import IdpError
from idp.oidc.claims import VISITOR_ID_RE, Admission
from idp.oidc.records import InteractionRecord, OidcRecords, Place
from idp.queue.engine import PlaceState, PlaceStatus
from idp.queue.waiting_room import RequestNotFoundError, WaitingRoom

if TYPE_CHECKING:
    from idp.clock import Clock
    from idp.tokens.issuer import TokenService

log = logging.getLogger("idp.oidc")

# Interactions older than this are gone for good (a relying party gave up long before).
INTERACTION_TTL = 86400
PURGE_ONE_IN = 500
INTERACTION_ID_RE = re.compile(r"\A[A-Za-z0-9_-]{16,64}\Z")
# Parameters of an authorization request worth keeping; everything else is ignored (RFC 6749 §3.1).
KEPT_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "id_token_hint",
    "acr_values",
    "ui_locales",
    "login_hint",
    "display",
    "claims_locales",
    "response_mode",
)


class State(enum.StrEnum):
    """The states of a parked request, and the one vocabulary of the visitor's state in the sign-in
    decisions: a place's ``Progress`` in the queue is WAITING, ADMITTED or EXPIRED."""

    PARKED = "parked"
    WAITING = "waiting"
    ADMITTED = "admitted"
    CODE_ISSUED = "code_issued"
    EXPIRED = "expired"
    ABANDONED = "abandoned"


TRANSITIONS: dict[State, set[State]] = {
    State.PARKED: {State.WAITING, State.ABANDONED},
    State.WAITING: {State.ADMITTED, State.EXPIRED, State.ABANDONED},
    State.ADMITTED: {State.CODE_ISSUED, State.EXPIRED, State.ABANDONED},
    State.CODE_ISSUED: set(),
    State.EXPIRED: set(),
    State.ABANDONED: set(),
}


class InteractionError(IdpError):
    code = "interaction_invalid"
    status = 400
    message = "This sign-in request cannot continue."


class InteractionNotFoundError(InteractionError):
    code = "interaction_not_found"
    status = 404
    message = "This sign-in request is unknown or has finished. Return to the site and sign in again."


class InteractionFinishedError(InteractionError):
    code = "interaction_finished"
    status = 409
    message = "This sign-in request has already been completed. Return to the site."


class ForeignInteractionError(InteractionError):
    code = "interaction_foreign"
    status = 403
    message = "This sign-in request belongs to another browser."


def new_visitor_id() -> str:
    return secrets.token_urlsafe(32)


def valid_visitor_id(value: object) -> str | None:
    return value if isinstance(value, str) and VISITOR_ID_RE.match(value) else None


@dataclass(frozen=True)
class Progress:
    """Where a parked request stands in the queue."""

    state: State  # WAITING, ADMITTED or EXPIRED: the place's side of the same states
    position: int
    serving: int
    admitted_at: int | None = None

    @property
    def ahead(self) -> int:
        return max(0, self.position - self.serving - 1)

    @property
    def poll_after_ms(self) -> int:
        """Poll often near the front, rarely far back: 100,000 waiting cost < 2,000 polls a second."""
        if self.state is not State.WAITING:
            return 0
        return max(1000, min(60000, self.ahead * 20))


class Interactions:
    """Park, follow and finish authorization requests of visitors waiting in the queue."""

    def __init__(self, clock: Clock, room: WaitingRoom, tokens: TokenService, records: OidcRecords) -> None:
        self.clock = clock
        self.room = room
        self.tokens = tokens
        self.records = records

    def now(self) -> int:
        return int(self.clock.now())

    # --- places -----------------------------------------------------------------------------------

    def _usable(self, event_id: str, place: Place) -> PlaceState | None:
        """The state of the browser's place if it can still lead to a login; None if it cannot."""
        try:
            status: PlaceStatus = self.room.status(event_id, place.request_id)[1]
        except RequestNotFoundError:
            return None  # the event was reset
        if status.state in (PlaceState.WAITING, PlaceState.ADMITTED, PlaceState.PENDING):
            return status.state
        if status.state is PlaceState.CLAIMED:
            session = self.records.session_state(place.request_id)
            if session is None or session.active:
                return status.state
        return None

    def _end_previous(self, place: Place) -> None:
        """A new admission of the browser completes the session of the place it replaced.

        A forced re-login keeps the earlier session while the new place waits; once the new place is
        admitted, the browser holds one active slot in the event, not one per re-login."""
        previous = place.previous_request_id
        if previous is None:
            return
        self.records.revoke_session_grants(place.event_id, previous)
        try:
            self.tokens.update_session(place.event_id, previous, 1)
        except IdpError:
            pass  # already finished, expired or never issued
        self.records.forget_previous(place)

    def ensure_place(
        self, visitor_id: str, event_id: str, *, fresh: bool = False, guard: Callable[[], None] | None = None
    ) -> Place:
        """The browser's place in the event's queue, joining (again) when it has none that can still admit.

        ``fresh`` (a forced re-login: ``prompt=login``, a stale ``max_age``) asks for a new admission,
        but a place still waiting, or admitted and not yet used, already leads to one: it is reused.
        Only a place whose admission was used gives way to a new one, so a browser takes at most one
        new place per admission and never holds two waiting places in one event. ``guard`` runs just before
        a new place is taken (the abuse defence: rate limits, the join gate)."""
        place = self.records.place(visitor_id, event_id)
        if place is not None:
            state = self._usable(event_id, place)
            if state is not None and not (fresh and state is PlaceState.CLAIMED):
                return place
        if guard is not None:
            guard()
        generation = 0 if place is None else place.generation + 1
        # The queue store keeps the idempotency key: a keyed hash of the visitor, never its cookie value.
        owner = keyed_digest(self.tokens.settings.secret_key, "place idempotency", visitor_id)[:16].hex()
        _, entry = self.room.join(event_id, idempotency_key=f"oidc:{owner}:{generation}")
        return self.records.save_place(Place(visitor_id, event_id, entry.request_id, entry.position, generation))

    def admission(
        self, visitor_id: str, event_id: str, cookie: dict[str, Any] | None, *, claim: bool = True
    ) -> Admission | None:
        """The browser's current admission to the event, from its admitted cookie or its place.

        A place admitted but not yet claimed (the visitor queued first on ``/wait/<event_id>``) is
        claimed here when ``claim`` is true, so the relying party's request is answered at once.
        """
        if cookie and cookie.get("v") == visitor_id and cookie.get("e") == event_id:
            request_id, position, admitted_at = cookie.get("r"), cookie.get("q"), cookie.get("t")
            if isinstance(request_id, str) and isinstance(position, int) and isinstance(admitted_at, int):
                session = self.records.session_state(request_id)
                if session is not None and session.active:
                    return Admission(visitor_id, event_id, request_id, position, admitted_at)
        place = self.records.place(visitor_id, event_id)
        if place is None:
            return None
        try:
            _, status = self.room.status(event_id, place.request_id)
        except RequestNotFoundError:
            return None
        if status.admitted_at is None:
            return None
        if status.state is PlaceState.ADMITTED and claim:
            try:
                self.tokens.issue(event_id, place.request_id)
            except IdpError:
                return None
        elif status.state is not PlaceState.CLAIMED:
            return None
        self._end_previous(place)
        session = self.records.session_state(place.request_id)
        if session is None or not session.active:
            return None
        position = status.entry.position if status.entry is not None else place.queue_position
        return Admission(visitor_id, event_id, place.request_id, position, status.admitted_at)

    # --- the state machine ------------------------------------------------------------------------

    def park(
        self,
        client_id: str,
        event_id: str,
        visitor_id: str,
        params: dict[str, str],
        *,
        fresh: bool = False,
        guard: Callable[[], None] | None = None,
    ) -> InteractionRecord:
        """Store the request (parked), then join the queue or find the browser's place (waiting)."""
        now = self.now()
        kept = {k: v for k, v in params.items() if k in KEPT_PARAMS}
        place = self.ensure_place(visitor_id, event_id, fresh=fresh, guard=guard)
        record = InteractionRecord(
            interaction_id=secrets.token_urlsafe(24),
            client_id=client_id,
            event_id=event_id,
            visitor_id=visitor_id,
            request_id=place.request_id,
            queue_position=place.queue_position,
            params=kept,
            state=State.PARKED.value,
            created_at=now,
            updated_at=now,
        )
        self.records.create_interaction(record)
        self.move(record, State.WAITING)
        if secrets.randbelow(PURGE_ONE_IN) == 0:
            # Old codes and interactions go away as a side effect of new ones: no extra job needed.
            self.records.purge(now - INTERACTION_TTL, now - INTERACTION_TTL)
        return self.records.interaction(record.interaction_id, visitor_id) or record

    def load(self, interaction_id: object, visitor_id: str | None) -> InteractionRecord:
        if not isinstance(interaction_id, str) or not INTERACTION_ID_RE.match(interaction_id):
            raise InteractionNotFoundError()
        record = self.records.interaction(interaction_id, visitor_id)
        if record is None or self.now() - record.created_at > INTERACTION_TTL:
            raise InteractionNotFoundError()
        if visitor_id is None or not record.visitor_id:
            raise ForeignInteractionError()  # the stored owner tag is not this browser's
        return record

    def move(self, record: InteractionRecord, to: State) -> None:
        """Apply one transition; raises when it is not allowed from the current state or was lost."""
        allowed_from = tuple(s.value for s, targets in TRANSITIONS.items() if to in targets)
        if not self.records.move_interaction(record.interaction_id, allowed_from, to.value):
            current = self.records.interaction(record.interaction_id)
            if current is not None and current.state == State.CODE_ISSUED.value:
                raise InteractionFinishedError()
            raise InteractionError(f"This sign-in request cannot move to {to.value}.")

    def progress(self, event_id: str, request_id: str) -> Progress:
        """Where a place stands; reads only the queue store (and the cached event settings)."""
        try:
            _, status = self.room.status(event_id, request_id)
        except RequestNotFoundError:
            return Progress(State.EXPIRED, 0, 0)
        position = status.entry.position if status.entry else 0
        if status.state in (PlaceState.WAITING, PlaceState.PENDING):
            return Progress(State.WAITING, position, status.serving)
        if status.state in (PlaceState.ADMITTED, PlaceState.CLAIMED):
            return Progress(State.ADMITTED, position, status.serving, status.admitted_at)
        return Progress(State.EXPIRED, position, status.serving)

    def admit(self, record: InteractionRecord) -> tuple[Admission, int]:
        """Claim the admitted place (waiting -> admitted); returns the admission and the session's end."""
        progress = self.progress(record.event_id, record.request_id)
        if progress.state is not State.ADMITTED or progress.admitted_at is None:
            raise InteractionError("This place has not been admitted.")
        self.tokens.issue(record.event_id, record.request_id)
        place = self.records.place(record.visitor_id, record.event_id)
        if place is not None and place.request_id == record.request_id:
            self._end_previous(place)
        session = self.records.session_state(record.request_id)
        if session is None or not session.active:
            raise InteractionError("The session of this place has finished.")
        if record.state == State.WAITING.value:
            self.move(record, State.ADMITTED)
        # A pre-queue entry was parked before the draw gave it a position: the store's position counts.
        position = progress.position or record.queue_position
        admission = Admission(record.visitor_id, record.event_id, record.request_id, position, progress.admitted_at)
        return admission, session.expires_at

    def parked_too_long(self, record: InteractionRecord, max_parked_seconds: int) -> bool:
        return self.now() - record.created_at > max_parked_seconds
