"""The one JWT verifier: ID tokens sent back as hints, on the same path as access tokens."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from idp.tokens.verify import TokenRefused, id_token_hint_claims, verify_jwt

pytestmark = pytest.mark.unit

ISSUER = "https://idp.example"
NOW = 1_800_000_000
RSA = RSAKey.generate_key(2048, parameters={"kid": "r1", "alg": "RS256"}, private=True)
EC = ECKey.generate_key("P-256", parameters={"kid": "e1", "alg": "ES256"}, private=True)
KEYS: Any = SimpleNamespace(verification_key={"r1": RSA, "e1": EC}.get)
CLAIMS = {"iss": ISSUER, "aud": "rp", "sub": "abc", "iat": NOW - 100, "exp": NOW - 50, "nonce": "n"}


def _signed(claims: dict[str, Any], key: Any = RSA, alg: str = "RS256", kid: str = "r1") -> str:
    return jwt.encode({"alg": alg, "kid": kid}, claims, key, algorithms=[alg])


def _hint(token: str, client_id: str | None = "rp") -> dict[str, Any]:
    return id_token_hint_claims(token, KEYS, issuer=ISSUER, now=lambda: NOW, client_id=client_id)


def test_an_expired_id_token_of_ours_is_a_good_hint_with_either_algorithm() -> None:
    assert _hint(_signed(CLAIMS))["sub"] == "abc"
    assert _hint(_signed(CLAIMS, EC, "ES256", "e1"), client_id=None)["sub"] == "abc"
    assert _hint(_signed(dict(CLAIMS, aud=["other", "rp"])))["sub"] == "abc"


@pytest.mark.parametrize(
    ("token", "words"),
    [
        (_signed(dict(CLAIMS, iss="https://elsewhere.example")), "iss"),
        (_signed(dict(CLAIMS, aud="other")), "aud"),
        (_signed({k: v for k, v in CLAIMS.items() if k != "sub"}), "sub"),
        (_signed(dict(CLAIMS, sub=5)), "sub"),
        (_signed(dict(CLAIMS, nbf=NOW + 3600)), "not valid yet"),
        (_signed(CLAIMS, EC, "ES256", "r1"), "unknown key"),
        (_signed(CLAIMS, RSAKey.generate_key(2048, private=True), kid="r1"), "signature"),
        (_signed(CLAIMS, kid="gone"), "unknown key"),
        (
            jwt.encode({"alg": "HS256", "kid": "r1"}, CLAIMS, OctKey.import_key("k" * 32), algorithms=["HS256"]),
            "algorithm",
        ),
        ("a.b", "compact"),
        ("", "missing"),
    ],
)
def test_hints_we_did_not_issue_to_this_client_are_refused(token: str, words: str) -> None:
    with pytest.raises(TokenRefused) as caught:
        _hint(token)
    message = str(caught.value)
    assert message.startswith("The id_token_hint ") and words in message


def test_refusals_never_quote_the_token() -> None:
    secret = "s3cr3t-value"
    for claims in (dict(CLAIMS, iss=secret), dict(CLAIMS, aud=secret), dict(CLAIMS, sub=[secret])):
        with pytest.raises(TokenRefused) as caught:
            _hint(_signed(claims))
        assert secret not in str(caught.value)
    with pytest.raises(TokenRefused) as caught:
        verify_jwt(secret, KEYS, jwt.JWTClaimsRegistry(), what="access token")
    assert secret not in str(caught.value)
