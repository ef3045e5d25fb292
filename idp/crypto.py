"""The service's symmetric cryptography, in one place: keyed hashes and authenticated encryption.

* :func:`keyed_digest` is HMAC-SHA256 under a key derived from a secret for one *purpose*, so a
  digest made for one use (a waiting-page owner tag, an opaque place value) is worthless for another.
* :class:`Aead` seals values with AES-256-GCM under the current secret and opens values sealed under
  any of the previous secrets too, so the secret can rotate without losing what was stored.

Nothing here imports Flask or touches storage.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE_BYTES = 12
_VERSION = b"\x02"


class DecryptionError(ValueError):
    """A sealed value opens under none of the known secrets, or was altered."""


def derive_key(secret: str | bytes, purpose: str, *, salt: bytes = b"idp-keys") -> bytes:
    """A 32-byte key for ``purpose`` derived from ``secret`` with HKDF-SHA256."""
    material = secret.encode("utf-8", "surrogatepass") if isinstance(secret, str) else secret
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=purpose.encode()).derive(material)


_DERIVED: dict[tuple[str | bytes, str], bytes] = {}
# A keyed HMAC per (secret, purpose) with the key already absorbed: copying it skips the key's padding
# and the two hash set-ups that ``hmac.new`` does on every call (a join hashes its request id).
_KEYED: dict[tuple[str | bytes, str], hmac.HMAC] = {}


def _cached_key(secret: str | bytes, purpose: str) -> bytes:
    key = _DERIVED.get((secret, purpose))
    if key is None:
        key = derive_key(secret, "digest " + purpose)
        if len(_DERIVED) < 256:
            _DERIVED[(secret, purpose)] = key
    return key


def keyed_digest(secret: str | bytes, purpose: str, value: str | bytes) -> bytes:
    """HMAC-SHA256 of ``value`` under a key derived from ``secret`` for ``purpose`` (32 bytes)."""
    data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    keyed = _KEYED.get((secret, purpose))
    if keyed is None:
        keyed = hmac.new(_cached_key(secret, purpose), None, hashlib.sha256)
        if len(_KEYED) < 256:
            _KEYED[(secret, purpose)] = keyed
    mac = keyed.copy()
    mac.update(data)
    return mac.digest()


Secrets = str | bytes | Sequence[str | bytes]


def secret_list(secrets: Secrets) -> list[str | bytes]:
    """``secrets`` as a list, current first: one secret may be given alone."""
    return [secrets] if isinstance(secrets, (str, bytes)) else list(secrets)


class Aead:
    """AES-256-GCM with rotatable secrets: seal under the first, open under any.

    A sealed value is ``version || key id (4 bytes) || nonce (12) || ciphertext+tag``; the key id is
    a digest of the key, so opening tries the right secret first and never guesses between many.
    ``aad`` binds a value to its place (a row id, a column name): moved elsewhere it does not open.
    """

    def __init__(self, secrets: Secrets, purpose: str) -> None:
        given = secret_list(secrets)
        if not given or not all(given):
            raise ValueError("at least one non-empty secret is required")
        self._keys: list[tuple[bytes, AESGCM]] = []
        for secret in given:
            key = derive_key(secret, "aead " + purpose)
            self._keys.append((hashlib.sha256(key).digest()[:4], AESGCM(key)))

    def seal(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        key_id, aead = self._keys[0]
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + key_id + nonce + aead.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes, aad: bytes = b"") -> bytes:
        if len(sealed) < 1 + 4 + _NONCE_BYTES + 16 or sealed[:1] != _VERSION:
            raise DecryptionError("not a sealed value of this service")
        key_id, nonce, body = sealed[1:5], sealed[5 : 5 + _NONCE_BYTES], sealed[5 + _NONCE_BYTES :]
        for candidate_id, aead in self._keys:
            if hmac.compare_digest(candidate_id, key_id):
                try:
                    return aead.decrypt(nonce, body, aad)
                except InvalidTag:
                    break
        raise DecryptionError("the value opens under none of the configured secrets")

    def is_sealed(self, value: bytes) -> bool:
        """True when ``value`` has the form of a value sealed by this class (it may still not open)."""
        return len(value) >= 1 + 4 + _NONCE_BYTES + 16 and value[:1] == _VERSION

    def needs_resealing(self, sealed: bytes) -> bool:
        """True when ``sealed`` was sealed under a previous secret (seal it again under the current)."""
        return sealed[1:5] != self._keys[0][0]


class LookupKey:
    """The key of lookup hashes (visitor ids, request ids at rest) and of pairwise subjects.

    It must never change when ``IDP_SECRET_KEY`` rotates: rows and Redis entries are found by these
    hashes and relying parties link accounts by ``sub``. ``root`` is 32 bytes; each use derives its
    own key from it by *purpose*.
    """

    __slots__ = ("_root",)

    def __init__(self, root: bytes) -> None:
        if len(root) < 32:
            raise ValueError("a lookup key needs at least 32 bytes")
        self._root = root

    @classmethod
    def from_secret(cls, secret_key: str) -> LookupKey:
        """The key as first derived from a secret (the pairwise-subject key of earlier releases)."""
        return cls(
            hmac.new(secret_key.encode("utf-8", "surrogatepass"), b"idp pairwise subject v1", hashlib.sha256).digest()
        )

    @property
    def root(self) -> bytes:
        return self._root

    def digest(self, purpose: str, value: str | bytes) -> bytes:
        """HMAC-SHA256 of ``value`` for ``purpose`` (32 bytes)."""
        return keyed_digest(self.root, purpose, value)

    def tag(self, purpose: str, value: str | bytes) -> bytes:
        """A 16-byte truncated :meth:`digest`: the binary form kept in Redis."""
        return self.digest(purpose, value)[:16]

    def hex_tag(self, purpose: str, value: str | bytes) -> str:
        """:meth:`tag` as 32 hex characters: the form kept in SQL columns."""
        return self.tag(purpose, value).hex()
