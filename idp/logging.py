"""Structured logs: one JSON object per line; never tokens, codes, secrets, cookies or query strings.

A record logged with an exception carries its class (``exc_type``) and its formatted traceback
(``traceback``), so a defect explains itself. Tracebacks hold no local values; the database engine is
built with ``hide_parameters=True`` so SQL errors never show the values bound to a statement.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import sys
import threading
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
    formatted here and handed to :data:`ACCESS_LINES`, which writes the lines of many requests at once
    (at most ``ACCESS_FLUSH_SECONDS`` later); otherwise it goes through the logging module like any
    other record.
    """
    if not _ACCESS.isEnabledFor(logging.INFO):
        return
    handler = _HANDLER
    if handler is None or _ACCESS.handlers or not _ACCESS.propagate:
        fields = {"request_id": request_id, "method": method, "path": path, "status": status, "ms": ms}
        _ACCESS.info("request", extra=fields)
        return
    ACCESS_LINES.add(handler, _access_line(request_id, method, path, status, ms))


# Access lines wait at most this long, or until this many are pending, before they are written.
ACCESS_FLUSH_SECONDS = 0.2
ACCESS_FLUSH_LINES = 256


class AccessLines:
    """Access lines written in batches: one write to the log stream for many requests, not one each.

    Writing each line (a system call under the handler's lock) cost a request more than building it.
    A batch is written when ``ACCESS_FLUSH_LINES`` are pending, by a daemon thread every
    ``ACCESS_FLUSH_SECONDS`` (under gevent a greenlet), and when the process exits; so a line reaches
    the log at most that long after its request, and an idle worker holds none back.
    """

    def __init__(self) -> None:
        self._pending: list[str] = []
        self._handler: logging.StreamHandler | None = None  # type: ignore[type-arg]
        self._pid = 0
        # Made in the process that writes, once it writes: this module may be imported before gevent
        # patches threading (gunicorn's post_fork), and a lock made then would block the whole worker.
        self._lock: Any = contextlib.nullcontext()

    def add(self, handler: logging.StreamHandler, line: str) -> None:  # type: ignore[type-arg]
        if self._pid != os.getpid():
            self._start(handler)
        self._handler = handler
        with self._lock:
            self._pending.append(line)
            full = len(self._pending) >= ACCESS_FLUSH_LINES
        if full:
            self.flush()

    def _start(self, handler: logging.StreamHandler) -> None:  # type: ignore[type-arg]
        self._lock = threading.Lock()
        self._pending = []  # a forked child does not write its parent's lines
        self._handler = handler
        self._pid = os.getpid()
        threading.Thread(target=self._run, name="idp-access-log", daemon=True).start()

    def _run(self) -> None:
        pid = os.getpid()
        while self._pid == pid:
            time.sleep(ACCESS_FLUSH_SECONDS)
            # A log stream failing must not end the flusher: the next batch tries again.
            with contextlib.suppress(Exception):
                self.flush()

    def close(self) -> None:
        """Write what is pending and stop the flusher (a later line starts it again)."""
        self.flush()
        self._pid = 0

    def flush(self) -> None:
        """Write every pending line now."""
        handler = self._handler
        if handler is None or not self._pending:
            return
        with self._lock:
            lines, self._pending = self._pending, []
        if not lines:
            return
        with handler.lock:  # type: ignore[union-attr]
            stream = handler.stream
            stream.write("".join(lines))
            stream.flush()


ACCESS_LINES = AccessLines()
atexit.register(ACCESS_LINES.flush)


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
