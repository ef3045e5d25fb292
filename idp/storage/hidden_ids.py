"""How visitor ids and request ids are kept in SQL: never in a form that works as a credential.

* A *tag* (``LookupKey.hex_tag``: 32 hex characters of a keyed HMAC) finds a row: the visitor id (the
  browser's cookie) under purpose ``"visitor id"``, the request id (the AWS-compatible place secret)
  under ``"request id"``, the same form the SQL queue store keeps.
* Where the service must read a request id back (to ask the queue store about the place, to end its
  session, to list expired tokens), it is also kept *sealed*: AES-256-GCM under a key derived from the
  lookup key, bound to its tag. The lookup key itself is stored sealed under IDP_SECRET_KEY, so a
  database dump alone opens nothing, and it never rotates, so nothing needs sealing again.

A visitor id is never read back: rows that need the visitor's identity for a relying party keep its
pairwise ``sub`` for that client (not a secret) instead.
"""

from __future__ import annotations

import threading

from idp.crypto import Aead, LookupKey

VISITOR_ID = "visitor id"
REQUEST_ID = "request id"


class HiddenIds:
    """Tags and seals of ids at rest, under one lookup key."""

    def __init__(self, lookup: LookupKey) -> None:
        self.lookup = lookup
        self._aead: Aead | None = None
        self._lock = threading.Lock()

    def visitor_tag(self, visitor_id: str) -> str:
        return self.lookup.hex_tag(VISITOR_ID, visitor_id)

    def request_tag(self, request_id: str) -> str:
        return self.lookup.hex_tag(REQUEST_ID, request_id)

    def _cipher(self) -> Aead:
        aead = self._aead
        if aead is None:
            with self._lock:
                # The lookup key may be read from the database on first use: not at construction.
                aead = self._aead = self._aead or Aead([self.lookup.root], "sealed request ids")
        return aead

    def seal_request(self, request_id: str) -> bytes:
        return self._cipher().seal(request_id.encode("utf-8"), self.request_tag(request_id).encode("ascii"))

    def open_request(self, tag: str, sealed: bytes) -> str:
        """The request id sealed beside ``tag``; DecryptionError when it was altered or moved."""
        return self._cipher().open(bytes(sealed), tag.encode("ascii")).decode("utf-8")
