"""The join gate: stateless proof-of-work challenges, captcha checks, single-use passes and decoy places.

Everything here is signed with a key derived from ``IDP_SECRET_KEY``; nothing is stored to hand out a
challenge. Formats (fields joined by ``~``, which no event id contains):

* challenge ``c1~<event>~<client>~<expires>~<difficulty>~<nonce>~<mac>``: solved by a decimal string
  ``s`` such that ``SHA-256("<challenge>:<s>")`` starts with ``difficulty`` zero bits. ``client`` is a
  short keyed hash of the client's address, so a solution works only from where it was asked for.
* pass ``g1~<event>~<client>~<expires>~<kind>~<nonce>~<mac>``: what a browser gets for a solved
  challenge or a passed captcha (an HttpOnly cookie), spent by its join.

Single use: a challenge or pass is spent by storing its nonce until it expires (Redis ``SET NX EX``, or a
row of ``spent_challenges``); a second use is refused as a replay.

A decoy request id (the "infinite queue") is shaped like a real one and carries its fake position under a
MAC, so every later call for it can answer "still waiting" without storing anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Protocol

from idp.errors import IdpError, UnavailableError

CHALLENGE_TTL_SECONDS = 120
PASS_TTL_SECONDS = 120
DEFAULT_DIFFICULTY = 16
MIN_DIFFICULTY = 1
MAX_DIFFICULTY = 32
MAX_TOKEN_CHARS = 400
SOLUTION_RE = re.compile(r"\A[0-9]{1,20}\Z")
NONCE_RE = re.compile(r"\A[A-Za-z0-9_-]{16,32}\Z")


class ChallengeRequiredError(IdpError):
    """The event's gate wants a solved challenge (or a captcha token) with the join."""

    code = "challenge_required"
    status = 403
    message = "This waiting room asks for a solved challenge before it gives a place; the challenge is attached."

    def __init__(self, challenge: dict[str, object], message: str | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.challenge = challenge

    def to_dict(self) -> dict[str, object]:
        return {"error": self.code, "message": self.message, "challenge": self.challenge}


class ChallengeFailedError(ChallengeRequiredError):
    """The solution or captcha token was wrong, expired, from another client or already used."""

    code = "challenge_failed"
    message = (
        "The challenge solution is not valid (wrong, expired, for another client or already used); "
        "a new challenge is attached."
    )


class CaptchaUnavailableError(UnavailableError):
    code = "captcha_unavailable"
    message = "The human check cannot be verified right now; retry shortly."


class SpentSet(Protocol):
    """Remember a nonce until ``expires_at``; False when it was already there (a replay)."""

    def spend(self, nonce: str, expires_at: int) -> bool: ...


def leading_zero_bits(digest: bytes) -> int:
    bits = 0
    for byte in digest:
        if byte == 0:
            bits += 8
            continue
        return bits + 8 - byte.bit_length()
    return bits


def solves(challenge: str, solution: str, difficulty: int) -> bool:
    """True when ``solution`` is a proof of work of ``difficulty`` bits for ``challenge``."""
    digest = hashlib.sha256(f"{challenge}:{solution}".encode()).digest()
    return leading_zero_bits(digest) >= difficulty


def solve(challenge: str, difficulty: int) -> str:
    """Find a solution (what a browser's script does; used by tests and API client examples)."""
    counter = 0
    while not solves(challenge, str(counter), difficulty):
        counter += 1
    return str(counter)


@dataclass(frozen=True)
class Signed:
    kind: str
    event_id: str
    client: str
    expires_at: int
    detail: str
    nonce: str


class Signer:
    """Make and check the signed challenge, pass and decoy values of the module docstring."""

    def __init__(self, secret_key: str) -> None:
        self._key = hmac.new(secret_key.encode(), b"idp join gate v1", hashlib.sha256).digest()

    def _mac(self, text: str) -> str:
        digest = hmac.new(self._key, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:18]).decode()

    def client_tag(self, address: str) -> str:
        return hmac.new(self._key, b"client:" + address.encode(), hashlib.sha256).hexdigest()[:12]

    def make(self, kind: str, event_id: str, address: str, expires_at: int, detail: str) -> str:
        nonce = secrets.token_urlsafe(16)
        body = "~".join((kind, event_id, self.client_tag(address), str(expires_at), detail, nonce))
        return f"{body}~{self._mac(body)}"

    def read(self, value: object, kind: str) -> Signed | None:
        """The fields of a value this service signed with ``kind``; None when malformed or forged."""
        if not isinstance(value, str) or len(value) > MAX_TOKEN_CHARS:
            return None
        parts = value.split("~")
        if len(parts) != 7 or parts[0] != kind:
            return None
        body, mac = value.rsplit("~", 1)
        if not hmac.compare_digest(self._mac(body), mac):
            return None
        _, event_id, client, expires, detail, nonce = parts[:6]
        if not expires.isdigit() or not NONCE_RE.match(nonce):
            return None
        return Signed(kind, event_id, client, int(expires), detail, nonce)

    # -- decoy request ids (the infinite queue) --------------------------------------------------

    def _decoy_mask(self, salt: str) -> int:
        return int(hmac.new(self._key, b"decoy-mask:" + salt.encode(), hashlib.sha256).hexdigest()[:8], 16)

    def decoy_id(self, position: int) -> str:
        """A request id shaped like a real (version 4) one that names a fake ``position`` (under 2^32).

        Hex layout: 8 digits of the position masked with a keyed value, 12 random digits (with the
        version and variant digits of a UUID4 in their places), then 12 digits of MAC over the first 20.
        """
        salt = secrets.token_hex(6)
        salt = salt[:4] + "4" + salt[5:8] + secrets.choice("89ab") + salt[9:]
        masked = format((min(position, 2**32 - 1) ^ self._decoy_mask(salt)) & 0xFFFFFFFF, "08x")
        head = masked + salt
        tail = hmac.new(self._key, b"decoy:" + head.encode(), hashlib.sha256).hexdigest()[:12]
        raw = head + tail
        return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"

    def decoy_position(self, request_id: object) -> int | None:
        """The fake position of a decoy request id; None for any other value (real ids included)."""
        if not isinstance(request_id, str) or len(request_id) != 36:
            return None
        raw = request_id.replace("-", "")
        if len(raw) != 32:
            return None
        head, tail = raw[:20], raw[20:]
        expected = hmac.new(self._key, b"decoy:" + head.encode(), hashlib.sha256).hexdigest()[:12]
        if not hmac.compare_digest(expected, tail):
            return None
        try:
            return int(head[:8], 16) ^ self._decoy_mask(head[8:])
        except ValueError:
            return None


