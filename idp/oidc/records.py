"""Durable records of the OpenID Connect side: visitor places, parked interactions, codes and grants.

Framework-free. Codes and refresh tokens are stored as SHA-256 digests (they carry 256 random bits,
so no salt or slow hash is needed); visitor ids and request ids as lookup tags, request ids also sealed
(:mod:`idp.storage.hidden_ids`); codes and grants keep the visitor's pairwise ``sub`` for their client,
never the visitor id. A database leak yields nothing usable. The records handed to callers hold the
raw values: hashing and sealing happen here only.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from idp.clock import Clock
from idp.crypto import LookupKey
from idp.oidc.claims import Admission
from idp.storage.db import Database
from idp.storage.hidden_ids import HiddenIds
from idp.storage.models import (
    OidcCode,
    OidcGrant,
    OidcInteraction,
    OidcPlace,
    OidcUsedRefreshToken,
    TokenRecord,
)
from idp.tokens.issuer import SessionState


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


@dataclass(frozen=True)
class Place:
    visitor_id: str
    event_id: str
    request_id: str
    queue_position: int
    generation: int
    # The place this one replaced, while its session may still be active (ended at this admission).
    previous_request_id: str | None = None


@dataclass(frozen=True)
class InteractionRecord:
    interaction_id: str
    client_id: str
    event_id: str
    # The owner's visitor id when the reader proved it (``OidcRecords.interaction(id, visitor_id)``);
    # empty otherwise: the table keeps only its lookup tag.
    visitor_id: str
    request_id: str
    queue_position: int
    params: dict[str, Any]
    state: str
    created_at: int
    updated_at: int


@dataclass(frozen=True)
class CodeRecord:
    """An authorization code as Authlib sees it (``AuthorizationCodeMixin``)."""

    code_hash: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    # The visitor's pairwise ``sub`` for ``client_id``.
    subject: str
    event_id: str
    request_id: str
    queue_position: int
    auth_time: int
    created_at: int
    expires_at: int

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str | None:
        return None

    def get_amr(self) -> list[str] | None:
        return None

    def admission(self) -> Admission:
        return Admission("", self.event_id, self.request_id, self.queue_position, self.auth_time, self.subject)


@dataclass(frozen=True)
class GrantRecord:
    """What a code exchange gave a client; Authlib's ``TokenMixin`` for refresh and revocation."""

    grant_id: str
    client_id: str
    # The visitor's pairwise ``sub`` for ``client_id``.
    subject: str
    event_id: str
    request_id: str
    queue_position: int
    scope: str
    auth_time: int
    created_at: int
    expires_at: int
    revoked_at: int | None
    # Set when the record was found through an access token rather than the refresh token.
    access_claims: dict[str, Any] | None = None

    def check_client(self, client: Any) -> bool:
        return bool(client is not None and client.get_client_id() == self.client_id)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return max(0, self.expires_at - self.created_at)

    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def admission(self) -> Admission:
        return Admission("", self.event_id, self.request_id, self.queue_position, self.auth_time, self.subject)


def _place(ids: HiddenIds, row: OidcPlace, visitor_id: str) -> Place:
    previous = None
    if row.previous_request_id is not None and row.previous_sealed is not None:
        previous = ids.open_request(row.previous_request_id, row.previous_sealed)
    request_id = ids.open_request(row.request_id, row.request_sealed)
    return Place(visitor_id, row.event_id, request_id, row.queue_position, row.generation, previous)


def _interaction(ids: HiddenIds, row: OidcInteraction, visitor_id: str) -> InteractionRecord:
    return InteractionRecord(
        row.interaction_id,
        row.client_id,
        row.event_id,
        visitor_id,
        ids.open_request(row.request_id, row.request_sealed),
        row.queue_position,
        dict(row.params or {}),
        row.state,
        row.created_at,
        row.updated_at,
    )


def _code(ids: HiddenIds, row: OidcCode) -> CodeRecord:
    return CodeRecord(
        row.code_hash,
        row.client_id,
        row.redirect_uri,
        row.scope,
        row.nonce,
        row.code_challenge,
        row.code_challenge_method,
        row.subject,
        row.event_id,
        ids.open_request(row.request_id, row.request_sealed),
        row.queue_position,
        row.auth_time,
        row.created_at,
        row.expires_at,
    )


def _grant(ids: HiddenIds, row: OidcGrant) -> GrantRecord:
    return GrantRecord(
        row.grant_id,
        row.client_id,
        row.subject,
        row.event_id,
        ids.open_request(row.request_id, row.request_sealed),
        row.queue_position,
        row.scope,
        row.auth_time,
        row.created_at,
        row.expires_at,
        row.revoked_at,
    )


