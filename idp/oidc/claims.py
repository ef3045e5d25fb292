"""Who the relying party sees: the admitted visitor, its pairwise subject and its claims.

``sub`` is an HMAC of the long-lived visitor cookie and the client id under the lookup key
(:mod:`idp.storage.lookup`), which never changes when IDP_SECRET_KEY rotates: stable for one browser and
one client across visits (Cognito and WordPress link accounts by it), different across clients, and
meaningless outside this service.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

from idp.crypto import LookupKey

VISITOR_ID_RE = re.compile(r"\A[A-Za-z0-9_-]{43}\Z")
SYNTHETIC_EMAIL_DOMAIN = "visitors.invalid"
CLAIMS_SUPPORTED = [
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "at_hash",
    "preferred_username",
    "email",
    "email_verified",
    "queue_position",
    "event_id",
    "admitted_at",
    "sid",
]


@dataclass(frozen=True)
class Admission:
    """A browser admitted from the queue of an event: the "user" of the OpenID Connect side."""

    visitor_id: str
    event_id: str
    request_id: str
    queue_position: int
    # When the serving counter reached the place: the authentication time.
    admitted_at: int
    # The pairwise ``sub`` for one client, when the admission was read back from a code or grant
    # (they keep it instead of the visitor id); ``visitor_id`` is then empty.
    subject: str | None = None

    def get_user_id(self) -> str:
        return self.request_id


def subject_digest(lookup: LookupKey, visitor_id: str, client_id: str) -> bytes:
    message = f"{visitor_id}\x00{client_id}".encode()
    return hmac.new(lookup.root, message, hashlib.sha256).digest()


def pairwise_sub(lookup: LookupKey, visitor_id: str, client_id: str) -> str:
    digest = subject_digest(lookup, visitor_id, client_id)
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def user_claims(
    lookup: LookupKey, admission: Admission, client_id: str, scope: str, *, email_domain: str = SYNTHETIC_EMAIL_DOMAIN
) -> dict[str, Any]:
    """The claims of an admitted visitor for one client: the same in the ID token and at /userinfo."""
    if admission.subject is not None:
        digest = base64.urlsafe_b64decode(admission.subject + "=" * (-len(admission.subject) % 4))
    elif admission.visitor_id:
        digest = subject_digest(lookup, admission.visitor_id, client_id)
    else:
        raise ValueError("an admission needs a visitor id or a subject")
    sub = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    handle = digest[:10].hex()
    claims: dict[str, Any] = {
        "sub": sub,
        "preferred_username": f"visitor-{handle}",
        "queue_position": admission.queue_position,
        "event_id": admission.event_id,
        "admitted_at": admission.admitted_at,
    }
    if "email" in scope.split():
        claims["email"] = f"visitor-{handle}@{email_domain}"
        claims["email_verified"] = False
    return claims
