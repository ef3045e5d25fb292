"""Key encryption and the verifier's parsing of malformed tokens, without any service."""

from __future__ import annotations

import base64
import json

import pytest
from joserfc import jws
from joserfc.jwk import RSAKey

from idp.clock import FrozenClock
from idp.config import Settings
from idp.errors import ValidationError
from idp.tokens.issuer import InvalidTokenError, TokenService
from idp.tokens.keys import KeyCipher, KeyUnavailableError, validate_alg

pytestmark = pytest.mark.unit

SECRET = "unit-test-secret-0123456789abcdef0123456789"


def test_the_cipher_round_trips_and_binds_the_key_id():
    cipher = KeyCipher(SECRET)
    blob = cipher.encrypt(b"-----BEGIN PRIVATE KEY-----\nsecret", "kid-1", "RS256")
    assert b"PRIVATE" not in blob and b"secret" not in blob
    assert cipher.decrypt(blob, "kid-1", "RS256") == b"-----BEGIN PRIVATE KEY-----\nsecret"
    # Nonces are fresh: the same plaintext never encrypts the same way twice.
    assert cipher.encrypt(b"x", "kid-1", "RS256") != cipher.encrypt(b"x", "kid-1", "RS256")
    # A blob moved to another kid or algorithm, tampered with, or read with another secret fails.
    for kid, alg, sealed, reader in (
        ("kid-2", "RS256", blob, cipher),
        ("kid-1", "ES256", blob, cipher),
        ("kid-1", "RS256", blob[:-1] + bytes([blob[-1] ^ 1]), cipher),
        ("kid-1", "RS256", blob, KeyCipher(SECRET + "x")),
        ("kid-1", "RS256", b"", cipher),
        ("kid-1", "RS256", b"\x03" + blob[1:], cipher),
        ("kid-1", "RS256", b"\x01" + blob[1:], cipher),
    ):
        with pytest.raises(KeyUnavailableError):
            reader.decrypt(sealed, kid, alg)


def _legacy_blob(secret: str, pem: bytes, kid: str, alg: str) -> bytes:
    """A private key as earlier releases stored it: 0x01 || nonce || AES-GCM under an HKDF of the secret."""
    import os

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"idp-signing-keys", info=b"idp signing key encryption v1")
    nonce = os.urandom(12)
    return b"\x01" + nonce + AESGCM(key.derive(secret.encode())).encrypt(nonce, pem, f"{kid}\x00{alg}".encode())


def test_keys_stored_by_earlier_releases_or_under_a_previous_secret_open_and_ask_to_be_sealed_again():
    legacy = _legacy_blob(SECRET, b"pem", "kid-1", "RS256")
    rotated = KeyCipher([SECRET + "-new", SECRET])
    assert KeyCipher(SECRET).decrypt(legacy, "kid-1", "RS256") == b"pem"
    assert rotated.decrypt(legacy, "kid-1", "RS256") == b"pem"
    assert rotated.needs_resealing(legacy)
    old = KeyCipher(SECRET).encrypt(b"pem", "kid-1", "RS256")
    assert rotated.decrypt(old, "kid-1", "RS256") == b"pem" and rotated.needs_resealing(old)
    fresh = rotated.encrypt(b"pem", "kid-1", "RS256")
    assert not rotated.needs_resealing(fresh)
    # The previous secret alone no longer opens what the current one sealed.
    with pytest.raises(KeyUnavailableError):
        KeyCipher(SECRET).decrypt(fresh, "kid-1", "RS256")
    with pytest.raises(KeyUnavailableError):
        KeyCipher(SECRET + "-new").decrypt(legacy, "kid-1", "RS256")


def test_a_secret_is_required():
    with pytest.raises(ValueError):
        KeyCipher("")


@pytest.mark.parametrize("alg", ["HS256", "none", "RS512", "", None, 256, ["RS256"]])
def test_only_rs256_and_es256_sign(alg):
    with pytest.raises(ValidationError):
        validate_alg(alg)