class OidcRecords:
    def __init__(self, db: Database, clock: Clock, lookup: LookupKey) -> None:
        self.db = db
        self.clock = clock
        self.ids = HiddenIds(lookup)

    def now(self) -> int:
        return int(self.clock.now())

    # --- places ---------------------------------------------------------------------------------

    def place(self, visitor_id: str, event_id: str) -> Place | None:
        with self.db.session(readonly=True) as session:
            row = session.get(OidcPlace, (self.ids.visitor_tag(visitor_id), event_id))
            return None if row is None else _place(self.ids, row, visitor_id)

    def save_place(self, place: Place) -> Place:
        """Record the browser's place; a concurrent writer of the same generation wins once."""
        try:
            visitor_tag, request_tag = self.ids.visitor_tag(place.visitor_id), self.ids.request_tag(place.request_id)
            with self.db.session() as session:
                row = session.get(OidcPlace, (visitor_tag, place.event_id))
                if row is None:
                    session.add(
                        OidcPlace(
                            visitor_id=visitor_tag,
                            event_id=place.event_id,
                            request_id=request_tag,
                            request_sealed=self.ids.seal_request(place.request_id),
                            queue_position=place.queue_position,
                            generation=place.generation,
                            created_at=self.now(),
                        )
                    )
                elif row.generation <= place.generation:
                    if row.request_id != request_tag and session.get(TokenRecord, row.request_id) is not None:
                        # The replaced place had a session; a place that never had one leaves the
                        # earlier session (if any) to be ended by the next admission.
                        row.previous_request_id = row.request_id
                        row.previous_sealed = row.request_sealed
                    row.request_id = request_tag
                    row.request_sealed = self.ids.seal_request(place.request_id)
                    row.queue_position = place.queue_position
                    row.generation = place.generation
                    row.created_at = self.now()
                else:
                    return _place(self.ids, row, place.visitor_id)
        except IntegrityError:
            existing = self.place(place.visitor_id, place.event_id)
            if existing is not None:
                return existing
            raise
        return place

    def forget_previous(self, place: Place) -> None:
        """The place's predecessor has been dealt with (its session ended): stop remembering it."""
        with self.db.session() as session:
            session.execute(
                update(OidcPlace)
                .where(
                    OidcPlace.visitor_id == self.ids.visitor_tag(place.visitor_id),
                    OidcPlace.event_id == place.event_id,
                    OidcPlace.previous_request_id
                    == (None if place.previous_request_id is None else self.ids.request_tag(place.previous_request_id)),
                )
                .values(previous_request_id=None, previous_sealed=None)
            )

    # --- interactions ---------------------------------------------------------------------------

    def create_interaction(self, record: InteractionRecord) -> None:
        with self.db.session() as session:
            session.add(
                OidcInteraction(
                    interaction_id=record.interaction_id,
                    client_id=record.client_id,
                    event_id=record.event_id,
                    visitor_id=self.ids.visitor_tag(record.visitor_id),
                    request_id=self.ids.request_tag(record.request_id),
                    request_sealed=self.ids.seal_request(record.request_id),
                    queue_position=record.queue_position,
                    params=record.params,
                    state=record.state,
                    created_at=record.created_at,
                    updated_at=record.updated_at,
                )
            )

    def interaction(self, interaction_id: str, visitor_id: str | None = None) -> InteractionRecord | None:
        """The interaction; its ``visitor_id`` is ``visitor_id`` when that browser owns it, else empty."""
        with self.db.session(readonly=True) as session:
            row = session.get(OidcInteraction, interaction_id)
            if row is None:
                return None
            owner = ""
            if visitor_id is not None and secrets.compare_digest(row.visitor_id, self.ids.visitor_tag(visitor_id)):
                owner = visitor_id
            return _interaction(self.ids, row, owner)

    def move_interaction(self, interaction_id: str, from_states: tuple[str, ...], to_state: str) -> bool:
        """Compare-and-set the state; False when another request moved it first."""
        with self.db.session() as session:
            result = session.execute(
                update(OidcInteraction)
                .where(OidcInteraction.interaction_id == interaction_id, OidcInteraction.state.in_(from_states))
                .values(state=to_state, updated_at=self.now())
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    # --- codes ----------------------------------------------------------------------------------

    def save_code(self, code: str, *, request_id: str, **fields: Any) -> None:
        """Store a code (its digest) with the request id's tag and seal; ``fields`` name the other columns."""
        with self.db.session() as session:
            session.add(
                OidcCode(
                    code_hash=digest(code),
                    request_id=self.ids.request_tag(request_id),
                    request_sealed=self.ids.seal_request(request_id),
                    **fields,
                )
            )

    def consume_code(self, code: str, client_id: str) -> tuple[CodeRecord | None, str | None]:
        """Use a code once. Returns (record, None) the first time; (None, grant_id_to_revoke) on reuse."""
        code_hash = digest(code)
        now = self.now()
        with self.db.session() as session:
            row = session.get(OidcCode, code_hash)
            if row is None or row.client_id != client_id:
                return None, None
            if row.used_at is not None:
                return None, row.grant_id or ""
            if row.expires_at < now:
                return None, None
            result = session.execute(
                update(OidcCode).where(OidcCode.code_hash == code_hash, OidcCode.used_at.is_(None)).values(used_at=now)
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return None, ""
            return _code(self.ids, row), None

    def purge(self, codes_before: int, interactions_before: int) -> None:
        """Drop codes (kept for reuse detection) and interactions nobody can use any more."""
        with self.db.session() as session:
            session.execute(delete(OidcCode).where(OidcCode.expires_at < codes_before))
            session.execute(delete(OidcInteraction).where(OidcInteraction.created_at < interactions_before))
            session.execute(delete(OidcUsedRefreshToken).where(OidcUsedRefreshToken.expires_at < codes_before))

    # --- grants ---------------------------------------------------------------------------------

    def create_grant(self, code: CodeRecord, expires_at: int, refresh_token: str | None) -> GrantRecord:
        grant_id = new_token(18)
        now = self.now()
        with self.db.session() as session:
            row = OidcGrant(
                grant_id=grant_id,
                client_id=code.client_id,
                subject=code.subject,
                event_id=code.event_id,
                request_id=self.ids.request_tag(code.request_id),
                request_sealed=self.ids.seal_request(code.request_id),
                queue_position=code.queue_position,
                scope=code.scope,
                auth_time=code.auth_time,
                refresh_hash=digest(refresh_token) if refresh_token else None,
                created_at=now,
                expires_at=expires_at,
                revoked_at=None,
            )
            session.add(row)
            session.flush()
            session.execute(update(OidcCode).where(OidcCode.code_hash == code.code_hash).values(grant_id=grant_id))
            return _grant(self.ids, row)

    def grant_place(self, grant_id: str, client_id: str) -> str | None:
        """The request id behind a live grant of ``client_id`` (for /verify), or None."""
        grant = self.grant(grant_id)
        if grant is None or grant.is_revoked() or grant.client_id != client_id:
            return None
        return str(grant.request_id)

    def grant(self, grant_id: str) -> GrantRecord | None:
        with self.db.session(readonly=True) as session:
            row = session.get(OidcGrant, grant_id)
            return None if row is None else _grant(self.ids, row)

    def grant_by_refresh(self, refresh_token: str) -> GrantRecord | None:
        with self.db.session(readonly=True) as session:
            row = session.execute(
                select(OidcGrant).where(OidcGrant.refresh_hash == digest(refresh_token))
            ).scalar_one_or_none()
            return None if row is None else _grant(self.ids, row)

    def rotate_refresh(self, grant: GrantRecord, old_token: str, new_token_value: str) -> bool:
        """Replace the grant's refresh token; False when ``old_token`` is no longer current (used already).

        Compare-and-set on the stored digest, so two concurrent refreshes with one token cannot both win.
        """
        old_hash = digest(old_token)
        with self.db.session() as session:
            result = session.execute(
                update(OidcGrant)
                .where(
                    OidcGrant.grant_id == grant.grant_id,
                    OidcGrant.refresh_hash == old_hash,
                    OidcGrant.revoked_at.is_(None),
                )
                .values(refresh_hash=digest(new_token_value))
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return False
            session.add(
                OidcUsedRefreshToken(
                    refresh_hash=old_hash, grant_id=grant.grant_id, used_at=self.now(), expires_at=grant.expires_at
                )
            )
            return True

    def grant_of_used_refresh(self, refresh_token: str) -> str | None:
        """The grant a refresh token belonged to before rotation replaced it, or None."""
        with self.db.session(readonly=True) as session:
            row = session.get(OidcUsedRefreshToken, digest(refresh_token))
            return None if row is None else row.grant_id

    def revoke_grant(self, grant_id: str) -> None:
        with self.db.session() as session:
            session.execute(
                update(OidcGrant)
                .where(OidcGrant.grant_id == grant_id, OidcGrant.revoked_at.is_(None))
                .values(revoked_at=self.now())
            )

    def revoke_session_grants(self, event_id: str, request_id: str) -> None:
        with self.db.session() as session:
            session.execute(
                update(OidcGrant)
                .where(
                    OidcGrant.event_id == event_id,
                    OidcGrant.request_id == self.ids.request_tag(request_id),
                    OidcGrant.revoked_at.is_(None),
                )
                .values(revoked_at=self.now())
            )

    # --- the waiting-room session behind a login ------------------------------------------------

    def session_state(self, request_id: str) -> SessionState | None:
        with self.db.session(readonly=True) as session:
            row = session.get(TokenRecord, self.ids.request_tag(request_id))
            if row is None:
                return None
            return SessionState(
                row.event_id, row.queue_position, row.session_status, row.expires_at, row.issuer, self.now()
            )