class ProofOfWork:
    """Issue and check proof-of-work challenges bound to an event and a client address."""

    def __init__(self, signer: Signer, spent: SpentSet) -> None:
        self.signer = signer
        self.spent = spent

    def issue(self, event_id: str, address: str, difficulty: int, now: int) -> dict[str, object]:
        expires_at = now + CHALLENGE_TTL_SECONDS
        token = self.signer.make("c1", event_id, address, expires_at, str(difficulty))
        return {
            "kind": "proof_of_work",
            "challenge": token,
            "difficulty": difficulty,
            "algorithm": "sha256",
            "expires_in": CHALLENGE_TTL_SECONDS,
        }

    def check(
        self, event_id: str, address: str, challenge: object, solution: object, difficulty: int, now: int
    ) -> bool:
        """True once for a valid, unexpired, unspent solution of this event's and client's challenge."""
        signed = self.signer.read(challenge, "c1")
        if signed is None or signed.event_id != event_id or signed.expires_at <= now:
            return False
        if not hmac.compare_digest(signed.client, self.signer.client_tag(address)):
            return False
        if not signed.detail.isdigit() or int(signed.detail) < difficulty:
            return False
        if not isinstance(solution, str) or not SOLUTION_RE.match(solution):
            return False
        if not solves(str(challenge), solution, int(signed.detail)):
            return False
        return self.spent.spend(signed.nonce, signed.expires_at)


class Passes:
    """Single-use passes a browser holds between solving the gate and joining."""

    def __init__(self, signer: Signer, spent: SpentSet) -> None:
        self.signer = signer
        self.spent = spent

    def issue(self, event_id: str, address: str, kind: str, now: int) -> str:
        return self.signer.make("g1", event_id, address, now + PASS_TTL_SECONDS, kind)

    def redeem(self, event_id: str, address: str, value: object, now: int) -> bool:
        signed = self.signer.read(value, "g1")
        if signed is None or signed.event_id != event_id or signed.expires_at <= now:
            return False
        if not hmac.compare_digest(signed.client, self.signer.client_tag(address)):
            return False
        return self.spent.spend(signed.nonce, signed.expires_at)
