"""Signing keys: generation, encryption at rest, rotation and the JWKS.

A key is ``next`` (published in the JWKS, not signing yet), ``active`` (signs new tokens; one per
algorithm), ``retiring`` (no longer signs, still verifies and stays in the JWKS until ``retire_after``)
or ``retired`` (gone from the JWKS). A key is published before any instance signs with it: rotation
stores the new key as ``next`` with ``active_from`` = now + the key refresh interval + the JWKS cache
lifetime, so every instance and every cache has it by then; the old key signs until that moment and
then verifies until the longest lifetime a token it signed may have + a grace period, so rotation never
breaks a token that is still valid. Which key signs is decided from the clock and the stored times,
the same in every process. The first keys of both algorithms are made before the service answers
(``idp db upgrade``, ``idp serve`` and the app's start, under a lock).

Private keys are stored sealed by :class:`idp.crypto.Aead` (AES-256-GCM) under ``IDP_SECRET_KEY``; the
kid and algorithm are bound in as associated data. Keys sealed under a secret listed in
``IDP_PREVIOUS_SECRET_KEYS`` (or in the format of earlier releases) still open and are sealed again
under the current secret. They are never served.

Decrypted keys are cached in process; the key metadata is re-read at most every ``refresh_seconds``
so a rotation made by another process is seen within that time.
"""

from __future__ import annotations

import math
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
from idp.crypto import Aead, DecryptionError, Secrets, secret_list
from idp.errors import IdpError, ValidationError
from idp.storage.db import Database
from idp.storage.models import Event, SigningKey, TokenRecord

ALGORITHMS = ("RS256", "ES256")
DEFAULT_ALG = "RS256"
# Tokens of the OpenID Connect side are not stored; assume they live at most this long.
DEFAULT_MIN_LIFETIME = 3600
# Private keys stored by earlier releases start with this byte (one AES-GCM key, no key id).
_LEGACY_VERSION = b"\x01"
_NONCE_BYTES = 12
# How long caches (CDNs, relying parties) may keep /jwks.json.
JWKS_MAX_AGE = 300
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
    active_from: int | None = None

    @property
    def signs_from(self) -> int:
        return self.created_at if self.active_from is None else self.active_from

    def verifies_at(self, now: float) -> bool:
        """Published and accepted now: next, active or retiring, until ``retire_after``."""
        if self.status not in ("next", "active", "retiring"):
            return False
        if self.retire_after is not None and now >= self.retire_after:
            return False
        return self.status != "retiring" or self.retire_after is not None

    def may_sign_at(self, now: float) -> bool:
        return self.status in ("next", "active") and self.signs_from <= now and self.verifies_at(now)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "alg": self.alg,
            "status": self.status,
            "created_at": self.created_at,
            "active_from": self.signs_from,
            "retiring_at": self.retiring_at,
            "retire_after": self.retire_after,
        }


def signer_of(infos: list[KeyInfo], alg: str, now: float) -> KeyInfo | None:
    """The key that signs ``alg`` at ``now``: the most recently activated one that may sign."""
    candidates = [info for info in infos if info.alg == alg and info.may_sign_at(now)]
    return max(candidates, key=lambda i: (i.signs_from, i.created_at, i.kid)) if candidates else None


def effective_status(info: KeyInfo, infos: list[KeyInfo], now: float) -> str:
    """What a key is at ``now``, whatever its stored status says (activation and retirement are timed)."""
    if not info.verifies_at(now):
        return "retired"
    if info.status in ("next", "active") and info.signs_from > now:
        return "next"
    signer = signer_of(infos, info.alg, now)
    return "active" if signer is not None and signer.kid == info.kid else "retiring"


