"""Structured logs: one JSON object per line; never tokens, codes, secrets, cookies or query strings."""

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
        return _encode(payload)


def configure_logging(level: str = "INFO") -> None:
    # Our lines carry neither the caller's file and line nor thread names, so skip collecting them
    # for every record (the logging HOWTO's "Optimization" switches). The process id stays: gunicorn's
    # own formatter prints it with %(process)d.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    if any(getattr(h, "_idp", False) for h in root.handlers):
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._idp = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


def monotonic_ms() -> float:
    return time.perf_counter() * 1000.0
