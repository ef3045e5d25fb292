"""The pre-queue lottery: a seed committed before anyone enters, a draw anyone can recompute.

The rules, which ``GET /api/lottery`` publishes the inputs of and ``idp lottery verify`` checks:

* When an event's pre-queue is set, a random seed (64 hex characters) is stored once and its
  commitment ``sha256(seed)`` is published at once. It is never replaced afterwards.
* Every pre-queue join gets a public entry id: the SHA-256 hex digest of its request id. The entry id
  identifies the entry without being a credential: nothing accepts it in place of the request id.
* At opening the entries are sorted by ``HMAC-SHA256(key=seed, msg=entry_id)`` (hex, ties broken by
  the entry id) and take the positions ``first_position, first_position + 1, ...`` in that order.
* After the draw the seed and the entry ids are published, so anyone can check that the seed hashes
  to the commitment and recompute the order.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from idp.storage.db import Database
from idp.storage.models import Lottery


def new_seed() -> str:
    return secrets.token_hex(32)


def commitment(seed: str) -> str:
    """The published commitment to a seed: its SHA-256 hex digest."""
    return hashlib.sha256(seed.encode()).hexdigest()


def entry_id(request_id: str) -> str:
    """The public id of a pre-queue entry: the SHA-256 hex digest of its request id."""
    return hashlib.sha256(request_id.encode()).hexdigest()


def sort_key(seed: str, entry: str) -> tuple[str, str]:
    return hmac.new(seed.encode(), entry.encode(), hashlib.sha256).hexdigest(), entry


def draw_order(seed: str, entries: Iterable[str]) -> list[str]:
    """The entry ids in drawn order: the first gets the first position."""
    return sorted(entries, key=lambda entry: sort_key(seed, entry))


@dataclass(frozen=True)
class Commitment:
    event_id: str
    seed: str
    commitment: str
    committed_at: int


def commit(session: Session, event_id: str, now: int) -> Commitment:
    """Store a seed for the event unless one is stored already; return the one that holds."""
    row = session.get(Lottery, event_id, with_for_update=True)
    if row is None:
        seed = new_seed()
        row = Lottery(event_id=event_id, seed=seed, commitment=commitment(seed), committed_at=now)
        session.add(row)
        session.flush()
    return Commitment(row.event_id, row.seed, row.commitment, row.committed_at)


def load(db: Database, event_id: str) -> Commitment | None:
    with db.session(readonly=True) as session:
        row = session.get(Lottery, event_id)
        return None if row is None else Commitment(row.event_id, row.seed, row.commitment, row.committed_at)


def discard(session: Session, event_id: str) -> None:
    """Drop an event's seed (the event was deleted); a new pre-queue commits a new one."""
    row = session.get(Lottery, event_id)
    if row is not None:
        session.delete(row)


def renew(db: Database, event_id: str, now: int) -> Commitment:
    """Replace a seed after the queue was reset: a revealed seed must never draw again."""
    with db.session() as session:
        discard(session, event_id)
        session.flush()
        return commit(session, event_id, now)


def publication(
    event_id: str,
    committed: Commitment | None,
    opens_at: int | None,
    entrants: int,
    drawn_at: int | None,
    first_position: int,
    entry_ids: Iterable[str],
) -> dict[str, Any]:
    """What ``GET /api/lottery`` shows: the commitment always; the seed and entries once drawn."""
    published: dict[str, Any] = {
        "event_id": event_id,
        "commitment": None if committed is None else committed.commitment,
        "committed_at": None if committed is None else committed.committed_at,
        "draw_time": opens_at,
        "entrants": entrants,
        "drawn": drawn_at is not None,
        "drawn_at": drawn_at,
        "order": "sort entry ids by HMAC-SHA256(key=seed, msg=entry_id) hex, ties by entry id",
    }
    if drawn_at is not None and committed is not None:
        published["seed"] = committed.seed
        published["first_position"] = first_position
        published["entries"] = draw_order(committed.seed, entry_ids)
    return published


@dataclass(frozen=True)
class Verification:
    ok: bool
    problems: list[str]
    entrants: int


def verify(published: dict[str, Any]) -> Verification:
    """Check a published lottery: the seed matches the commitment and the order follows from the seed."""
    problems: list[str] = []
    seed = published.get("seed")
    committed = published.get("commitment")
    entries = published.get("entries")
    if not isinstance(seed, str) or not isinstance(committed, str):
        return Verification(False, ["the lottery has not been drawn yet (no seed published)"], 0)
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        return Verification(False, ["the published entries are not a list of entry ids"], 0)
    if commitment(seed) != committed:
        problems.append("sha256(seed) does not equal the commitment")
    if draw_order(seed, entries) != entries:
        problems.append("the published order is not the order the seed gives")
    if len(set(entries)) != len(entries):
        problems.append("an entry id appears twice")
    count = published.get("entrants")
    if isinstance(count, int) and count != len(entries):
        problems.append("the entrant count does not match the entries")
    return Verification(not problems, problems, len(entries))
