"""Where the join gate remembers spent challenges and where refused joins are tallied per address."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from idp.queue import keys
from idp.storage.db import Database
from idp.storage.models import RefusalTally, SpentChallenge

log = logging.getLogger("idp.abuse")

PURGE_ONE_IN = 200
TALLY_FLUSH_SECONDS = 2.0
MAX_PENDING_ADDRESSES = 5000


class RedisSpentSet:
    """``SET NX EX`` per nonce: one round trip, expires by itself."""

    def __init__(self, client: Any, now: Callable[[], float]) -> None:
        self.client = client
        self.now = now

    def spend(self, nonce: str, expires_at: int) -> bool:
        ttl = max(1, int(expires_at - self.now()) + 1)
        return bool(self.client.set(keys.spent_challenge(nonce), b"1", nx=True, ex=ttl))


class SqlSpentSet:
    """A row per spent nonce; the primary key refuses the second use."""

    def __init__(self, db: Database, now: Callable[[], float]) -> None:
        self.db = db
        self.now = now

    def spend(self, nonce: str, expires_at: int) -> bool:
        try:
            with self.db.session() as session:
                session.add(SpentChallenge(nonce=nonce, expires_at=expires_at))
                if secrets.randbelow(PURGE_ONE_IN) == 0:
                    session.execute(delete(SpentChallenge).where(SpentChallenge.expires_at < int(self.now())))
        except IntegrityError:
            return False
        return True


class RefusalTallies:
    """Refused joins per (event, address), for the dashboard; batched per process, flushed every few seconds."""

    def __init__(self, db: Database, now: Callable[[], float] = time.time) -> None:
        self.db = db
        self.now = now
        self._pending: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._flushed_at = time.monotonic()

    def add(self, event_id: str, address: str) -> None:
        with self._lock:
            first = not self._pending
            if len(self._pending) < MAX_PENDING_ADDRESSES or (event_id, address) in self._pending:
                self._pending[(event_id, address[:64])] += 1
            due = time.monotonic() - self._flushed_at >= TALLY_FLUSH_SECONDS
        if due:
            self.flush()
        elif first:
            # The last refusals of a burst are written a moment later even if no other refusal follows.
            timer = threading.Timer(TALLY_FLUSH_SECONDS, self.flush)
            timer.daemon = True
            timer.start()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, Counter()
            self._flushed_at = time.monotonic()
        if not pending:
            return
        now = int(self.now())
        try:
            with self.db.session() as session:
                for (event_id, address), count in sorted(pending.items()):
                    changed = session.execute(
                        update(RefusalTally)
                        .where(RefusalTally.event_id == event_id, RefusalTally.address == address)
                        .values(refused=RefusalTally.refused + count, last_at=now)
                    )
                    if not getattr(changed, "rowcount", 0):
                        session.add(RefusalTally(event_id=event_id, address=address, refused=count, last_at=now))
        except Exception:  # noqa: BLE001 - the tally is advisory; losing a few counts must not fail a request
            log.warning("could not record refused joins", exc_info=True)

    def top(self, event_id: str, limit: int = 20) -> list[dict[str, Any]]:
        self.flush()
        with self.db.session(readonly=True) as session:
            rows = session.execute(
                select(RefusalTally)
                .where(RefusalTally.event_id == event_id)
                .order_by(RefusalTally.refused.desc(), RefusalTally.address)
                .limit(limit)
            ).scalars()
            return [{"address": r.address, "refused": r.refused, "last_at": r.last_at} for r in rows]

    def clear(self, event_id: str) -> None:
        with self._lock:
            for key in [k for k in self._pending if k[0] == event_id]:
                del self._pending[key]
        with self.db.session() as session:
            session.execute(delete(RefusalTally).where(RefusalTally.event_id == event_id))
