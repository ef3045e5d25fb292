"""The worker lease: several ``idp worker`` processes may run, one acts.

With Redis configured the lease is a key set with ``SET NX PX`` holding the holder's id, renewed and
released only by its holder (compare-and-set in Lua). Without Redis it is a database row with the
holder and an expiry, taken or renewed in one transaction.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from idp.clock import Clock
from idp.queue import keys
from idp.storage.db import Database
from idp.storage.models import WorkerLease

LEASE_NAME = "worker"

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease(Protocol):
    holder: str

    def acquire(self) -> bool:
        """Take or renew the lease; True while this holder has it."""

    def release(self) -> None: ...

    def held(self) -> bool:
        """Some worker holds the lease now (read-only: any process may ask, e.g. ``/metrics``)."""
        ...


class RedisLease:
    def __init__(self, client: Any, holder: str, ttl_ms: int, name: str = LEASE_NAME) -> None:
        self.client = client
        self.holder = holder
        self.ttl_ms = ttl_ms
        self.key = keys.lease(name)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def acquire(self) -> bool:
        if self.client.set(self.key, self.holder, nx=True, px=self.ttl_ms):
            return True
        return bool(self._renew(keys=[self.key], args=[self.holder, self.ttl_ms]))

    def release(self) -> None:
        self._release(keys=[self.key], args=[self.holder])

    def held(self) -> bool:
        # The key expires with the lease (PX), so its existence is the answer.
        return bool(self.client.exists(self.key))


class DatabaseLease:
    def __init__(self, db: Database, clock: Clock, holder: str, ttl_ms: int, name: str = LEASE_NAME) -> None:
        self.db = db
        self.clock = clock
        self.holder = holder
        self.ttl_ms = ttl_ms
        self.name = name

    def _now_ms(self) -> int:
        return int(self.clock.now() * 1000)

    def acquire(self) -> bool:
        now = self._now_ms()
        with self.db.session() as session:
            builder = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
            session.execute(
                builder(WorkerLease)
                .values(name=self.name, holder=self.holder, expires_at_ms=now + self.ttl_ms)
                .on_conflict_do_nothing()
            )
            row = session.get(WorkerLease, self.name, with_for_update=True, populate_existing=True)
            assert row is not None
            if row.holder != self.holder and row.expires_at_ms > now:
                return False
            row.holder = self.holder
            row.expires_at_ms = now + self.ttl_ms
            return True

    def release(self) -> None:
        with self.db.session() as session:
            row = session.get(WorkerLease, self.name, with_for_update=True)
            if row is not None and row.holder == self.holder:
                row.expires_at_ms = 0

    def held(self) -> bool:
        with self.db.session(readonly=True) as session:
            row = session.get(WorkerLease, self.name)
            return row is not None and row.expires_at_ms > self._now_ms()
