"""A ``limits`` storage on the SQL database: moving windows shared by every process without Redis.

Each accepted hit is a row ``(key, at)`` of ``rate_limit_hits``. Acquiring an entry runs in one write
transaction (SQLite begins it IMMEDIATE; PostgreSQL takes a transaction-scoped advisory lock on the key),
so two processes never both take the last place in a window. Rows older than the window go when their
key is next used, and once in a while for every key.
"""

from __future__ import annotations

import secrets
import time
import zlib
from collections.abc import Callable
from typing import Any

from limits.storage import MovingWindowSupport, Storage
from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from idp.storage.db import Database
from idp.storage.models import RateLimitHit

# Keep rows of any key for at least this long when purging old rows of every key (the longest window).
PURGE_AFTER_SECONDS = 86400
PURGE_ONE_IN = 1000


class SqlMovingWindowStorage(Storage, MovingWindowSupport):
    """Moving-window rate limit storage in the service's database (see the module docstring)."""

    STORAGE_SCHEME = None

    def __init__(self, db: Database, now: Callable[[], float] = time.time) -> None:
        super().__init__(uri=None, wrap_exceptions=False)
        self.db = db
        self.now = now

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return SQLAlchemyError

    def _lock(self, session: Session, key: str) -> None:
        if not self.db.is_sqlite:
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(key.encode()) - 2**31})

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        now = self.now()
        with self.db.session() as session:
            self._lock(session, key)
            session.execute(delete(RateLimitHit).where(RateLimitHit.key == key, RateLimitHit.at <= now - expiry))
            used = session.execute(select(func.count()).where(RateLimitHit.key == key)).scalar_one()
            if used + amount > limit:
                return False
            session.add_all([RateLimitHit(key=key, at=now) for _ in range(amount)])
            if secrets.randbelow(PURGE_ONE_IN) == 0:
                session.execute(delete(RateLimitHit).where(RateLimitHit.at <= now - PURGE_AFTER_SECONDS))
        return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now = self.now()
        with self.db.session(readonly=True) as session:
            rows = session.execute(
                select(RateLimitHit.at)
                .where(RateLimitHit.key == key, RateLimitHit.at > now - expiry)
                .order_by(RateLimitHit.at.desc())
                .limit(limit)
            ).scalars()
            times = list(rows)
        if not times:
            return now, 0
        # Like the Redis storage: the start is the oldest of the last ``limit`` hits.
        return float(times[-1]), len(times)

    # The fixed-window interface is not used by the moving-window strategy; kept simple and correct.

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = self.now()
        with self.db.session() as session:
            self._lock(session, key)
            session.execute(delete(RateLimitHit).where(RateLimitHit.key == key, RateLimitHit.at <= now - expiry))
            session.add_all([RateLimitHit(key=key, at=now) for _ in range(amount)])
            session.flush()
            return int(session.execute(select(func.count()).where(RateLimitHit.key == key)).scalar_one())

    def get(self, key: str) -> int:
        with self.db.session(readonly=True) as session:
            return int(session.execute(select(func.count()).where(RateLimitHit.key == key)).scalar_one())

    def get_expiry(self, key: str) -> float:
        with self.db.session(readonly=True) as session:
            latest: Any = session.execute(select(func.max(RateLimitHit.at)).where(RateLimitHit.key == key)).scalar()
        return float(latest) if latest is not None else self.now()

    def check(self) -> bool:
        try:
            self.db.ping()
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with self.db.session() as session:
            result = session.execute(delete(RateLimitHit))
            return int(getattr(result, "rowcount", 0) or 0)

    def clear(self, key: str) -> None:
        with self.db.session() as session:
            session.execute(delete(RateLimitHit).where(RateLimitHit.key == key))
