"""Admin API keys: creation (the plaintext is shown once), hashed storage and scopes (the HTTP guard is
``idp.admin.auth``).

A key reads ``idpk_<key_id>_<secret>``. The key id is public (it names the key in listings and in the
audit log); the secret carries 256 random bits and only its salted hash is stored. A request's key is
looked up by its id and the secret compared in constant time.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from idp.cache import TTLCache
from idp.clock import Clock
from idp.errors import IdpError, NotFoundError, ValidationError
from idp.hashing import hash_secret, new_secret, verify_secret
from idp.storage.db import Database
from idp.storage.models import AdminKey

KEY_PREFIX = "idpk"
KEY_ID_RE = re.compile(r"\A[0-9a-f]{16}\Z")
KEY_RE = re.compile(r"\Aidpk_([0-9a-f]{16})_([A-Za-z0-9_-]{20,100})\Z")

# Every scope an admin key may hold. ``admin`` implies all of them; a write scope implies its read.
SCOPES: tuple[str, ...] = ("events:read", "events:write", "clients:write", "keys:write", "admin")
IMPLIED: dict[str, frozenset[str]] = {"events:write": frozenset({"events:read"})}
# last_used_at is written at most this often per key and process.
LAST_USED_RESOLUTION = 60


class AdminKeyNotFoundError(NotFoundError):
    code = "admin_key_not_found"
    message = "No such admin key."


class AdminAuthError(IdpError):
    """No usable key: 401 with a challenge, as RFC 6750 asks."""

    code = "unauthorized"
    status = 401
    message = "A valid admin API key is required (Authorization: Bearer <key>)."

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="admin", error="invalid_token"'}


class MissingCredentialsError(AdminAuthError):
    def headers(self) -> dict[str, str]:
        # RFC 6750 §3.1: a request without credentials gets a bare challenge.
        return {"WWW-Authenticate": 'Bearer realm="admin"'}


class InsufficientScopeError(IdpError):
    code = "insufficient_scope"
    status = 403
    message = "This admin key lacks the scope this operation needs."

    def __init__(self, scope: str) -> None:
        super().__init__(f"This admin key lacks the {scope} scope.")
        self.scope = scope

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": f'Bearer realm="admin", error="insufficient_scope", scope="{self.scope}"'}


@dataclass(frozen=True)
class AdminKeyRecord:
    key_id: str
    name: str
    scopes: list[str]
    created_at: int
    revoked_at: int | None = None
    last_used_at: int | None = None
    key_hash: str = field(default="", repr=False, compare=False)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def has_scope(self, scope: str) -> bool:
        return scope_granted(self.scopes, scope)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "name": self.name,
            "scopes": list(self.scopes),
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "last_used_at": self.last_used_at,
        }

    @classmethod
    def from_row(cls, row: AdminKey) -> AdminKeyRecord:
        return cls(
            key_id=row.key_id,
            name=row.name,
            scopes=list(row.scopes or []),
            created_at=row.created_at,
            revoked_at=row.revoked_at,
            last_used_at=row.last_used_at,
            key_hash=row.key_hash,
        )


def scope_granted(held: Iterable[str], needed: str) -> bool:
    held = set(held)
    if "admin" in held or needed in held:
        return True
    return any(needed in IMPLIED.get(scope, ()) for scope in held)


def clean_scopes(value: object) -> list[str]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not value or len(value) > len(SCOPES):
        raise ValidationError(f"scopes must be a non-empty list of: {', '.join(SCOPES)}.", code="invalid_scopes")
    for scope in value:
        if scope not in SCOPES:
            raise ValidationError(f"scopes must be a non-empty list of: {', '.join(SCOPES)}.", code="invalid_scopes")
    return list(dict.fromkeys(value))


def clean_name(value: object) -> str:
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > 200
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
    ):
        raise ValidationError("name must be 1 to 200 printable characters.", code="invalid_field")
    return value.strip()


def parse_key(presented: str) -> tuple[str, str] | None:
    match = KEY_RE.match(presented)
    return (match.group(1), match.group(2)) if match else None


class AdminKeyService:
    """Create, list, revoke and authenticate admin API keys."""

    def __init__(self, db: Database, clock: Clock, cache_ttl: float = 0.0) -> None:
        self.db = db
        self.clock = clock
        self._cache: TTLCache[AdminKeyRecord | None] = TTLCache(cache_ttl)
        self._last_used_written: dict[str, int] = {}
        self._lock = threading.Lock()

    def create(self, name: object, scopes: object, *, session: Session | None = None) -> tuple[AdminKeyRecord, str]:
        """Make a key; returns its record and the plaintext key, which is never available again.

        Pass ``session`` to create it inside a caller's transaction (with its audit record).
        """
        clean = clean_name(name)
        scope_list = clean_scopes(scopes)
        key_id = secrets.token_hex(8)
        secret = new_secret()
        plaintext = f"{KEY_PREFIX}_{key_id}_{secret}"
        row = AdminKey(
            key_id=key_id,
            key_hash=hash_secret(secret),
            name=clean,
            scopes=scope_list,
            created_at=int(self.clock.now()),
            revoked_at=None,
            last_used_at=None,
        )
        if session is not None:
            session.add(row)
            session.flush()
            return AdminKeyRecord.from_row(row), plaintext
        with self.db.session() as own:
            own.add(row)
            own.flush()
            record = AdminKeyRecord.from_row(row)
        return record, plaintext

    def get(self, key_id: object) -> AdminKeyRecord:
        if not isinstance(key_id, str) or not KEY_ID_RE.match(key_id):
            raise AdminKeyNotFoundError()
        with self.db.session(readonly=True) as session:
            row = session.get(AdminKey, key_id)
            if row is None:
                raise AdminKeyNotFoundError()
            return AdminKeyRecord.from_row(row)

    def list(self, *, limit: int = 100, after: str | None = None, include_revoked: bool = True) -> list[AdminKeyRecord]:
        with self.db.session(readonly=True) as session:
            stmt = select(AdminKey).order_by(AdminKey.key_id).limit(limit)
            if after:
                stmt = stmt.where(AdminKey.key_id > after)
            if not include_revoked:
                stmt = stmt.where(AdminKey.revoked_at.is_(None))
            return [AdminKeyRecord.from_row(row) for row in session.execute(stmt).scalars()]

    def find_by_name(self, name: str) -> AdminKeyRecord | None:
        with self.db.session(readonly=True) as session:
            row = session.execute(
                select(AdminKey).where(AdminKey.name == name, AdminKey.revoked_at.is_(None)).limit(1)
            ).scalar_one_or_none()
            return None if row is None else AdminKeyRecord.from_row(row)

    def revoke(self, key_id: object, *, session: Session | None = None) -> AdminKeyRecord:
        """Revoke a key at once; revoking a revoked key keeps its first revocation time."""
        if not isinstance(key_id, str) or not KEY_ID_RE.match(key_id):
            raise AdminKeyNotFoundError()

        def apply(s: Session) -> AdminKeyRecord:
            row = s.get(AdminKey, key_id)
            if row is None:
                raise AdminKeyNotFoundError()
            if row.revoked_at is None:
                row.revoked_at = int(self.clock.now())
            s.flush()
            return AdminKeyRecord.from_row(row)

        if session is not None:
            record = apply(session)
        else:
            with self.db.session() as own:
                record = apply(own)
        self._cache.invalidate(key_id)
        return record

    def _load(self, key_id: str) -> AdminKeyRecord | None:
        with self.db.session(readonly=True) as session:
            row = session.get(AdminKey, key_id)
            return None if row is None else AdminKeyRecord.from_row(row)

    def authenticate(self, presented: str) -> AdminKeyRecord | None:
        """Return the active key matching ``presented``, or None; never says which part was wrong."""
        parsed = parse_key(presented)
        if parsed is None:
            return None
        key_id, secret = parsed
        record = self._cache.get(key_id, lambda: self._load(key_id))
        if record is None:
            # Spend the same hashing work as a real comparison, so timing does not reveal key ids.
            verify_secret(secret, "sha256$0000000000000000$" + "0" * 64)
            return None
        if not verify_secret(secret, record.key_hash) or not record.active:
            return None
        self._touch(key_id)
        return record

    def _touch(self, key_id: str) -> None:
        """Record use at most once a minute per key and process; the UPDATE skips fresh rows too."""
        now = int(self.clock.now())
        with self._lock:
            last = self._last_used_written.get(key_id)
            if last is not None and now - last < LAST_USED_RESOLUTION:
                return
            self._last_used_written[key_id] = now
        with self.db.session() as session:
            session.execute(
                update(AdminKey)
                .where(
                    AdminKey.key_id == key_id,
                    or_(AdminKey.last_used_at.is_(None), AdminKey.last_used_at <= now - LAST_USED_RESOLUTION),
                )
                .values(last_used_at=now)
            )
