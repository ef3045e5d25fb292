"""The stored lookup key: the root of lookup hashes (ids at rest) and pairwise subjects.

The root lives in the ``lookup_keys`` table, sealed with ``Aead(secret_keys, "lookup key")``, so it
opens under IDP_SECRET_KEY or any of IDP_PREVIOUS_SECRET_KEYS and never changes when the secret rotates:
``sub`` at every relying party and every stored lookup hash stay the same. The first start makes it
(under a lock, so processes starting together agree) with the value earlier releases derived from the
secret for pairwise subjects, ``LookupKey.from_secret``: the subjects relying parties already know
stay identical. It is derived from the *oldest* configured secret (the last of
IDP_PREVIOUS_SECRET_KEYS, else IDP_SECRET_KEY): the one an installation upgraded from ran with.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import text, update
from sqlalchemy.orm import Session

from idp.crypto import Aead, DecryptionError, LookupKey, Secrets, secret_list
from idp.errors import IdpError
from idp.storage.db import Database
from idp.storage.models import LookupKeyRecord

_ROW_ID = 1
_AAD = b"lookup_keys:1"
# Serialises the first creation across processes on PostgreSQL (SQLite writers begin IMMEDIATE).
_PG_LOCK_ID = 0x1D9_100C


class LookupKeyUnavailableError(IdpError):
    """The stored lookup key opens under none of the configured secrets."""

    code = "lookup_key_unavailable"
    status = 503
    message = (
        "The stored lookup key opens under none of the configured secrets: IDP_SECRET_KEY changed without "
        "the secret it replaced in IDP_PREVIOUS_SECRET_KEYS."
    )

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "60"}


def lookup_aead(secret_keys: Secrets) -> Aead:
    return Aead(secret_keys, "lookup key")


def load_or_create(session: Session, secret_keys: Secrets) -> LookupKey:
    """The stored lookup key, creating it in ``session`` (a write transaction) when there is none.

    A root sealed under a previous secret is sealed again under the current one."""
    keys = secret_list(secret_keys)
    aead = lookup_aead(keys)
    row = session.get(LookupKeyRecord, _ROW_ID)
    if row is None:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
        row = session.get(LookupKeyRecord, _ROW_ID, populate_existing=True)
    if row is None:
        oldest = keys[-1]
        root = LookupKey.from_secret(oldest if isinstance(oldest, str) else oldest.decode("utf-8")).root
        session.add(LookupKeyRecord(id=_ROW_ID, root_sealed=aead.seal(root, _AAD), created_at=int(time.time())))
        session.flush()
        return LookupKey(root)
    sealed = bytes(row.root_sealed)
    try:
        root = aead.open(sealed, _AAD)
    except DecryptionError as exc:
        raise LookupKeyUnavailableError() from exc
    if aead.needs_resealing(sealed):
        session.execute(
            update(LookupKeyRecord)
            .where(LookupKeyRecord.id == _ROW_ID, LookupKeyRecord.root_sealed == sealed)
            .values(root_sealed=aead.seal(root, _AAD))
        )
    return LookupKey(root)


class StoredLookupKey(LookupKey):
    """A :class:`LookupKey` whose root is read from the database on first use (and made if absent).

    The service graph is built before the database may be reachable; the first hash or subject
    reads the root (a store outage then answers 503 like any other), later ones use it from memory."""

    __slots__ = ("_db", "_secret_keys", "_lock")

    def __init__(self, db: Database, secret_keys: Secrets) -> None:  # noqa: D107 - no root yet
        self._db = db
        self._secret_keys = secret_list(secret_keys)
        self._lock = threading.Lock()

    def ensure(self) -> LookupKey:
        """Read (or make) the root now: at ``idp db upgrade`` and at the app's start."""
        with self._lock:
            if getattr(self, "_root", None) is None:
                with self._db.session() as session:
                    self._root = load_or_create(session, self._secret_keys).root
        return self

    @property
    def root(self) -> bytes:
        root: bytes | None = getattr(self, "_root", None)
        return root if root is not None else self.ensure()._root
