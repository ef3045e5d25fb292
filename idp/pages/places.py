"""One place per browser per event, shared by the waiting pages and ``/authorize``."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from idp.config import Settings
from idp.oidc.cookies import read_visitor_cookie
from idp.oidc.interaction import Interactions, new_visitor_id
from idp.queue.waiting_room import WaitingRoom


class Places:
    """One place per browser per event, shared with ``/authorize``.

    The browser's long-lived visitor cookie names its place in each event (``oidc_interactions``), so
    queueing here first and signing in later keep one place. The place's request id is also kept in a
    per-event cookie (``idp.pages.cookies``) so the status endpoint needs no database read.
    """

    def __init__(self, settings: Settings, room: WaitingRoom, interactions: Interactions) -> None:
        self.settings = settings
        self.room = room
        self.interactions = interactions

    def visitor(self, cookies: Mapping[str, str]) -> tuple[str, bool]:
        """The visitor id from its cookie, or a new one; True when the cookie is to be set (again)."""
        existing, legacy = read_visitor_cookie(cookies, self.settings)
        return (existing, legacy) if existing else (new_visitor_id(), True)

    def current(self, visitor_id: str | None, event_id: str) -> str | None:
        """The request id of the browser's place in the event, if it has one."""
        if visitor_id is None:
            return None
        place = self.interactions.records.place(visitor_id, event_id)
        return None if place is None else str(place.request_id)

    def join(self, visitor_id: str, event_id: str, guard: Callable[[], None] | None = None) -> tuple[str, int]:
        """The browser's place, joining when it has none that can still admit: (request id, position).

        ``guard`` runs just before a new place is taken (the abuse defence: rate limits, the join gate).
        """
        place = self.interactions.ensure_place(visitor_id, event_id, guard=guard)
        return str(place.request_id), int(place.queue_position)

    def finished(self, request_id: str) -> bool:
        """True when the place's token session has ended (completed, abandoned or expired)."""
        session = self.interactions.records.session_state(request_id)
        return session is not None and not session.active
