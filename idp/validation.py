"""Shapes of values that several parts accept: identifiers and http(s) URLs, defined once."""

from __future__ import annotations

import re

# An event id, a client id, and the cursors that continue a list of either: a letter or digit, then up
# to 63 letters, digits, ``_``, ``.`` or ``-``.
IDENTIFIER_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
# A URL the service calls (webhooks, an origin's health check): http(s), no whitespace, bounded length.
CALLABLE_URL_RE = re.compile(r"\Ahttps?://[^\s]{1,2000}\Z")
