"""Captcha secrets at rest: sealed with the service's AEAD (``idp.crypto``) under ``IDP_SECRET_KEY``,
bound to their event, stored as ``v2:<base64>``; a secret sealed under one of ``IDP_PREVIOUS_SECRET_KEYS``
still opens (``needs_resealing`` tells the event service to seal it again)."""

from __future__ import annotations

import base64
import binascii

from idp.crypto import Aead, DecryptionError, Secrets

_VERSION = "v2"
_PURPOSE = "captcha secrets"


def seal_captcha_secret(secret_keys: Secrets, event_id: str, secret: str) -> str:
    sealed = Aead(secret_keys, _PURPOSE).seal(secret.encode("utf-8"), event_id.encode("utf-8"))
    return f"{_VERSION}:{base64.b64encode(sealed).decode()}"


def open_captcha_secret(secret_keys: Secrets, event_id: str, blob: str) -> str | None:
    """The captcha secret, or None when it cannot be read (another IDP_SECRET_KEY, a damaged value)."""
    version, _, encoded = blob.partition(":")
    if version != _VERSION:
        return None
    try:
        raw = base64.b64decode(encoded, validate=True)
        return Aead(secret_keys, _PURPOSE).open(raw, event_id.encode("utf-8")).decode("utf-8")
    except (binascii.Error, ValueError, DecryptionError, UnicodeDecodeError):
        return None


def captcha_needs_resealing(secret_keys: Secrets, blob: str) -> bool:
    """True when ``blob`` was sealed under a previous secret (it opens, but should be sealed again)."""
    version, _, encoded = blob.partition(":")
    if version != _VERSION:
        return False
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        return False
    aead = Aead(secret_keys, _PURPOSE)
    return aead.is_sealed(raw) and aead.needs_resealing(raw)
