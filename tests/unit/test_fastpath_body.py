"""The fast path reads the usual join body without the JSON parser, and gives exactly what it would."""

from __future__ import annotations

import json

import pytest

from idp.web.fastpath import _PLAIN_JOIN

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "body",
    [
        b'{"event_id":"sale"}',
        b' \t\r\n{ "event_id" :\n"a.b-c_9" }\r\n',
        b'{"event_id":"' + b"x" * 64 + b'"}',
    ],
)
def test_a_plain_body_gives_what_json_gives(body: bytes) -> None:
    match = _PLAIN_JOIN.match(body)
    assert match is not None
    assert {"event_id": match.group(1).decode("ascii")} == json.loads(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"event_id":"b\\u0065"}',  # an escape: JSON decodes it
        b'{"event_id":"x","challenge":"c"}',  # more fields
        b'{"event_id":"x"}\x0c',  # form feed is not JSON whitespace
        b'{"event_id":"x"}{}',
        b'{"event_id":"-x"}',  # not an event id: the view judges it
        b'{"event_id":"' + b"x" * 65 + b'"}',
        b'{"EVENT_ID":"x"}',
        b"{'event_id':'x'}",
    ],
)
def test_anything_else_goes_to_the_json_parser(body: bytes) -> None:
    assert _PLAIN_JOIN.match(body) is None
