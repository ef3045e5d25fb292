"""Signing keys: generation, encryption at rest, rotation and the JWKS.

A key is ``active`` (signs new tokens; one per algorithm), ``retiring`` (no longer signs, still
verifies and stays in the JWKS until ``retire_after``) or ``retired`` (gone from the JWKS). Rotation
sets ``retire_after`` to now + the longest lifetime a token signed by the old key may have + a grace
period, so rotation never breaks a token that is still valid.

Private keys are stored encrypted with AES-256-GCM under a key derived from ``IDP_SECRET_KEY`` by
HKDF-SHA256; the kid and algorithm are bound in as associated data. They are never served.

Decrypted keys are cached in process; the key metadata is re-read at most every ``refresh_seconds``
so a rotation made by another process is seen within that time.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc.jwk import ECKey, Key, KeyParameters, KeySet, RSAKey
from sqlalchemy import func, select, text, update

from idp.clock import Clock
from idp.errors import IdpError, ValidationError
from idp.storage.db import Database
from idp.storage.models import Event, SigningKey, TokenRecord

ALGORITHMS = ("RS256", "ES256")
DEFAULT_ALG = "RS256"
# Tokens of the OpenID Connect side are not stored; assume they live at most this long.
DEFAULT_MIN_LIFETIME = 3600
_BLOB_VERSION = b"\x01"
_NONCE_BYTES = 12
# Any constant will do: it only serialises key creation across processes on PostgreSQL.
_PG_LOCK_ID = 0x1D9_5167


class KeyUnavailableError(IdpError):
    """A stored private key cannot be decrypted (IDP_SECRET_KEY changed?) or no key exists."""

    code = "signing_key_unavailable"
    status = 503
    message = "No usable signing key; the operator must check IDP_SECRET_KEY or run 'idp keys rotate'."

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "30"}


def validate_alg(alg: object) -> str:
    if alg not in ALGORITHMS:
        raise ValidationError(f"alg must be one of {', '.join(ALGORITHMS)}.", code="invalid_alg")
    return str(alg)


@dataclass(frozen=True)
class KeyInfo:
    """Public metadata of one key, as read from the database."""

    kid: str
    alg: str
    status: str
    public_jwk: dict[str, Any]
    created_at: int
    retiring_at: int | None
    retire_after: int | None

    def verifies_at(self, now: float) -> bool:
        if self.status == "active":
            return True
        return self.status == "retiring" and self.retire_after is not None and now < self.retire_after

    def to_dict(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "alg": self.alg,
            "status": self.status,
            "created_at": self.created_at,
            "retiring_at": self.retiring_at,
            "retire_after": self.retire_after,
        }


class KeyCipher:
    """AES-256-GCM with a key derived from the service secret."""

    def __init__(self, secret_key: str) -> None:
        if not secret_key:
            raise ValueError("a secret key is required to protect signing keys")
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=b"idp-signing-keys", info=b"idp signing key encryption v1"
        ).derive(secret_key.encode("utf-8"))
        self._aead = AESGCM(derived)

    @staticmethod
    def _aad(kid: str, alg: str) -> bytes:
        return f"{kid}\x00{alg}".encode()

    def encrypt(self, plaintext: bytes, kid: str, alg: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _BLOB_VERSION + nonce + self._aead.encrypt(nonce, plaintext, self._aad(kid, alg))

    def decrypt(self, blob: bytes, kid: str, alg: str) -> bytes:
        if not blob or blob[:1] != _BLOB_VERSION:
            raise KeyUnavailableError(f"Signing key {kid} is stored in an unknown format.")
        nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, sealed, self._aad(kid, alg))
        except InvalidTag as exc:
            raise KeyUnavailableError(
                f"Signing key {kid} cannot be decrypted: IDP_SECRET_KEY differs from the one that stored it."
            ) from exc


def _generate(alg: str) -> RSAKey | ECKey:
    if alg == "RS256":
        key: RSAKey | ECKey = RSAKey.generate_key(2048, parameters={"alg": alg, "use": "sig"}, private=True)
    else:
        key = ECKey.generate_key("P-256", parameters={"alg": alg, "use": "sig"}, private=True)
    return key


def _public_jwk(key: RSAKey | ECKey, kid: str, alg: str) -> dict[str, Any]:
    data = key.as_dict(private=False)
    public: dict[str, Any] = {"kty": data["kty"], "kid": kid, "use": "sig", "alg": alg}
    for name in ("n", "e") if data["kty"] == "RSA" else ("crv", "x", "y"):
        public[name] = data[name]
    return public


def _import_private(pem: bytes, kid: str, alg: str) -> Key:
    params: KeyParameters = {"kid": kid, "alg": alg, "use": "sig"}
    if alg == "RS256":
        return RSAKey.import_key(pem, parameters=params)
    return ECKey.import_key(pem, parameters=params)


def _import_public(jwk: dict[str, Any]) -> Key:
    if jwk.get("kty") == "RSA":
        return RSAKey.import_key(dict(jwk))
    return ECKey.import_key(dict(jwk))


class KeyManager:
    """Create, rotate, load and publish signing keys."""

    def __init__(
        self,
        db: Database,
        secret_key: str,
        clock: Clock,
        grace_seconds: int = 86400,
        *,
        refresh_seconds: float = 2.0,
        min_lifetime: int = DEFAULT_MIN_LIFETIME,
    ) -> None:
        self.db = db
        self.clock = clock
        self.grace_seconds = int(grace_seconds)
        self.refresh_seconds = refresh_seconds
        self.min_lifetime = int(min_lifetime)
        self._cipher = KeyCipher(secret_key)
        self._lock = threading.RLock()
        self._infos: list[KeyInfo] = []
        self._loaded_at: float | None = None
        self._private: dict[str, Key] = {}
        self._public: dict[str, Key] = {}

    # --- metadata ---------------------------------------------------------------------------------

    def _now(self) -> int:
        return int(self.clock.now())

    def _load(self) -> list[KeyInfo]:
        with self.db.session(readonly=True) as session:
            rows = session.execute(
                select(SigningKey).where(SigningKey.status != "retired").order_by(SigningKey.created_at)
            ).scalars()
            return [
                KeyInfo(
                    kid=row.kid,
                    alg=row.alg,
                    status=row.status,
                    public_jwk=dict(row.public_jwk),
                    created_at=row.created_at,
                    retiring_at=row.retiring_at,
                    retire_after=row.retire_after,
                )
                for row in rows
            ]

    def _infos_now(self, max_age: float | None = None) -> list[KeyInfo]:
        """The cached key metadata, re-read when older than ``max_age`` (default refresh_seconds)."""
        limit = self.refresh_seconds if max_age is None else max_age
        now = time.monotonic()
        loaded = self._loaded_at
        if loaded is not None and now - loaded < limit:
            return self._infos
        infos = self._load()
        with self._lock:
            self._infos = infos
            self._loaded_at = now
            live = {info.kid for info in infos}
            for cache in (self._private, self._public):
                for kid in [k for k in cache if k not in live]:
                    del cache[kid]
        return infos

    def invalidate(self) -> None:
        """Forget the cached metadata so the next call reads the database."""
        with self._lock:
            self._loaded_at = None

    def _active_info(self, alg: str) -> KeyInfo | None:
        active = [info for info in self._infos_now() if info.alg == alg and info.status == "active"]
        if not active:
            # Another process may have just created one; look again before creating our own.
            active = [info for info in self._infos_now(0.0) if info.alg == alg and info.status == "active"]
        # Should two ever be active (they cannot through this class), the newest wins everywhere.
        return max(active, key=lambda info: (info.created_at, info.kid)) if active else None

    def _verifying_infos(self) -> list[KeyInfo]:
        now = self.clock.now()
        return [info for info in self._infos_now() if info.verifies_at(now)]

    # --- writes -----------------------------------------------------------------------------------

    def _serialise(self, session: Any) -> None:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
        # SQLite writers already begin IMMEDIATE, which serialises them.

    def _new_row(self, alg: str, now: int) -> SigningKey:
        key = _generate(alg)
        kid = key.thumbprint()
        pem = key.as_pem(private=True)
        return SigningKey(
            kid=kid,
            alg=alg,
            status="active",
            private_key_encrypted=self._cipher.encrypt(pem, kid, alg),
            public_jwk=_public_jwk(key, kid, alg),
            created_at=now,
            retiring_at=None,
            retire_after=None,
        )

    def _retire_expired(self, session: Any, now: int) -> None:
        session.execute(
            update(SigningKey)
            .where(SigningKey.status == "retiring", SigningKey.retire_after <= now)
            .values(status="retired")
        )

    def ensure_active(self, alg: str = DEFAULT_ALG) -> str:
        """Return the active key id for ``alg``, creating a key if there is none."""
        alg = validate_alg(alg)
        info = self._active_info(alg)
        if info is not None:
            return info.kid
        now = self._now()
        with self.db.session() as session:
            self._serialise(session)
            existing = session.execute(
                select(SigningKey.kid)
                .where(SigningKey.alg == alg, SigningKey.status == "active")
                .order_by(SigningKey.created_at.desc(), SigningKey.kid.desc())
            ).first()
            if existing is not None:
                kid = str(existing[0])
            else:
                row = self._new_row(alg, now)
                session.add(row)
                kid = row.kid
        self.invalidate()
        return kid

    def _longest_lifetime(self, session: Any, kid: str, now: int) -> int:
        longest = self.min_lifetime
        validity = session.execute(select(func.max(Event.token_validity_period))).scalar()
        if validity is not None:
            longest = max(longest, int(validity))
        last_expiry = session.execute(select(func.max(TokenRecord.expires_at)).where(TokenRecord.kid == kid)).scalar()
        if last_expiry is not None:
            longest = max(longest, int(last_expiry) - now)
        return longest

    def rotate(self, alg: str = DEFAULT_ALG) -> str:
        """Make a new active key for ``alg``; the previous one keeps verifying until its tokens expire."""
        alg = validate_alg(alg)
        now = self._now()
        with self.db.session() as session:
            self._serialise(session)
            self._retire_expired(session, now)
            previous = (
                session.execute(select(SigningKey).where(SigningKey.alg == alg, SigningKey.status == "active"))
                .scalars()
                .all()
            )
            for old in previous:
                old.status = "retiring"
                old.retiring_at = now
                old.retire_after = now + self._longest_lifetime(session, old.kid, now) + self.grace_seconds
            row = self._new_row(alg, now)
            session.add(row)
            kid = row.kid
        self.invalidate()
        return kid

    # --- reads ------------------------------------------------------------------------------------

    def list_keys(self) -> list[dict[str, Any]]:
        """Every key's metadata, newest first; never a private part."""
        now = self._now()
        with self.db.session(readonly=True) as session:
            rows = session.execute(select(SigningKey).order_by(SigningKey.created_at.desc(), SigningKey.kid)).scalars()
            result = []
            for row in rows:
                status = row.status
                if status == "retiring" and row.retire_after is not None and now >= row.retire_after:
                    status = "retired"
                result.append(
                    {
                        "kid": row.kid,
                        "alg": row.alg,
                        "status": status,
                        "created_at": row.created_at,
                        "retiring_at": row.retiring_at,
                        "retire_after": row.retire_after,
                    }
                )
            return result

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The public JWK Set: active and retiring keys (a default RS256 key is created if none exists)."""
        self.ensure_active(DEFAULT_ALG)
        return {"keys": [dict(info.public_jwk) for info in self._verifying_infos()]}

    def public_jwk(self, alg: str = DEFAULT_ALG) -> dict[str, Any]:
        kid = self.ensure_active(alg)
        for info in self._infos_now():
            if info.kid == kid:
                return dict(info.public_jwk)
        raise KeyUnavailableError()  # pragma: no cover - ensure_active just stored it

    def active_kid(self, alg: str = DEFAULT_ALG) -> str:
        return self.ensure_active(alg)

    def _private_key(self, kid: str, alg: str) -> Key:
        cached = self._private.get(kid)
        if cached is not None:
            return cached
        with self.db.session(readonly=True) as session:
            row = session.get(SigningKey, kid)
            if row is None or row.alg != alg:
                raise KeyUnavailableError(f"Signing key {kid} does not exist.")
            blob = bytes(row.private_key_encrypted)
        key = _import_private(self._cipher.decrypt(blob, kid, alg), kid, alg)
        with self._lock:
            self._private[kid] = key
        return key

    def signing_key(self, alg: str = DEFAULT_ALG) -> Key:
        """The active private key of ``alg``, with its kid set."""
        alg = validate_alg(alg)
        return self._private_key(self.ensure_active(alg), alg)

    def signing_key_for(self, kid: str) -> Key | None:
        """The private key ``kid`` if it still verifies (active or retiring), else None."""
        for info in self._verifying_infos():
            if info.kid == kid:
                return self._private_key(kid, info.alg)
        return None

    def signing_keyset(self, alg: str = DEFAULT_ALG) -> KeySet:
        """A KeySet holding only the active private key of ``alg``, so joserfc always sets ``kid``."""
        return KeySet([self.signing_key(alg)])

    def verification_key(self, kid: str) -> Key | None:
        """The public key ``kid`` if it may verify tokens now; an unknown kid triggers one early refresh."""
        now = self.clock.now()
        info = next((i for i in self._infos_now() if i.kid == kid), None)
        if info is None:
            # A rotation in another process; refresh at most once a second for unknown kids.
            loaded = self._loaded_at
            if loaded is None or time.monotonic() - loaded >= min(1.0, self.refresh_seconds):
                info = next((i for i in self._infos_now(0.0) if i.kid == kid), None)
        if info is None or not info.verifies_at(now):
            return None
        cached = self._public.get(kid)
        if cached is None:
            cached = _import_public(info.public_jwk)
            with self._lock:
                self._public[kid] = cached
        return cached

    def verification_keyset(self) -> KeySet:
        """Public active and retiring keys."""
        keys = [self.verification_key(info.kid) for info in self._verifying_infos()]
        return KeySet([key for key in keys if key is not None])