class FakeKeys:
    """Publishes one RSA key under kid 'k1'."""

    def __init__(self) -> None:
        self.private = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256"}, private=True)
        self.public = RSAKey.import_key(self.private.as_dict(private=False))

    def verification_key(self, kid: str):
        return self.public if kid == "k1" else None


@pytest.fixture(scope="module")
def fake_keys():
    return FakeKeys()


@pytest.fixture
def verifier(fake_keys):
    settings = Settings(env="test", secret_key=SECRET, database_url="sqlite://")
    return TokenService(None, None, fake_keys, FrozenClock(1_800_000_000), settings)  # type: ignore[arg-type]


def _b64(data: object) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _signed(fake_keys, claims: object, header: dict | None = None) -> str:
    head = header or {"alg": "RS256", "kid": "k1"}
    payload = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
    return jws.serialize_compact(head, payload, fake_keys.private, algorithms=["RS256"])


GOOD = {
    "aud": "sale",
    "sub": "00000000-0000-4000-8000-000000000000",
    "token_use": "access",
    "iat": 1_800_000_000,
    "nbf": 1_800_000_000,
    "exp": 1_800_003_600,
    "iss": "http://127.0.0.1:8000",
}


@pytest.mark.parametrize(
    ("token", "words"),
    [
        (None, "missing"),
        ("", "missing"),
        (12, "missing"),
        pytest.param("x" * 9000, "too long", id="too-long"),
        ("a.b", "compact"),
        ("a.b.c.d", "compact"),
        ("!!!.e30.sig", "header"),
        (_b64([1]) + ".e30.sig", "header"),
        (_b64(b"\xff") + ".e30.sig", "header"),
        pytest.param(_b64(b"[" * 2500 + b"]" * 2500) + ".e30.sig", "header", id="deeply-nested-header"),
        pytest.param(_b64(b'{"alg": 1' + b"0" * 4500 + b"}") + ".e30.sig", "header", id="huge-number-header"),
        (_b64({"alg": "HS256", "kid": "k1"}) + ".e30.sig", "algorithm"),
        (_b64({"alg": "RS256"}) + ".e30.sig", "algorithm"),
        (_b64({"alg": "RS256", "kid": "k2"}) + ".e30.sig", "unknown key"),
        (_b64({"alg": "RS256", "kid": "k1", "crit": ["b64"]}) + ".e30.sig", "critical"),
        (_b64({"alg": "RS256", "kid": "k1"}) + ".e30.sig", "signature"),
        (_b64({"alg": "RS256", "kid": "k1"}) + ".e30.", "signature"),
    ],
)
def test_malformed_tokens_are_invalid_before_any_lookup(verifier, token, words):
    with pytest.raises(InvalidTokenError) as caught:
        verifier.verify_access_token(token)
    assert caught.value.status == 401
    assert words in caught.value.message


@pytest.mark.parametrize(
    ("claims", "words"),
    [
        (b"[]", "malformed"),
        (b"not json", "malformed"),
        (b"\xff\xfe", "malformed"),
        (dict(GOOD, exp=1_800_000_000), "expired"),
        (dict(GOOD, nbf=1_800_000_001), "not valid yet"),
        (dict(GOOD, exp=None), "exp"),
        (dict(GOOD, nbf=1.5), "nbf"),
        (dict(GOOD, token_use="id"), "not an access token"),
        (dict(GOOD, aud=["sale"]), "audience"),
        (dict(GOOD, sub="nope"), "subject"),
    ],
)
def test_bad_claims_are_invalid_before_any_session_lookup(verifier, fake_keys, claims, words):
    with pytest.raises(InvalidTokenError) as caught:
        verifier.verify_access_token(_signed(fake_keys, claims))
    assert words in caught.value.message


def test_another_event_is_refused_before_any_session_lookup(verifier, fake_keys):
    with pytest.raises(InvalidTokenError) as caught:
        verifier.verify_access_token(_signed(fake_keys, GOOD), "other")
    assert "another event" in caught.value.message
