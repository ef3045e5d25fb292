"""The access line built from a template is exactly the JSON the encoder gives for the same fields."""

from __future__ import annotations

import json

import pytest

from idp import logging as idp_logging

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "request_id",
    [
        "0123456789abcdef0123456789abcdef",
        'caller "quoted" \\ id',
        "caller-id/é/\u2028",
        "",
    ],
)
@pytest.mark.parametrize("ms", [1.23, 0.0, 12345.67, None, 7])
def test_the_access_line_is_the_encoders_json(request_id: str, ms: float | None) -> None:
    line = idp_logging._access_line(request_id, "POST", "/api/assign_queue_num", 200, ms)
    assert line.endswith("\n") and line.count("\n") == 1
    parsed = json.loads(line)
    fields = {"request_id": request_id, "method": "POST", "path": "/api/assign_queue_num", "status": 200, "ms": ms}
    expected = {"ts": parsed["ts"], "level": "info", "logger": "idp.http", "msg": "request", **fields}
    assert parsed == expected
    assert line == idp_logging._encode(expected) + "\n"


def test_access_lines_are_written_in_batches_and_none_is_held_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import logging
    import time

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    lines = idp_logging.AccessLines()
    monkeypatch.setattr(idp_logging, "ACCESS_FLUSH_LINES", 3)
    lines.add(handler, "one\n")
    lines.add(handler, "two\n")
    assert stream.getvalue() == ""  # pending: no write per request
    lines.add(handler, "three\n")
    assert stream.getvalue() == "one\ntwo\nthree\n"  # a full batch is one write
    lines.add(handler, "four\n")
    deadline = time.monotonic() + 5 * idp_logging.ACCESS_FLUSH_SECONDS + 2
    while "four" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stream.getvalue() == "one\ntwo\nthree\nfour\n"  # the flusher writes what an idle process holds
    lines.add(handler, "five\n")
    lines.close()
    assert stream.getvalue().endswith("four\nfive\n")
