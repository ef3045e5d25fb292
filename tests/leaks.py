"""Look for secrets in text as an attacker would: raw, URL-decoded, base64-decoded and zlib-inflated."""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Iterable
from html import unescape
from urllib.parse import unquote, urlsplit

_SEGMENT = re.compile(r"[A-Za-z0-9_\-+/=]{8,}")
_URL_ATTRS = re.compile(r"""(?:href|src|action|content|data-[a-z-]+)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)


def _b64_variants(segment: str) -> Iterable[bytes]:
    stripped = segment.strip("=")
    for start in range(4):
        piece = stripped[start:]
        padded = piece + "=" * (-len(piece) % 4)
        for decode in (base64.urlsafe_b64decode, base64.b64decode):
            try:
                yield decode(padded)
            except (binascii.Error, ValueError):
                continue


def decodings(text: str) -> list[str]:
    """``text`` and everything it decodes to: URL and HTML unquoting, base64 segments, zlib inside them."""
    found = [text, unquote(text), unescape(text), unquote(unescape(text))]
    for candidate in list(found):
        for segment in _SEGMENT.findall(candidate):
            for raw in _b64_variants(segment):
                found.append(raw.decode("latin-1"))
                for skip in range(3):
                    try:
                        found.append(zlib.decompress(raw[skip:]).decode("latin-1"))
                    except zlib.error:
                        continue
    return found


def leaked(text: str, secrets: Iterable[str]) -> list[str]:
    """The secrets that ``text`` reveals, raw or decoded."""
    views = decodings(text)
    return [secret for secret in secrets if secret and any(secret in view for view in views)]


def urls_in_html(html: str) -> list[str]:
    """Every URL-like attribute value of a page (links, scripts, forms, meta refresh, data attributes)."""
    values = [unescape(v) for v in _URL_ATTRS.findall(html)]
    urls = []
    for value in values:
        if "url=" in value.lower():
            value = value[value.lower().index("url=") + 4 :]
        if value.startswith(("/", "http://", "https://", "?")):
            urls.append(value)
    return urls


def path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")
