"""The signed tickets of a parked request's waiting page: ``/authorize/wait/<id>?w=...`` and
``/authorize/status/<ticket>``.

A ticket says what the waiting page needs while the visitor waits, without a database read. It
travels in the page's URLs, signed but readable, so it holds no secret: no request id and no cookie
value. ``owner`` is a keyed hash of the visitor cookie: it lets the cookie of the browser that owns the
request be checked without revealing it.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

from idp.config import Settings
from idp.crypto import keyed_digest
from idp.oidc.interaction import Progress, State
from idp.oidc.records import InteractionRecord
from idp.queue.waiting_room import WaitingRoom

WAIT_SALT = "idp-oidc-wait"
STATUS_SALT = "idp-oidc-status"


@dataclass(frozen=True)
class WaitTicket:
    """What the waiting page of a parked request needs while the visitor waits (see the module)."""

    interaction_id: str
    event_id: str
    owner: str
    client_id: str
    position: int
    ui_locales: str

    @property
    def params(self) -> dict[str, str]:
        return {"ui_locales": self.ui_locales} if self.ui_locales else {}


class WaitTickets:
    """Sign and read waiting-page tickets; tell a place still waiting from the cached counters."""

    def __init__(self, settings: Settings, room: WaitingRoom) -> None:
        self.settings = settings
        self.room = room

    def _serializer(self, salt: str) -> URLSafeSerializer:
        # Signs with IDP_SECRET_KEY (itsdangerous signs with the last key) and reads what a previous secret signed.
        return URLSafeSerializer(list(reversed(self.settings.secret_keys)), salt=salt)

    def _owner_tag(self, visitor_id: str, secret: str | None = None) -> str:
        return keyed_digest(secret or self.settings.secret_key, "waiting-page owner", visitor_id).hex()[:32]

    def of(self, record: InteractionRecord) -> WaitTicket:
        return WaitTicket(
            record.interaction_id,
            record.event_id,
            self._owner_tag(record.visitor_id),
            record.client_id,
            record.queue_position,
            str(record.params.get("ui_locales", ""))[:100],
        )

    def _sign(self, ticket: WaitTicket, salt: str) -> str:
        return self._serializer(salt).dumps(
            [ticket.interaction_id, ticket.event_id, ticket.owner, ticket.client_id, ticket.position, ticket.ui_locales]
        )

    def _read(self, raw: str | None, salt: str) -> WaitTicket | None:
        """The ticket a signed value names (no database read); None for anything else."""
        if not raw or len(raw) > 1000:
            return None
        try:
            value = self._serializer(salt).loads(raw)
        except BadSignature:
            return None
        if not (
            isinstance(value, list)
            and len(value) == 6
            and type(value[4]) is int
            and all(isinstance(v, str) for i, v in enumerate(value) if i != 4)
        ):
            return None
        return WaitTicket(*value)

    def owned(self, ticket: WaitTicket, visitor_id: str | None) -> bool:
        """True when ``visitor_id`` is the cookie of the browser that parked the request."""
        if visitor_id is None:
            return False
        # A ticket made under a previous IDP_SECRET_KEY still names its owner.
        owner = ticket.owner.encode("utf-8", "replace")
        return any(
            hmac.compare_digest(owner, self._owner_tag(visitor_id, secret).encode())
            for secret in self.settings.secret_keys
        )

    def wait_url(self, record: InteractionRecord | WaitTicket) -> str:
        """The waiting page of a parked request; its signed ``w`` lets a waiting reload skip the database."""
        ticket = record if isinstance(record, WaitTicket) else self.of(record)
        return f"/authorize/wait/{ticket.interaction_id}?w={self._sign(ticket, WAIT_SALT)}"

    def status_url(self, ticket: WaitTicket) -> str:
        return f"/authorize/status/{self._sign(ticket, STATUS_SALT)}"

    def read_wait(self, raw: str | None, interaction_id: str, visitor_id: str | None) -> WaitTicket | None:
        """The ticket of a valid ``w`` of this browser's request, without a database read."""
        ticket = self._read(raw, WAIT_SALT)
        if ticket is None or ticket.interaction_id != interaction_id or not self.owned(ticket, visitor_id):
            return None
        return ticket

    def read_status(self, raw: str | None, visitor_id: str | None) -> WaitTicket | None:
        """The ticket of a status URL of this browser's request; None for another browser's or a forgery."""
        ticket = self._read(raw, STATUS_SALT)
        return ticket if ticket is not None and self.owned(ticket, visitor_id) else None

    def still_waiting(self, ticket: WaitTicket) -> Progress | None:
        """The progress of a place known to be waiting from the event's cached counters; None near the front.

        Positions never change and a place above the serving counter is waiting, so a waiting visitor's
        reloads and polls read neither the database nor the queue store.
        """
        counters = self.room.counters(ticket.event_id)
        if counters.serving < ticket.position <= counters.queue:
            return Progress(State.WAITING, ticket.position, counters.serving)
        return None
