"""How the queue stores keep request ids (idp.queue.at_rest): hashes that are never request ids, seals that open."""

from __future__ import annotations

import uuid

import pytest

from idp.crypto import LookupKey
from idp.queue import at_rest
from idp.queue.redis_store import tagged_request_id

pytestmark = pytest.mark.unit

LOOKUP = LookupKey(b"k" * 32)


def test_a_redis_hash_is_never_the_raw_bytes_of_a_request_id() -> None:
    for generation in (0, 1, 7, 2**32 - 1):
        for _ in range(500):
            rid = tagged_request_id(str(uuid.uuid4()), generation)
            tag = at_rest.redis_tag(LOOKUP, rid)
            assert len(tag) == 16 and tag != uuid.UUID(rid).bytes
            # Raw bytes are only looked up for version-4 UUIDs, which every request id is and no hash is.
            assert at_rest.raw_bytes(rid) == uuid.UUID(rid).bytes
            assert at_rest.raw_bytes(str(uuid.UUID(bytes=tag))) == b""


def test_hashes_depend_on_the_lookup_key_and_match_the_shared_hex_form() -> None:
    rid = str(uuid.uuid4())
    other = LookupKey(b"o" * 32)
    assert at_rest.redis_tag(LOOKUP, rid) != at_rest.redis_tag(other, rid)
    assert at_rest.sql_tag(LOOKUP, rid) == LOOKUP.hex_tag("request id", rid)
    assert at_rest.redis_tag(LOOKUP, rid)[7:] == LOOKUP.tag("request id", rid)[7:]


def test_a_sealed_request_id_opens_only_for_its_event_key_and_hash() -> None:
    rid = str(uuid.uuid4())
    tag = at_rest.redis_tag(LOOKUP, rid)
    sealed = at_rest.seal(LOOKUP, "sale", "api:abc", tag, rid)
    assert len(sealed) == 16 and sealed != uuid.UUID(rid).bytes
    assert at_rest.unseal(LOOKUP, "sale", "api:abc", tag, sealed) == rid
    assert at_rest.unseal(LOOKUP, "other", "api:abc", tag, sealed) != rid
    assert at_rest.unseal(LOOKUP, "sale", "api:abd", tag, sealed) != rid
    assert at_rest.unseal(LookupKey(b"o" * 32), "sale", "api:abc", tag, sealed) != rid
    hex_tag = at_rest.sql_tag(LOOKUP, rid)
    assert at_rest.unseal(LOOKUP, "sale", "k", hex_tag, at_rest.seal(LOOKUP, "sale", "k", hex_tag, rid)) == rid
