"""Captcha secrets at rest: sealed with the service's AEAD (``idp.crypto``) under ``IDP_SECRET_KEY``,
bound to their event, stored as ``v2:<base64>``."""

from __future__ import annotations

import base64
import binascii

from idp.crypto import Aead, DecryptionError

_VERSION = "v2"
_PURPOSE = "captcha secrets"


def seal_captcha_secret(secret_key: str, event_id: str, secret: str) -> str:
    sealed = Aead([secret_key], _PURPOSE).seal(secret.encode("utf-8"), event_id.encode("utf-8"))
    return f"{_VERSION}:{base64.b64encode(sealed).decode()}"


def open_captcha_secret(secret_key: str, event_id: str, blob: str) -> str | None:
    """The captcha secret, or None when it cannot be read (another IDP_SECRET_KEY, a damaged value)."""
    version, _, encoded = blob.partition(":")
    if version != _VERSION:
        return None
    try:
        raw = base64.b64decode(encoded, validate=True)
        return Aead([secret_key], _PURPOSE).open(raw, event_id.encode("utf-8")).decode("utf-8")
    except (binascii.Error, ValueError, DecryptionError, UnicodeDecodeError):
        return None
