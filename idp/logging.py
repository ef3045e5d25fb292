"""Structured logs: one JSON object per line; never tokens, codes, secrets, cookies or query strings.

A record logged with an exception carries its class (``exc_type``) and its formatted traceback
(``traceback``), so a defect explains itself. Tracebacks hold no local values; the database engine is
built with ``hide_parameters=True`` so SQL errors never show the values bound to a statement.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
# One encoder for every line: json.dumps with options builds a new encoder per call.
_encode = json.JSONEncoder(default=str, separators=(",", ":")).encode


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            payload["exc_type"] = record.exc_info[0].__name__
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["traceback"] = record.exc_text
        return _encode(payload)


def configure_logging(level: str = "INFO") -> None:
    # Our lines carry neither the caller's file and line nor thread names, so skip collecting them
    # for every record (the logging HOWTO's "Optimization" switches). The process id stays: gunicorn's
    # own formatter prints it with %(process)d.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    global _HANDLER
    existing = [h for h in root.handlers if getattr(h, "_idp", False)]
    if existing:
        _HANDLER = existing[0]  # type: ignore[assignment]
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._idp = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    _HANDLER = handler
    root.setLevel(level)


_ACCESS = logging.getLogger("idp.http")


def access_log(request_id: str, method: str, path: str, status: int, ms: float | None) -> None:
    """Write the one line per request; the same JSON a log record would give, without the record.

    Every request pays for this line, so when our JSON handler is the one installed the line is
    formatted here and written straight to its stream (under the handler's lock); otherwise it goes
    through the logging module like any other record.
    """
    if not _ACCESS.isEnabledFor(logging.INFO):
        return
    handler = _HANDLER
    if handler is None or _ACCESS.handlers or not _ACCESS.propagate:
        fields = {"request_id": request_id, "method": method, "path": path, "status": status, "ms": ms}
        _ACCESS.info("request", extra=fields)
        return
    line = _access_line(request_id, method, path, status, ms)
    with handler.lock:  # type: ignore[union-attr]
        stream = handler.stream
        stream.write(line)
        stream.flush()


# Values that JSON writes as themselves between quotes (no escaping): request ids we make, methods, routes.
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:")


def _quoted(value: str) -> str:
    return f'"{value}"' if _PLAIN.issuperset(value) else _encode(value)


def _access_line(request_id: str, method: str, path: str, status: int, ms: float | None) -> str:
    """The access line, as ``JsonFormatter`` would write it, built from a template (one line per request)."""
    elapsed = "null" if ms is None else repr(ms)
    return (
        f'{{"ts":{round(time.time(), 3)!r},"level":"info","logger":"idp.http","msg":"request",'
        f'"request_id":{_quoted(request_id)},"method":{_quoted(method)},"path":{_quoted(path)},'
        f'"status":{int(status)},"ms":{elapsed}}}\n'
    )


_HANDLER: logging.StreamHandler | None = None  # type: ignore[type-arg]


def monotonic_ms() -> float:
    return time.perf_counter() * 1000.0


# Gunicorn's own messages that quote what a client sent: a malformed request line (its path and query,
# which may hold a request id) or the URI of a request whose handling failed.
_QUOTING_PREFIXES = ("Invalid request from", "Error handling request")


class WithholdRequestLines(logging.Filter):
    """Keep the server's own log lines but drop the request lines and URIs they would quote."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for prefix in _QUOTING_PREFIXES:
            if message.startswith(prefix):
                head = message.split(": ", 1)[0] if prefix == "Invalid request from" else prefix
                record.msg = f"{head} (what the client sent is not logged)"
                record.args = ()
                break
        return True


def withhold_request_lines(logger_name: str = "gunicorn.error") -> None:
    """Install :class:`WithholdRequestLines` on gunicorn's error log (once)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, WithholdRequestLines) for f in logger.filters):
        logger.addFilter(WithholdRequestLines())
