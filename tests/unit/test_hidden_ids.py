"""Ids at rest in SQL: tags in the queue stores' form, request ids sealed and bound to their tag."""

from __future__ import annotations

import uuid

import pytest

from idp.crypto import DecryptionError, LookupKey
from idp.storage.hidden_ids import HiddenIds

pytestmark = pytest.mark.unit

LOOKUP = LookupKey(b"k" * 32)


def test_tags_are_the_queue_stores_form_and_differ_by_purpose():
    ids = HiddenIds(LOOKUP)
    rid = str(uuid.uuid4())
    assert ids.request_tag(rid) == LOOKUP.tag("request id", rid).hex()
    assert len(ids.request_tag(rid)) == 32 and rid not in ids.request_tag(rid)
    assert ids.visitor_tag(rid) != ids.request_tag(rid)
    assert HiddenIds(LookupKey(b"j" * 32)).request_tag(rid) != ids.request_tag(rid)


def test_a_sealed_request_id_opens_only_beside_its_own_tag_and_under_its_lookup_key():
    ids = HiddenIds(LOOKUP)
    rid, other = str(uuid.uuid4()), str(uuid.uuid4())
    sealed = ids.seal_request(rid)
    assert rid.encode() not in sealed and uuid.UUID(rid).bytes not in sealed
    assert ids.open_request(ids.request_tag(rid), sealed) == rid
    with pytest.raises(DecryptionError):
        ids.open_request(ids.request_tag(other), sealed)
    with pytest.raises(DecryptionError):
        HiddenIds(LookupKey(b"j" * 32)).open_request(ids.request_tag(rid), sealed)
