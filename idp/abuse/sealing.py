"""Captcha secrets at rest: AES-256-GCM with a key derived from ``IDP_SECRET_KEY``, bound to the event."""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = "v1"


def _aead(secret_key: str) -> AESGCM:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"idp-captcha-secrets", info=b"idp captcha secret encryption v1"
    ).derive(secret_key.encode("utf-8"))
    return AESGCM(derived)


def seal_captcha_secret(secret_key: str, event_id: str, secret: str) -> str:
    nonce = os.urandom(12)
    sealed = _aead(secret_key).encrypt(nonce, secret.encode("utf-8"), event_id.encode("utf-8"))
    return f"{_VERSION}:{base64.b64encode(nonce + sealed).decode()}"


def open_captcha_secret(secret_key: str, event_id: str, blob: str) -> str | None:
    """The captcha secret, or None when it cannot be read (another IDP_SECRET_KEY, a damaged value)."""
    version, _, encoded = blob.partition(":")
    if version != _VERSION:
        return None
    try:
        raw = base64.b64decode(encoded, validate=True)
        return _aead(secret_key).decrypt(raw[:12], raw[12:], event_id.encode("utf-8")).decode("utf-8")
    except (ValueError, InvalidTag):
        return None
