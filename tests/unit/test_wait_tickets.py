"""The waiting page's signed tickets, without Flask, a database or a queue store."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from idp.config import Settings
from idp.oidc.interaction import State
from idp.oidc.records import InteractionRecord
from idp.oidc.tickets import WaitTickets

pytestmark = pytest.mark.unit

VISITOR = "v" * 43
RECORD = InteractionRecord(
    "i" * 32, "rp", "sale", VISITOR, "r" * 22, 7, {"ui_locales": "ja en"}, "waiting", 1_700_000_000, 1_700_000_000
)


def _tickets(serving: int = 3, queue: int = 10, secret: str = "k" * 40) -> WaitTickets:
    room: Any = SimpleNamespace(counters=lambda event_id: SimpleNamespace(serving=serving, queue=queue))
    return WaitTickets(Settings(env="test", secret_key=secret, issuer="http://127.0.0.1:8000"), room)


def test_a_wait_ticket_names_the_request_and_only_its_browser_reads_it() -> None:
    tickets = _tickets()
    url = tickets.wait_url(RECORD)
    path, raw = urlsplit(url).path, parse_qs(urlsplit(url).query)["w"][0]
    assert path == "/authorize/wait/" + "i" * 32
    assert VISITOR not in url and "r" * 22 not in url  # no cookie value, no request id
    ticket = tickets.read_wait(raw, "i" * 32, VISITOR)
    assert ticket is not None and ticket == tickets.of(RECORD)
    assert ticket.position == 7 and ticket.params == {"ui_locales": "ja en"}
    assert tickets.read_wait(raw, "i" * 32, "w" * 43) is None  # another browser
    assert tickets.read_wait(raw, "j" * 32, VISITOR) is None  # another request
    assert tickets.read_wait(raw[:-2] + "xx", "i" * 32, VISITOR) is None  # forged
    assert _tickets(secret="o" * 40).read_wait(raw, "i" * 32, VISITOR) is None  # another key
    assert tickets.read_wait(None, "i" * 32, VISITOR) is None


def test_a_status_ticket_is_not_a_wait_ticket() -> None:
    tickets = _tickets()
    ticket = tickets.of(RECORD)
    status_raw = tickets.status_url(ticket).rsplit("/", 1)[1]
    wait_raw = parse_qs(urlsplit(tickets.wait_url(ticket)).query)["w"][0]
    assert tickets.read_status(status_raw, VISITOR) == ticket
    assert tickets.read_status(status_raw, None) is None
    assert tickets.read_status(wait_raw, VISITOR) is None
    assert tickets.read_wait(status_raw, "i" * 32, VISITOR) is None


@pytest.mark.parametrize(("serving", "queue", "waiting"), [(3, 10, True), (6, 10, True), (7, 10, False), (3, 6, False)])
def test_a_place_behind_the_serving_counter_is_known_to_wait_from_the_counters(
    serving: int, queue: int, waiting: bool
) -> None:
    tickets = _tickets(serving, queue)
    progress = tickets.still_waiting(tickets.of(RECORD))
    assert (progress is not None) is waiting
    if progress is not None:
        assert progress.state is State.WAITING and progress.ahead == 7 - serving - 1