class KeyCipher:
    """Private keys at rest: :class:`idp.crypto.Aead` under the service secrets (current first).

    Keys stored by earlier releases (format ``\x01 || nonce || ciphertext``, one AES-GCM key derived
    from the secret) still open; :meth:`needs_resealing` says when to store them again in the current form.
    """

    def __init__(self, secret_keys: Secrets) -> None:
        secrets = secret_list(secret_keys)
        if not secrets or not all(secrets):
            raise ValueError("a secret key is required to protect signing keys")
        self._aead = Aead(secrets, "signing keys")
        self._legacy = [
            AESGCM(
                HKDF(
                    algorithm=hashes.SHA256(),
                    length=32,
                    salt=b"idp-signing-keys",
                    info=b"idp signing key encryption v1",
                ).derive(secret.encode("utf-8") if isinstance(secret, str) else secret)
            )
            for secret in secrets
        ]

    @staticmethod
    def _aad(kid: str, alg: str) -> bytes:
        return f"{kid}\x00{alg}".encode()

    def encrypt(self, plaintext: bytes, kid: str, alg: str) -> bytes:
        return self._aead.seal(plaintext, self._aad(kid, alg))

    def needs_resealing(self, blob: bytes) -> bool:
        """True for a key stored in the earlier format or under a previous secret."""
        return blob[:1] == _LEGACY_VERSION or self._aead.needs_resealing(blob)

    def decrypt(self, blob: bytes, kid: str, alg: str) -> bytes:
        if blob[:1] == _LEGACY_VERSION:
            nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
            for legacy in self._legacy:
                try:
                    return legacy.decrypt(nonce, sealed, self._aad(kid, alg))
                except InvalidTag:
                    continue
        elif self._aead.is_sealed(blob):
            try:
                return self._aead.open(blob, self._aad(kid, alg))
            except DecryptionError:
                pass
        else:
            raise KeyUnavailableError(f"Signing key {kid} is stored in an unknown format.")
        raise KeyUnavailableError(
            f"Signing key {kid} cannot be decrypted: neither IDP_SECRET_KEY nor IDP_PREVIOUS_SECRET_KEYS "
            "holds the secret that stored it."
        )


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
        secret_keys: Secrets,
        clock: Clock,
        grace_seconds: int = 86400,
        *,
        refresh_seconds: float = 2.0,
        min_lifetime: int = DEFAULT_MIN_LIFETIME,
        jwks_max_age: int = JWKS_MAX_AGE,
    ) -> None:
        self.db = db
        self.clock = clock
        self.grace_seconds = int(grace_seconds)
        self.refresh_seconds = refresh_seconds
        # A new key signs only once every process has re-read the keys and every JWKS cache has expired.
        self.activation_delay = math.ceil(refresh_seconds) + int(jwks_max_age) + 1
        self.min_lifetime = int(min_lifetime)
        self._cipher = KeyCipher(secret_keys)
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
                    active_from=row.active_from,
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
        now = self.clock.now()
        info = signer_of(self._infos_now(), alg, now)
        if info is None:
            # Another process may have just created one; look again before creating our own.
            info = signer_of(self._infos_now(0.0), alg, now)
        return info

    def _verifying_infos(self) -> list[KeyInfo]:
        now = self.clock.now()
        return [info for info in self._infos_now() if info.verifies_at(now)]

    # --- writes -----------------------------------------------------------------------------------

    def _serialise(self, session: Any) -> None:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
        # SQLite writers already begin IMMEDIATE, which serialises them.

    def _new_row(self, alg: str, now: int, *, status: str = "active", active_from: int | None = None) -> SigningKey:
        key = _generate(alg)
        kid = key.thumbprint()
        pem = key.as_pem(private=True)
        return SigningKey(
            kid=kid,
            alg=alg,
            status=status,
            private_key_encrypted=self._cipher.encrypt(pem, kid, alg),
            public_jwk=_public_jwk(key, kid, alg),
            created_at=now,
            retiring_at=None,
            retire_after=None,
            active_from=active_from,
        )

    def _retire_expired(self, session: Any, now: int) -> None:
        session.execute(
            update(SigningKey)
            .where(SigningKey.status != "retired", SigningKey.retire_after <= now)
            .values(status="retired")
        )

    @staticmethod
    def _row_info(row: SigningKey) -> KeyInfo:
        return KeyInfo(
            row.kid,
            row.alg,
            row.status,
            dict(row.public_jwk),
            row.created_at,
            row.retiring_at,
            row.retire_after,
            row.active_from,
        )

    def ensure_active(self, alg: str = DEFAULT_ALG) -> str:
        """Return the key id that signs ``alg`` now, creating a key (signing at once) if there is none.

        Called for both algorithms before the service answers, so the lazy creation is a fallback."""
        alg = validate_alg(alg)
        info = self._active_info(alg)
        if info is not None:
            return info.kid
        now = self._now()
        with self.db.session() as session:
            self._serialise(session)
            rows = session.execute(select(SigningKey).where(SigningKey.alg == alg)).scalars().all()
            existing = signer_of([self._row_info(row) for row in rows], alg, now)
            if existing is not None:
                kid = existing.kid
            else:
                row = self._new_row(alg, now)
                session.add(row)
                kid = row.kid
        self.invalidate()
        return kid

    def ensure_all(self) -> dict[str, str]:
        """Make sure a key of every algorithm exists (first start): {alg: kid}."""
        return {alg: self.ensure_active(alg) for alg in ALGORITHMS}

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
        """Publish a new key for ``alg``; it signs from ``active_from(kid)`` on.

        This process lists it at once, every other instance within ``refresh_seconds``: before it signs.

        Until then the current key signs; afterwards it verifies until its tokens have expired. A key
        from an earlier rotation that has not started signing yet is withdrawn (it never signed)."""
        alg = validate_alg(alg)
        now = self._now()
        activation = now + self.activation_delay
        with self.db.session() as session:
            self._serialise(session)
            self._retire_expired(session, now)
            rows = (
                session.execute(select(SigningKey).where(SigningKey.alg == alg, SigningKey.status != "retired"))
                .scalars()
                .all()
            )
            if signer_of([self._row_info(row) for row in rows], alg, now) is None:
                # Nothing signs this algorithm yet, so no instance can be ahead of the others: sign at once.
                activation = now
            for old in rows:
                info = self._row_info(old)
                if old.status == "next" and info.signs_from > now:
                    old.status, old.retiring_at, old.retire_after = "retired", now, now
                elif old.retire_after is None:
                    old.retiring_at = activation
                    old.retire_after = (
                        activation + self._longest_lifetime(session, old.kid, activation) + self.grace_seconds
                    )
            if activation == now:
                row = self._new_row(alg, now)
            else:
                row = self._new_row(alg, now, status="next", active_from=activation)
            session.add(row)
            kid = row.kid
        self.invalidate()
        return kid

    def active_from(self, kid: str) -> int | None:
        """When ``kid`` signs (or signed) from; None for an unknown key."""
        with self.db.session(readonly=True) as session:
            row = session.get(SigningKey, kid)
            return None if row is None else self._row_info(row).signs_from

    # --- reads ------------------------------------------------------------------------------------

    def list_keys(self) -> list[dict[str, Any]]:
        """Every key's metadata, newest first; never a private part."""
        now = self._now()
        with self.db.session(readonly=True) as session:
            rows = session.execute(select(SigningKey).order_by(SigningKey.created_at.desc(), SigningKey.kid)).scalars()
            infos = [self._row_info(row) for row in rows]
        live = [info for info in infos if info.status != "retired"]
        return [{**info.to_dict(), "status": effective_status(info, live, now)} for info in infos]

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The public JWK Set: next, active and retiring keys (an RS256 key is created if none exists)."""
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
        pem = self._cipher.decrypt(blob, kid, alg)
        if self._cipher.needs_resealing(blob):
            self._reseal(kid, alg, blob, pem)
        key = _import_private(pem, kid, alg)
        with self._lock:
            self._private[kid] = key
        return key

    def _reseal(self, kid: str, alg: str, blob: bytes, pem: bytes) -> None:
        """Store a key opened under a previous secret (or format) again under the current secret."""
        with self.db.session() as session:
            session.execute(
                update(SigningKey)
                .where(SigningKey.kid == kid, SigningKey.private_key_encrypted == blob)
                .values(private_key_encrypted=self._cipher.encrypt(pem, kid, alg))
            )

    def reseal_all(self) -> int:
        """Seal every stored key not yet under the current secret again (at start); returns how many."""
        with self.db.session(readonly=True) as session:
            rows = [
                (row.kid, row.alg, bytes(row.private_key_encrypted))
                for row in session.execute(select(SigningKey).where(SigningKey.status != "retired")).scalars()
            ]
        count = 0
        for kid, alg, blob in rows:
            if self._cipher.needs_resealing(blob):
                self._reseal(kid, alg, blob, self._cipher.decrypt(blob, kid, alg))
                count += 1
        return count

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
