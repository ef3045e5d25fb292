"""Secret hashing: salted, verifiable, constant-time, and a malformed stored value never matches."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idp.hashing import hash_secret, new_secret, verify_secret

pytestmark = pytest.mark.unit


@given(st.text(max_size=100))
def test_a_secret_verifies_against_its_own_hash_only(secret):
    stored = hash_secret(secret)
    assert verify_secret(secret, stored)
    assert not verify_secret(secret + "x", stored)


def test_the_same_secret_hashes_differently_each_time():
    first, second = hash_secret("s3cret"), hash_secret("s3cret")
    assert first != second
    assert verify_secret("s3cret", first) and verify_secret("s3cret", second)


def test_the_stored_form_names_its_scheme_and_never_holds_the_secret():
    secret = new_secret()
    stored = hash_secret(secret)
    assert re.fullmatch(r"sha256\$[0-9a-f]{16}\$[0-9a-f]{64}", stored)
    assert secret not in stored


def test_new_secrets_are_url_safe_and_unique():
    secrets = {new_secret() for _ in range(200)}
    assert len(secrets) == 200
    for secret in secrets:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)  # 32 random bytes
    assert len(new_secret(16)) == 22


@pytest.mark.parametrize(
    "stored",
    ["", "sha256", "sha256$", "sha256$salt", "md5$salt$digest", "plain-secret", "$$", "sha256$$", "SHA256$a$b"],
)
def test_malformed_stored_values_never_match(stored):
    assert verify_secret("plain-secret", stored) is False
    assert verify_secret("", stored) is False


def test_a_stored_value_of_another_scheme_never_matches_even_with_the_right_digest():
    stored = hash_secret("s3cret")
    assert not verify_secret("s3cret", "md5$" + stored.split("$", 1)[1])


def test_odd_candidate_secrets_do_not_raise():
    stored = hash_secret("s3cret")
    for candidate in ("", "\x00", "\ud800", "é" * 1000, "s3cret\n"):
        assert verify_secret(candidate, stored) is False
