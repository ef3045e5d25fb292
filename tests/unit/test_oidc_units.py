"""Pure pieces of the OpenID Connect side: URLs, subjects, the interaction's states, discovery."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from idp.crypto import LookupKey
from idp.oidc.claims import Admission, pairwise_sub, user_claims
from idp.oidc.interaction import TRANSITIONS, Progress, State, valid_visitor_id
from idp.oidc.server import append_params

pytestmark = pytest.mark.unit

SECRET = "s" * 40
LOOKUP = LookupKey.from_secret(SECRET)


@pytest.mark.parametrize(
    ("uri", "expected_prefix"),
    [
        ("https://rp.example/cb", "https://rp.example/cb?"),
        ("https://rp.example/cb?action=a%20b&x", "https://rp.example/cb?action=a%20b&x&"),
        ("https://rp.example/cb?", "https://rp.example/cb?"),
    ],
)
def test_append_params_keeps_the_existing_query(uri: str, expected_prefix: str) -> None:
    state = "ü &=/+%?#"
    result = append_params(uri, [("code", "c"), ("state", state)])
    assert result.startswith(expected_prefix)
    assert dict(parse_qsl(urlsplit(result).query))["state"] == state


def test_append_params_puts_the_query_before_a_fragment() -> None:
    assert append_params("https://rp.example/cb#frag", [("iss", "x")]) == "https://rp.example/cb?iss=x#frag"


def test_pairwise_sub_is_stable_per_client_and_differs_across_clients_and_visitors() -> None:
    visitor, other = "v" * 43, "w" * 43
    assert pairwise_sub(LOOKUP, visitor, "a") == pairwise_sub(LOOKUP, visitor, "a")
    assert pairwise_sub(LOOKUP, visitor, "a") != pairwise_sub(LOOKUP, visitor, "b")
    assert pairwise_sub(LOOKUP, visitor, "a") != pairwise_sub(LOOKUP, other, "a")
    assert pairwise_sub(LOOKUP, visitor, "a") != pairwise_sub(LookupKey.from_secret("t" * 40), visitor, "a")
    assert len(pairwise_sub(LOOKUP, visitor, "a")) <= 255


def test_user_claims_email_only_with_the_email_scope() -> None:
    admission = Admission("v" * 43, "sale", "r", 7, 1000)
    plain = user_claims(LOOKUP, admission, "a", "openid")
    assert plain["sub"] == pairwise_sub(LOOKUP, "v" * 43, "a")
    assert plain["queue_position"] == 7 and plain["admitted_at"] == 1000 and plain["preferred_username"]
    assert "email" not in plain
    with_email = user_claims(LOOKUP, admission, "a", "openid email", email_domain="example.org")
    assert with_email["email"].endswith("@example.org") and with_email["email_verified"] is False


def test_state_machine_has_no_way_out_of_final_states() -> None:
    for final in (State.CODE_ISSUED, State.EXPIRED, State.ABANDONED):
        assert TRANSITIONS[final] == set()
    assert State.CODE_ISSUED in TRANSITIONS[State.ADMITTED]
    assert State.CODE_ISSUED not in TRANSITIONS[State.WAITING]
    assert State.ADMITTED not in TRANSITIONS[State.PARKED]


def test_poll_interval_grows_with_distance_and_stays_within_budget() -> None:
    assert Progress(State.WAITING, 2, 1).poll_after_ms == 1000
    assert Progress(State.WAITING, 100_001, 0).poll_after_ms == 60000
    assert Progress(State.ADMITTED, 5, 5).poll_after_ms == 0
    # 100,000 visitors waiting must cost at most 2,000 polls a second in total.
    total = sum(1000 / Progress(State.WAITING, ahead + 1, 0).poll_after_ms for ahead in range(100_000))
    assert total <= 2000


def test_visitor_ids_are_checked() -> None:
    assert valid_visitor_id("A" * 43) == "A" * 43
    for bad in (None, "", "A" * 42, "A" * 44, "A" * 42 + "!", 5):
        assert valid_visitor_id(bad) is None


def test_discovery_document_validates_with_authlib() -> None:
    from authlib.oauth2.rfc9207 import AuthorizationServerMetadata
    from authlib.oidc.discovery import OpenIDProviderMetadata

    from idp.oidc.views import discovery_document

    document = discovery_document("https://queue.example.com")
    OpenIDProviderMetadata(document).validate(metadata_classes=[AuthorizationServerMetadata])
    assert document["issuer"] == "https://queue.example.com"


def test_pairwise_subjects_under_the_lookup_key_equal_those_derived_from_the_secret_before() -> None:
    """Earlier releases keyed subjects with HMAC(secret, "idp pairwise subject v1"): the same values."""
    import base64
    import hashlib
    import hmac

    visitor = "v" * 43
    old_key = hmac.new(SECRET.encode(), b"idp pairwise subject v1", hashlib.sha256).digest()
    old_sub = base64.urlsafe_b64encode(hmac.new(old_key, f"{visitor}\x00a".encode(), hashlib.sha256).digest())
    assert pairwise_sub(LOOKUP, visitor, "a") == old_sub.rstrip(b"=").decode()


def test_a_session_is_active_while_open_and_unexpired_when_read() -> None:
    from idp.tokens.issuer import SessionState

    assert SessionState("sale", 1, 0, 100, "https://idp.example", read_at=99).active
    assert not SessionState("sale", 1, 0, 100, "https://idp.example", read_at=100).active
    assert not SessionState("sale", 1, 1, 100, "https://idp.example", read_at=0).active
    assert not SessionState("sale", 1, -1, 100, "https://idp.example", read_at=0).active
