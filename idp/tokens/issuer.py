"""Admission tokens: the AWS-compatible token set, sessions, and the access-token verifier.

One ``tokens`` row per request id, created by ``INSERT ... ON CONFLICT DO NOTHING`` so concurrent first
calls store one record, count one token and record one "token_generated" notification. Every later
call rebuilds the same claims from the row and signs them again with the key that signed them first;
RS256 signatures are deterministic, so the tokens come back byte-identical with a falling
``expires_in``. (ES256 signatures are randomised: an ES256 token service returns equivalent tokens, with
the same claims and key, but not the same bytes.)

A token is valid while ``now < exp`` (RFC 7519 §4.1.4: not accepted *on or after* ``exp``); the same
boundary decides the 410 of ``issue``, the active count and the expired list.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from joserfc import jws
from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from idp.cache import TTLCache
from idp.clock import Clock
from idp.config import Settings
from idp.crypto import LookupKey
from idp.errors import ConflictError, IdpError, ValidationError
from idp.events.service import MAX_PERIOD
from idp.notify import outbox
from idp.queue.engine import PlaceState, validate_request_id
from idp.queue.waiting_room import NotServedError, PositionExpiredError, RequestNotFoundError, WaitingRoom
from idp.storage.db import Database
from idp.storage.hidden_ids import HiddenIds
from idp.storage.lookup import StoredLookupKey
from idp.storage.models import TokenRecord
from idp.tokens.keys import DEFAULT_ALG, KeyManager, KeyUnavailableError, validate_alg
from idp.tokens.verify import AccessTokenClaims, TokenRefused, verify_jwt

TOKEN_USES = ("access", "refresh", "id")
ISSUER_RE = re.compile(r"\Ahttps?://[\x21-\x7e]{1,290}\Z")
# The cursor names the last row by its expiry and its request id's tag (earlier releases: the request id).
_CURSOR_RE = re.compile(r"\A(\d{1,19}):([0-9a-f-]{32,36})\Z")


class TokenExpiredError(IdpError):
    code = "token_expired"
    status = 410
    message = "The token of this request id has expired."


class SessionFinishedError(IdpError):
    code = "session_finished"
    status = 410
    message = "The session of this request id was completed or abandoned."


class SessionStatusSetError(ConflictError):
    code = "status_already_set"
    message = "The session status of this request id is already set."


class TokenNotIssuedError(RequestNotFoundError):
    code = "token_not_found"
    message = "No token was issued for this request id."


class InvalidTokenError(IdpError):
    """Any reason an access token is refused; the message says which, the code stays the same."""

    code = "invalid_token"
    status = 401
    message = "The access token is not valid."

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def sign_jwt(claims: dict[str, Any], keys: KeyManager, alg: str = DEFAULT_ALG, *, kid: str | None = None) -> str:
    """Sign ``claims`` as a compact JWS with header ``{"typ": "JWT", "alg", "kid"}``.

    ``kid`` picks a particular (active or retiring) key; by default the active key of ``alg`` signs.
    """
    if kid is None:
        key = keys.signing_key(alg)
    else:
        found = keys.signing_key_for(kid)
        if found is None:
            raise KeyUnavailableError(f"Signing key {kid} no longer signs.")
        key = found
    key_alg = str(key.alg or alg)
    header = {"typ": "JWT", "alg": key_alg, "kid": key.kid}
    payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return jws.serialize_compact(header, payload, key, algorithms=[key_alg])


@dataclass(frozen=True)
class SessionState:
    """A place's waiting-room session (its token record) as read at ``read_at``.

    The one description of a visitor's session, for the token side and the sign-in side alike
    (``idp.oidc.records`` reads it for the interaction, the grants and the waiting pages)."""

    event_id: str
    queue_position: int
    session_status: int  # 0 open, 1 completed, -1 abandoned
    expires_at: int
    # IDP_ISSUER, or the override an operator gave at issuance.
    issuer: str
    read_at: int = 0

    @property
    def active(self) -> bool:
        """Open and not expired when read: the session can still lead to a login."""
        return self.session_status == 0 and self.expires_at > self.read_at


def _validity(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PERIOD:
        raise ValidationError(f"validity_period must be an integer from 1 to {MAX_PERIOD}.", code="invalid_validity")
    return value


def _issuer(value: object) -> str:
    if not isinstance(value, str) or not ISSUER_RE.match(value) or value.endswith("/"):
        raise ValidationError("issuer must be an http(s) URL without a trailing slash.", code="invalid_issuer")
    return value


class TokenService:
    """Issue token sets, finish sessions, count and list tokens, verify access tokens."""

    def __init__(
        self,
        db: Database,
        room: WaitingRoom,
        keys: KeyManager,
        clock: Clock,
        settings: Settings,
        *,
        alg: str = DEFAULT_ALG,
        grant_places: Callable[[str, str], str | None] | None = None,
        lookup: LookupKey | None = None,
    ) -> None:
        self.db = db
        # The tokens table keys rows by the request id's lookup tag and keeps the request id sealed.
        self.ids = HiddenIds(lookup if lookup is not None else StoredLookupKey(db, settings.secret_keys))
        self.room = room
        self.keys = keys
        self.clock = clock
        self.settings = settings
        self.alg = validate_alg(alg)
        self._sessions: TTLCache[SessionState | None] = TTLCache(settings.session_cache_seconds)
        # From the OpenID Connect records: (grant id, client id) -> the request id of a live grant, or
        # None. Tokens given to relying parties name their grant, never the place's request id.
        self.grant_places = grant_places

    def forget_sessions(self) -> None:
        """Drop this process's short cache of session states (other processes follow within its TTL)."""
        self._sessions.invalidate()

    def delete_event_tokens(self, event_id: str, session: Session) -> int:
        """Remove every token of the event inside the caller's transaction (its reset or deletion).

        The caller calls ``forget_sessions`` once committed, so removed tokens stop verifying here at once.
        """
        result = cast("CursorResult[Any]", session.execute(delete(TokenRecord).where(TokenRecord.event_id == event_id)))
        return int(result.rowcount or 0)

    def _now(self) -> int:
        return int(self.clock.now())

    # --- issuance ---------------------------------------------------------------------------------

    def issue(
        self, event_id: object, request_id: object, *, issuer: object = None, validity: object = None
    ) -> dict[str, Any]:
        """Return the token set of ``request_id``; the first call creates it, later calls repeat it.

        202 NotServedError while waiting; 410 when the position expired unclaimed, the session finished
        or the token expired; 404 for an unknown event or request id. ``issuer`` and ``validity`` apply
        to the first issuance only.
        """
        event = self.room.events.get(event_id)
        rid = validate_request_id(request_id)
        iss = self.settings.issuer if issuer is None else _issuer(issuer)
        lifetime = event.token_validity_period if validity is None else _validity(validity)
        row = self._read(rid)
        if row is None:
            _, status = self.room.claim(event.event_id, rid)
            if status.state is PlaceState.WAITING:
                raise NotServedError()
            if status.state is PlaceState.EXPIRED:
                raise PositionExpiredError()
            if status.state is not PlaceState.CLAIMED or status.entry is None:
                raise RequestNotFoundError()
            row = self._insert(event.event_id, rid, status.entry.position, iss, lifetime)
        if row.event_id != event.event_id:
            raise RequestNotFoundError()
        return self._token_set(row, rid)

    def has_tokens(self, request_id: object) -> bool:
        """True when ``request_id`` already has its token record (a repeat call, which costs no new token)."""
        try:
            rid = validate_request_id(request_id)
        except ValidationError:
            return False
        return self._read(rid) is not None

    def request_tag(self, request_id: str) -> str:
        """The key of a request id's row in the tokens table (its lookup tag, never the request id)."""
        return self.ids.request_tag(request_id)

    def _read(self, request_id: str) -> TokenRecord | None:
        with self.db.session(readonly=True) as session:
            return session.get(TokenRecord, self.ids.request_tag(request_id))

    def _insert(self, event_id: str, request_id: str, position: int, issuer: str, lifetime: int) -> TokenRecord:
        now = self._now()
        tag = self.ids.request_tag(request_id)
        values = {
            "request_id": tag,
            "request_sealed": self.ids.seal_request(request_id),
            "event_id": event_id,
            "queue_position": position,
            "issued_at": now,
            "not_before": now,
            "expires_at": now + lifetime,
            "issuer": issuer,
            "kid": self.keys.ensure_active(self.alg),
            "jti": uuid.uuid4().hex,
            "session_status": 0,
            "finished_at": None,
        }
        with self.db.session() as session:
            dialect = session.get_bind().dialect.name
            builder = pg_insert if dialect == "postgresql" else sqlite_insert
            stmt = builder(TokenRecord).values(**values).on_conflict_do_nothing(index_elements=["request_id"])
            created = session.execute(stmt).rowcount == 1  # type: ignore[attr-defined]
            if created:
                payload = {"event_id": event_id, "place": self.place_reference(event_id, request_id)}
                outbox.record(session, event_id, "token_generated", payload, now=now)
            stmt_read = select(TokenRecord).where(TokenRecord.request_id == tag)
            row = session.execute(stmt_read.execution_options(populate_existing=True)).scalar_one()
            session.expunge(row)
        return row

    def claims(self, row: TokenRecord, token_use: str, request_id: str) -> dict[str, Any]:
        return {
            "aud": row.event_id,
            # AWS compatibility: the visitor's own token set names its place (the row keeps only a tag).
            "sub": request_id,
            "queue_position": row.queue_position,
            "token_use": token_use,
            "iat": row.issued_at,
            "nbf": row.not_before,
            "exp": row.expires_at,
            "iss": row.issuer,
            "jti": f"{row.jti}-{token_use}",
        }

    def _token_set(self, row: TokenRecord, request_id: str) -> dict[str, Any]:
        if row.session_status != 0:
            raise SessionFinishedError()
        now = self._now()
        if now >= row.expires_at:
            raise TokenExpiredError()
        tokens = {use: sign_jwt(self.claims(row, use, request_id), self.keys, kid=row.kid) for use in TOKEN_USES}
        return {
            "access_token": tokens["access"],
            "refresh_token": tokens["refresh"],
            "id_token": tokens["id"],
            "token_type": "Bearer",
            "expires_in": row.expires_at - now,
        }

    # --- sessions ---------------------------------------------------------------------------------

    def update_session(self, event_id: object, request_id: object, status: object) -> dict[str, Any]:
        """Mark a session completed (1) or abandoned (-1), once: 404 without a token, 409 if already set."""
        if isinstance(status, bool) or not isinstance(status, int) or status not in (1, -1):
            raise ValidationError("status must be 1 (completed) or -1 (abandoned).", code="invalid_status")
        outcome = status
        event = self.room.events.get(event_id)
        rid = validate_request_id(request_id)
        tag = self.ids.request_tag(rid)
        now = self._now()
        label = "completed" if outcome == 1 else "abandoned"
        with self.db.session() as session:
            result = session.execute(
                update(TokenRecord)
                .where(
                    TokenRecord.request_id == tag,
                    TokenRecord.event_id == event.event_id,
                    TokenRecord.session_status == 0,
                )
                .values(session_status=outcome, finished_at=now)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                exists = session.execute(
                    select(TokenRecord.request_id).where(
                        TokenRecord.request_id == tag, TokenRecord.event_id == event.event_id
                    )
                ).first()
                if exists is None:
                    raise TokenNotIssuedError()
                raise SessionStatusSetError()
            outbox.record(
                session,
                event.event_id,
                "session_updated",
                {"event_id": event.event_id, "place": self.place_reference(event.event_id, rid), "status": label},
                now=now,
            )
        self._sessions.invalidate(rid)
        self.room.record_session(event.event_id, outcome)
        return {"event_id": event.event_id, "request_id": rid, "status": outcome, "finished_at": now}

    def active_count(self, event_id: object) -> int:
        """Tokens of the event that have not expired and whose session is not finished."""
        event = self.room.events.get(event_id)
        now = self._now()
        with self.db.session(readonly=True) as session:
            count = session.execute(
                select(func.count())
                .select_from(TokenRecord)
                .where(
                    TokenRecord.event_id == event.event_id,
                    TokenRecord.expires_at > now,
                    TokenRecord.session_status == 0,
                )
            ).scalar_one()
        return int(count)

    def expired_request_ids(
        self, event_id: object, limit: object = 100, cursor: object = None
    ) -> tuple[list[str], str | None]:
        """Request ids whose tokens expired (any session status), oldest expiry first, by keyset pages."""
        event = self.room.events.get(event_id)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ValidationError("limit must be an integer from 1 to 1000.", code="invalid_limit")
        after: tuple[int, str] | None = None
        if cursor is not None and cursor != "":
            match = _CURSOR_RE.match(cursor) if isinstance(cursor, str) else None
            if match is None:
                raise ValidationError("cursor is not one this service returned.", code="invalid_cursor")
            after = (int(match.group(1)), match.group(2))
        now = self._now()
        stmt = (
            select(TokenRecord.expires_at, TokenRecord.request_id, TokenRecord.request_sealed)
            .where(TokenRecord.event_id == event.event_id, TokenRecord.expires_at <= now)
            .order_by(TokenRecord.expires_at, TokenRecord.request_id)
            .limit(limit + 1)
        )
        if after is not None:
            stmt = stmt.where(
                or_(
                    TokenRecord.expires_at > after[0],
                    and_(TokenRecord.expires_at == after[0], TokenRecord.request_id > after[1]),
                )
            )
        with self.db.session(readonly=True) as session:
            rows = session.execute(stmt).all()
        page = rows[:limit]
        next_cursor = f"{page[-1][0]}:{page[-1][1]}" if len(rows) > limit else None
        return [self.ids.open_request(r[1], r[2]) for r in page], next_cursor

    # --- verification -----------------------------------------------------------------------------

    def _session(self, request_id: str) -> SessionState | None:
        def load() -> SessionState | None:
            row = self._read(request_id)
            if row is None:
                return None
            return SessionState(
                row.event_id, row.queue_position, row.session_status, row.expires_at, row.issuer, self._now()
            )

        return self._sessions.get(request_id, load)

    def verify_access_token(self, token: object, event_id: str | None = None) -> dict[str, Any]:
        """Return the claims of a valid waiting-room access token or raise InvalidTokenError (401)."""
        return self.verify_place_token(token, event_id)[0]

    def place_reference(self, event_id: str, request_id: str) -> str:
        """An opaque, stable value for one place: safe to hand to origins and subscribers.

        No endpoint accepts it as a credential, and it cannot be turned back into the request id."""
        # Under the lookup key: the same value for a place whatever secret rotation happens meanwhile.
        digest = self.ids.lookup.digest("place reference", f"{event_id}\x00{request_id}")
        return digest[:16].hex()

    def verify_place_token(self, token: object, event_id: str | None = None) -> tuple[dict[str, Any], str]:
        """The claims of a valid access token and the request id of its place; InvalidTokenError otherwise."""
        try:
            claims = verify_jwt(token, self.keys, AccessTokenClaims(self._now, event_id), what="access token")
        except TokenRefused as exc:
            raise InvalidTokenError(str(exc)) from None
        return self._check_session(claims)

    def _place_of(self, claims: dict[str, Any], sub: str) -> str:
        """The request id behind a token: its ``sub``, or for a relying party's token its grant's place."""
        grant_id = claims.get("gid")
        if grant_id is None:
            try:
                return validate_request_id(sub)
            except ValidationError:
                raise InvalidTokenError("The access token has no valid subject.") from None
        resolve = self.grant_places
        client_id = claims.get("client_id")
        if resolve is None or not isinstance(grant_id, str) or not isinstance(client_id, str) or len(grant_id) > 64:
            raise InvalidTokenError("The access token names no usable grant.")
        request_id = resolve(grant_id, client_id)
        if request_id is None:
            raise InvalidTokenError("The access token has been revoked.")
        return request_id

    def _check_session(self, claims: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """The place behind verified claims, refused once its session is unknown, finished or re-issued."""
        rid = self._place_of(claims, claims["sub"])
        state = self._session(rid)
        if state is None or state.event_id != claims["aud"]:
            raise InvalidTokenError("The access token belongs to no known session.")
        if claims.get("iss") != state.issuer:
            raise InvalidTokenError("The access token has the wrong issuer.")
        if state.session_status != 0:
            raise InvalidTokenError("The session of this access token has finished.")
        return claims, rid
