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
