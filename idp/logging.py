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
import time
import weakref
from collections import deque
from typing import Any

from idp.periodic import Periodic

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


_INFO = logging.INFO


def access_log(request_id: str, method: str, path: str, status: int, ms: float | None) -> None:
    """Write the one line per request; the same JSON a log record would give, without the record.

    Every request pays for this line, so when our JSON handler is the one installed its fields (and
    the time) are handed to :data:`ACCESS_LINES`, which formats and writes the lines of many requests at
    once (at most ``ACCESS_FLUSH_SECONDS`` later); otherwise it goes through the logging module like
    any other record.
    """
    access = _ACCESS
    if not access.isEnabledFor(_INFO):
        return
    handler = _HANDLER
    if handler is None or access.handlers or not access.propagate:
        fields = {"request_id": request_id, "method": method, "path": path, "status": status, "ms": ms}
        access.info("request", extra=fields)
        return
    # The line is formatted when its batch is written (idp.logging.AccessLines.flush), off the request.
    ACCESS_LINES.add(handler, (time.time(), request_id, method, path, status, ms))


# What access_log queues for one request: (time, request id, method, path, status, ms).
AccessFields = tuple[float, str, str, str, int, float | None]

# Access lines wait at most this long, or until this many are pending, before they are written.
ACCESS_FLUSH_SECONDS = 0.2
ACCESS_FLUSH_LINES = 256


class AccessLines:
    """Access lines written in batches: one write to the log stream for many requests, not one each.

    Writing each line (a system call under the handler's lock) cost a request more than building it.
    A batch is written when ``ACCESS_FLUSH_LINES`` are pending, by a daemon thread every
    ``ACCESS_FLUSH_SECONDS`` (under gevent a greenlet), and when the process exits; so a line reaches
    the log at most that long after its request, and an idle worker holds none back.

    Adding a line takes no lock and no system call: the pending lines are a deque (whose append and
    popleft are atomic), and a forked child forgets its parent's lines and flusher in a fork hook
    rather than by comparing process ids on every line.
    """

    def __init__(self) -> None:
        self._pending: deque[str | AccessFields] = deque()
        self._handler: logging.StreamHandler | None = None  # type: ignore[type-arg]
        # The flusher runs in the process that writes, started by its first line (idp.periodic).
        self._flusher = Periodic("idp-access-log", lambda: ACCESS_FLUSH_SECONDS, self.flush)
        _ACCESS_LINE_SETS.add(self)

    def add(self, handler: logging.StreamHandler, line: str | AccessFields) -> None:  # type: ignore[type-arg]
        """Queue a line: its text, or the fields of :func:`access_log` (formatted when written)."""
        if not self._flusher.running:
            self._flusher.start()
        self._handler = handler
        pending = self._pending
        pending.append(line)
        if len(pending) >= ACCESS_FLUSH_LINES:
            self.flush()

    def _after_fork_in_child(self) -> None:
        # A forked child does not write its parent's lines; the parent's flusher (a greenlet the fork
        # copied, say) ends and the child starts its own with its first line.
        self._pending = deque()
        self._flusher.stop()

    def close(self) -> None:
        """Write what is pending and stop the flusher (a later line starts it again)."""
        self.flush()
        self._flusher.stop()

    def flush(self) -> None:
        """Write every pending line now."""
        handler = self._handler
        pending = self._pending
        if handler is None or not pending:
            return
        popleft = pending.popleft
        lines: list[str] = []
        try:
            for _ in range(len(pending)):
                item = popleft()
                lines.append(item if isinstance(item, str) else _line_of(item))
        except IndexError:  # another flush took the rest
            pass
        if not lines:
            return
        with handler.lock:  # type: ignore[union-attr]
            stream = handler.stream
            stream.write("".join(lines))
            stream.flush()


_ACCESS_LINE_SETS: weakref.WeakSet[AccessLines] = weakref.WeakSet()


def _access_lines_after_fork_in_child() -> None:
    for lines in list(_ACCESS_LINE_SETS):
        lines._after_fork_in_child()


os.register_at_fork(after_in_child=_access_lines_after_fork_in_child)

ACCESS_LINES = AccessLines()


def _flush_at_exit() -> None:
    # The stream may be gone by now (closed by its owner): there is nowhere left to write the lines.
    with contextlib.suppress(ValueError, OSError):
        ACCESS_LINES.flush()


atexit.register(_flush_at_exit)


# Values that JSON writes as themselves between quotes (no escaping): request ids we make, methods, routes.
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:")
# Methods and routes, quoted once each: a few distinct values, every request.
_QUOTED: dict[str, str] = {}


def _quoted(value: str) -> str:
    # Letters and digits only (the request ids we make) are checked without going character by character.
    plain = (value.isascii() and value.isalnum()) or _PLAIN.issuperset(value)
    return f'"{value}"' if plain else _encode(value)


def _quoted_name(value: str) -> str:
    quoted = _QUOTED.get(value)
    if quoted is None:
        quoted = _quoted(value)
        if len(_QUOTED) < 1024:  # methods are whatever clients send: the cache stays bounded
            _QUOTED[value] = quoted
    return quoted


# The last timestamp written, as (from, until, text): every time in [from, until) rounds to the same
# millisecond, so the requests of one millisecond round and format it once.
_TS: tuple[float, float, str] = (0.0, 0.0, "")


def _timestamp(now: float) -> str:
    """``repr(round(now, 3))``, as ``JsonFormatter`` writes ``ts``.

    ``round`` is monotonic and rounds ``now`` to ``r`` up to the decimal midpoint ``r + 0.0005``; the
    limit stays a microsecond short of it, more than the float error of computing it (a time before
    2**32 seconds, the year 2106, has a resolution of 4.8e-7 s or finer), so every time in the range
    rounds to ``r``.
    """
    global _TS
    start, until, text = _TS
    if start <= now < until:
        return text
    rounded = round(now, 3)
    text = repr(rounded)
    _TS = (now, rounded + 0.0005 - 1e-6, text)
    return text


def _line_of(fields: AccessFields) -> str:
    try:
        return _access_line(*fields[1:], at=fields[0])
    except Exception:  # noqa: BLE001 - one odd value must not cost the batch its other lines
        return _access_line(str(fields[1]), "?", "?", 0, None, at=fields[0])


def _access_line(
    request_id: str, method: str, path: str, status: int, ms: float | None, *, at: float | None = None
) -> str:
    """The access line, as ``JsonFormatter`` would write it, built from a template (one line per request)."""
    return (
        f'{{"ts":{_timestamp(time.time() if at is None else at)},"level":"info","logger":"idp.http","msg":"request",'
        f'"request_id":{_quoted(request_id)},"method":{_QUOTED.get(method) or _quoted_name(method)},'
        f'"path":{_QUOTED.get(path) or _quoted_name(path)},'
        f'"status":{int(status)},"ms":{"null" if ms is None else repr(ms)}}}\n'
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
