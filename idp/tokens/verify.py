"""The one JWT verifier of the service, on joserfc: signature, header policy and claims.

Every JWT this service reads back is one it signed: access tokens (``/verify``, ``/userinfo``,
introspection, revocation) and ID tokens sent back as ``id_token_hint`` (``/authorize``, ``/logout``).
All go through ``verify_jwt``: joserfc's ``jwt.decode`` with a key resolved by ``kid`` among our
published keys, then a ``JWTClaimsRegistry`` of the token's kind. A refusal is a ``TokenRefused`` whose
message says why in words safe to show (it quotes nothing from the token).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    DecodeError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidPayloadError,
    JoseError,
    MissingCritHeaderError,
    UnsupportedAlgorithmError,
    UnsupportedHeaderError,
)
from joserfc.jwk import GuestProtocol, Key
from joserfc.jwt import ClaimsOption, JWTClaimsRegistry

from idp.tokens.keys import KeyManager

# The algorithms of our signing keys; anything else (HS256, none...) is refused before any key is used.
JWT_ALGS = ("RS256", "ES256")
MAX_TOKEN_CHARS = 8192
ESSENTIAL: ClaimsOption = {"essential": True}


class TokenRefused(ValueError):
    """Why a JWT was refused."""


class RefusedClaimError(ClaimError):
    """A claim refused with the whole message a caller shows."""

    error = "invalid_claim"

    def __init__(self, claim: str, message: str) -> None:
        super().__init__(claim, message)


class NotYetValidError(InvalidClaimError):
    """``nbf`` is still ahead."""


def _whole_seconds(name: str, value: object) -> None:
    # This service writes times as integers; a float, a bool or a string is no token of ours.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidClaimError(name)


class StrictClaims(JWTClaimsRegistry):
    """JWT claims as this service writes them: ``exp`` and ``nbf`` are whole seconds.

    ``iat`` is informative (``nbf`` and ``exp`` bound the validity), so it is not checked.
    """

    def validate_exp(self, value: object) -> None:
        _whole_seconds("exp", value)
        super().validate_exp(value)

    def validate_nbf(self, value: object) -> None:
        _whole_seconds("nbf", value)
        if value > self.now + self.leeway:  # type: ignore[operator]
            raise NotYetValidError("nbf")
        super().validate_nbf(value)

    def validate_iat(self, value: object) -> None:
        return None


class AccessTokenClaims(StrictClaims):
    """A waiting-room access token (``token_use`` = access), optionally for one event (``aud``)."""

    def __init__(self, now: Callable[[], int], event_id: str | None = None) -> None:
        super().__init__(now=now, exp=ESSENTIAL, nbf=ESSENTIAL, sub=ESSENTIAL, aud=ESSENTIAL)
        self.event_id = event_id

    def validate(self, claims: dict[str, Any]) -> None:
        if claims.get("token_use") != "access":
            raise RefusedClaimError("token_use", "The token is not an access token.")
        super().validate(claims)

    def validate_sub(self, value: object) -> None:
        if not isinstance(value, str):
            raise RefusedClaimError("sub", "The access token has no subject or audience.")

    def validate_aud(self, value: object) -> None:
        if not isinstance(value, str):
            raise RefusedClaimError("aud", "The access token has no subject or audience.")
        if self.event_id is not None and value != self.event_id:
            raise RefusedClaimError("aud", "The access token is for another event.")


class IdTokenHintClaims(StrictClaims):
    """An ID token of ours sent back as a hint; RP-Initiated Logout §2: an expired one is still good."""

    def __init__(self, now: Callable[[], int], issuer: str, client_id: str | None = None) -> None:
        audience: ClaimsOption = {"essential": True}
        if client_id is not None:
            audience["value"] = client_id
        super().__init__(now=now, leeway=60, iss={"essential": True, "value": issuer}, sub=ESSENTIAL, aud=audience)

    def validate_exp(self, value: object) -> None:
        return None


def verify_jwt(token: object, keys: KeyManager, registry: JWTClaimsRegistry, *, what: str = "token") -> dict[str, Any]:
    """The claims of ``token``, a compact JWS signed by one of our published keys; TokenRefused otherwise.

    The header must name one of ``JWT_ALGS`` and a ``kid`` of ours for that algorithm, and carry no
    critical parameters; the claims must satisfy ``registry``.
    """
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise TokenRefused(f"The {what} is missing or too long.")
    if token.count(".") != 2:
        raise TokenRefused(f"The {what} is not a compact JWS.")

    def key_of(obj: GuestProtocol) -> Key:
        header = obj.headers()
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in JWT_ALGS or not isinstance(kid, str):
            raise TokenRefused(f"The {what} names no usable algorithm and key.")
        if header.get("crit") is not None:
            raise TokenRefused(f"The {what} has critical header parameters.")
        key = keys.verification_key(kid)
        if key is None or key.alg != alg:
            raise TokenRefused(f"The {what} was signed by an unknown key.")
        return key

    try:
        claims = jwt.decode(token, key_of, algorithms=JWT_ALGS).claims
    except TokenRefused:
        raise
    except UnsupportedAlgorithmError:
        raise TokenRefused(f"The {what} names no usable algorithm and key.") from None
    except (MissingCritHeaderError, UnsupportedHeaderError):
        raise TokenRefused(f"The {what} has critical header parameters.") from None
    except BadSignatureError:
        raise TokenRefused(f"The {what} signature is not valid.") from None
    except InvalidPayloadError:
        raise TokenRefused(f"The {what} claims are malformed.") from None
    except DecodeError as exc:
        part = "claims are" if "payload" in str(exc.description) else "header is"
        raise TokenRefused(f"The {what} {part} malformed.") from None
    except (JoseError, ValueError, TypeError, UnicodeError, RecursionError):
        raise TokenRefused(f"The {what} header is malformed.") from None
    try:
        registry.validate(claims)
    except RefusedClaimError as exc:
        raise TokenRefused(str(exc.description)) from None
    except ExpiredTokenError:
        raise TokenRefused(f"The {what} has expired.") from None
    except NotYetValidError:
        raise TokenRefused(f"The {what} is not valid yet.") from None
    except ClaimError as exc:
        raise TokenRefused(f"The {what} has no valid {exc.claim}.") from None
    return dict(claims)


def id_token_hint_claims(
    hint: object, keys: KeyManager, *, issuer: str, now: Callable[[], int], client_id: str | None = None
) -> dict[str, Any]:
    """The claims of an ID token we issued (to ``client_id`` when given), expired or not; TokenRefused otherwise."""
    return verify_jwt(hint, keys, IdTokenHintClaims(now, issuer, client_id), what="id_token_hint")
