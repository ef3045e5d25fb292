"""What every HTTP answer shares, whichever path gives it: request ids, headers, bodies and errors.

The Flask app and the WSGI fast path (``idp.web.fastpath``) both answer through these helpers, so a
request answered by either carries the same request id rule, security headers and JSON bodies, and any
exception either meets is turned into an answer by :func:`answer_for`: an :class:`IdpError` as itself, an
unavailable backing service as a 503 with ``Retry-After``, anything else as a JSON 500 whose traceback is
logged. Nothing here imports Flask.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from idp.errors import IdpError, UnavailableError
from idp.randomness import id_hex
from idp.storage import outage

log = logging.getLogger("idp.http")

REQUEST_ID_HEADER = "X-Request-Id"
MAX_REQUEST_ID = 64
# Sent with every answer.
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)
# Sent with every HTML page as well.
PAGE_SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("X-Frame-Options", "DENY"),
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'",
    ),
)
# Sent with every answer when the issuer is https: browsers then never try plain http for this host.
HSTS_HEADER = ("Strict-Transport-Security", "max-age=31536000")


def transport_headers(issuer: str) -> tuple[tuple[str, str], ...]:
    """The headers every answer gets because of how the service is reached (HSTS under an https issuer)."""
    return (HSTS_HEADER,) if issuer.startswith("https://") else ()


JSON_MIMETYPE = "application/json"
# Answers that belong to one visitor (and every error) are never stored by a cache.
NO_STORE = "private, no-store"
# Public figures every visitor's page polls (the counters) may be kept by a cache for a second.
PUBLIC_SHORT_CACHE = "public, max-age=1"

SERVER_ERROR_CODE = "server_error"
SERVER_ERROR_MESSAGE = "The request could not be completed."

# One encoder for every body: json.dumps with options builds a new encoder per call.
_encode = json.JSONEncoder(separators=(",", ":")).encode


def request_id(incoming: str | None) -> str:
    """Keep a caller's printable ``X-Request-Id`` of at most 64 characters; otherwise make a new one."""
    if incoming and len(incoming) <= MAX_REQUEST_ID and incoming.isprintable():
        return incoming
    return id_hex()


def json_text(payload: object) -> str:
    """The compact JSON every answer body uses."""
    return _encode(payload)


@dataclass(frozen=True)
class ErrorAnswer:
    """An error as it goes on the wire: ``{"error": code, "message": sentence}`` with a status."""

    status: int
    code: str
    message: str
    headers: tuple[tuple[str, str], ...] = ()
    # Fields an error carries beyond error and message (a join gate's challenge), in order.
    details: tuple[tuple[str, object], ...] = ()

    @classmethod
    def from_error(cls, exc: IdpError) -> ErrorAnswer:
        extra = tuple((k, v) for k, v in exc.to_dict().items() if k not in ("error", "message"))
        return cls(exc.status, exc.code, exc.message, tuple(exc.headers().items()), extra)

    def body(self) -> bytes:
        return json_text({"error": self.code, "message": self.message, **dict(self.details)}).encode()


# Which exceptions mean a backing service cannot be reached, and what the visitor is told. Each entry
# answers the sentence for an exception it recognises, or None.
UnavailableRule = Callable[[BaseException], str | None]


# Every way Redis or the database can be unavailable is classified in one place, beside the stores.
UNAVAILABLE_RULES: list[UnavailableRule] = [outage.unavailable_message]


def unavailable_message(exc: BaseException) -> str | None:
    """The sentence for an exception that means a backing service is unavailable, else None."""
    for rule in UNAVAILABLE_RULES:
        message = rule(exc)
        if message is not None:
            return message
    return None


def answer_for(exc: BaseException, *, retry_after: int, request_id: str | None) -> ErrorAnswer:
    """Turn any exception met while answering a request into the error answer both paths give.

    An :class:`IdpError` answers as itself. An unavailable backing service answers 503 with
    ``Retry-After`` and logs a warning naming the exception's class. Anything else is a defect: it answers
    a JSON 500 and logs the traceback with the request id.
    """
    if isinstance(exc, IdpError):
        return ErrorAnswer.from_error(exc)
    message = unavailable_message(exc)
    if message is not None:
        log.warning(
            "backing service unavailable",
            extra={"request_id": request_id, "error": type(exc).__name__, "detail": message},
        )
        return ErrorAnswer.from_error(UnavailableError(message, retry_after=retry_after))
    log.error("unhandled error", exc_info=exc, extra={"request_id": request_id})
    return ErrorAnswer(500, SERVER_ERROR_CODE, SERVER_ERROR_MESSAGE)
