"""Hashing of high-entropy secrets (client secrets, admin API keys) and constant-time checks.

The secrets we hand out carry 256 random bits, so a salted SHA-256 is enough to keep a database leak
from yielding usable secrets; a slow password hash would only cost every token request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def hash_secret(secret: str) -> str:
    salt = secrets.token_hex(8)
    digest = hashlib.sha256((salt + secret).encode("utf-8")).hexdigest()
    return f"sha256${salt}${digest}"


def verify_secret(secret: str, stored: str) -> bool:
    """Compare in constant time; a malformed stored value never matches."""
    try:
        scheme, salt, digest = stored.split("$", 2)
    except ValueError:
        return False
    if scheme != "sha256":
        return False
    candidate = hashlib.sha256((salt + secret).encode("utf-8", "surrogatepass")).hexdigest()
    return hmac.compare_digest(candidate, digest)
