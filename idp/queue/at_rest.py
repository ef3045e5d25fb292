"""How the queue stores keep request ids: never readable, always found again.

A request id is the place's secret (the AWS-compatible bearer of a place). The stores keep only a keyed
hash of it, under the service's :class:`~idp.crypto.LookupKey` and the purpose ``"request id"``:

* Redis: the 16-byte :meth:`~idp.crypto.LookupKey.tag`, with the UUID version nibble cleared (byte 6,
  high four bits). A request id is always a version-4 UUID, so no hash can ever equal the raw bytes
  of a request id: entries written raw by earlier releases are still found by their raw bytes, and a
  hash copied out of a dump never works as a request id.
* SQL: the 32-hex :meth:`~idp.crypto.LookupKey.hex_tag`. Rows written by earlier releases hold the
  36-character UUID text, which no hex tag can equal.

A retried join (same idempotency key) must answer the original request id, so that one is kept
*sealed*: XOR-ed with a keyed pad bound to the event, the idempotency key and the hash. Without the
lookup key the sealed value is 16 random-looking bytes.
"""

from __future__ import annotations

import uuid

from idp.crypto import LookupKey

PURPOSE = "request id"
_SEAL_PURPOSE = "request id seal"


def redis_tag(lookup: LookupKey, request_id: str) -> bytes:
    """The 16 bytes Redis keeps for ``request_id``: never the raw bytes of any version-4 UUID."""
    tag = bytearray(lookup.tag(PURPOSE, request_id))
    tag[6] &= 0x0F
    return bytes(tag)


def sql_tag(lookup: LookupKey, request_id: str) -> str:
    """The 32 hex characters an SQL row keeps for ``request_id``."""
    return lookup.hex_tag(PURPOSE, request_id)


def raw_bytes(request_id: str) -> bytes:
    """The raw bytes an earlier release kept for ``request_id`` (b"" when it cannot be one of those)."""
    raw = uuid.UUID(request_id).bytes
    return raw if raw[6] >> 4 == 4 else b""


def _pad(lookup: LookupKey, event_id: str, idempotency_key: str, stored: bytes | str) -> bytes:
    tag = stored.hex() if isinstance(stored, bytes) else stored
    return lookup.digest(_SEAL_PURPOSE, f"{event_id}\n{idempotency_key}\n{tag}")[:16]


def seal(lookup: LookupKey, event_id: str, idempotency_key: str, stored: bytes | str, request_id: str) -> bytes:
    """``request_id`` sealed for the idempotency record of ``idempotency_key`` (16 bytes)."""
    pad = _pad(lookup, event_id, idempotency_key, stored)
    return bytes(a ^ b for a, b in zip(uuid.UUID(request_id).bytes, pad, strict=True))


def unseal(lookup: LookupKey, event_id: str, idempotency_key: str, stored: bytes | str, sealed: bytes) -> str:
    """The request id :func:`seal` sealed."""
    pad = _pad(lookup, event_id, idempotency_key, stored)
    return str(uuid.UUID(bytes=bytes(a ^ b for a, b in zip(sealed, pad, strict=True))))
