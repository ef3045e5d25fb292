"""Which exceptions are an outage (503 with Retry-After) and which stay bugs (500)."""

from __future__ import annotations

import sqlite3

import psycopg2
import pytest
from redis import exceptions as redis_errors
from sqlalchemy import exc as sa_errors

from idp.errors import UnavailableError
from idp.storage.outage import DATABASE_MESSAGE, QUEUE_STORE_MESSAGE, is_unavailable, unavailable_error

pytestmark = pytest.mark.unit


class _PgError(Exception):
    """Stands in for a psycopg2 error carrying a SQLSTATE."""

    def __init__(self, pgcode: str) -> None:
        super().__init__(pgcode)
        self.pgcode = pgcode


def _wrapped(cls: type[sa_errors.DBAPIError], orig: BaseException, **kwargs: bool) -> sa_errors.DBAPIError:
    return cls("SELECT 1", {}, orig, **kwargs)  # type: ignore[arg-type]


REDIS_OUTAGES = [
    redis_errors.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
    redis_errors.TimeoutError("Timeout reading from socket"),
    redis_errors.BusyLoadingError("Redis is loading the dataset in memory"),
    redis_errors.ReadOnlyError("You can't write against a read only replica."),
    redis_errors.ClusterDownError("The cluster is down"),
    redis_errors.MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
    redis_errors.TryAgainError("Multiple keys request during rehashing of slot"),
    redis_errors.MovedError("3999 127.0.0.1:6381"),
    redis_errors.AskError("3999 127.0.0.1:6381"),
    redis_errors.SlotNotCoveredError("Command # 1 (EVALSHA) slot not covered"),
    redis_errors.RedisClusterException("Redis Cluster cannot be connected. Please provide at least one reachable node"),
    redis_errors.ResponseError("NOREPLICAS Not enough good replicas to write."),
    redis_errors.ResponseError("MASTERDOWN Link with MASTER is down"),
    redis_errors.ResponseError("BUSY Redis is busy running a script."),
    redis_errors.ResponseError(
        "Command # 1 (EVALSHA x 6) of pipeline caused error: NOREPLICAS Not enough good replicas"
    ),
    redis_errors.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
]
DATABASE_OUTAGES = [
    _wrapped(sa_errors.OperationalError, psycopg2.OperationalError("FATAL:  the database system is starting up")),
    _wrapped(sa_errors.OperationalError, psycopg2.OperationalError("FATAL:  the database system is shutting down")),
    _wrapped(sa_errors.OperationalError, psycopg2.OperationalError("server closed the connection unexpectedly")),
    _wrapped(sa_errors.OperationalError, sqlite3.OperationalError("database is locked")),
    _wrapped(sa_errors.InterfaceError, psycopg2.InterfaceError("connection already closed")),
    _wrapped(sa_errors.InternalError, _PgError("25006")),  # read-only transaction on a standby
    _wrapped(sa_errors.InternalError, _PgError("57P03")),  # cannot connect now
    _wrapped(sa_errors.ProgrammingError, _PgError("08006"), connection_invalidated=True),
    sa_errors.TimeoutError("QueuePool limit of size 10 overflow 20 reached"),
    sa_errors.DisconnectionError("connection invalidated"),
    psycopg2.OperationalError("terminating connection due to administrator command"),
]
BUGS = [
    ValueError("not an outage"),
    KeyError("x"),
    redis_errors.ResponseError("ERR wrong number of arguments for 'hget' command"),
    redis_errors.ResponseError("ERR Error running script: overflow"),
    redis_errors.DataError("Invalid input of type: 'NoneType'"),
    redis_errors.CrossSlotTransactionError("keys in one transaction must share a slot"),
    _wrapped(sa_errors.IntegrityError, _PgError("23505")),
    _wrapped(sa_errors.ProgrammingError, _PgError("42P01")),
    _wrapped(sa_errors.InterfaceError, sqlite3.InterfaceError("Error binding parameter 1")),
    psycopg2.IntegrityError("duplicate key value"),
]


@pytest.mark.parametrize("exc", REDIS_OUTAGES, ids=lambda e: type(e).__name__ + ":" + str(e)[:30])
def test_redis_outages_are_503_for_the_queue_store(exc: BaseException) -> None:
    err = unavailable_error(exc, retry_after=9)
    assert err is not None
    assert (err.status, err.code, err.message) == (503, "service_unavailable", QUEUE_STORE_MESSAGE)
    assert err.headers() == {"Retry-After": "9"}


@pytest.mark.parametrize("exc", DATABASE_OUTAGES, ids=lambda e: type(e).__name__ + ":" + str(e)[:40])
def test_database_outages_are_503_for_the_database(exc: BaseException) -> None:
    err = unavailable_error(exc, retry_after=4)
    assert err is not None
    assert (err.status, err.message) == (503, DATABASE_MESSAGE)
    assert err.headers() == {"Retry-After": "4"}


@pytest.mark.parametrize("exc", [ConnectionResetError(104, "reset"), TimeoutError("timed out")])
def test_bare_socket_errors_are_outages(exc: BaseException) -> None:
    assert is_unavailable(exc)


@pytest.mark.parametrize("exc", BUGS, ids=lambda e: type(e).__name__ + ":" + str(e)[:30])
def test_bugs_stay_bugs(exc: BaseException) -> None:
    assert unavailable_error(exc) is None
    assert not is_unavailable(exc)


def test_an_unavailable_error_is_passed_through() -> None:
    err = UnavailableError("The queue store is unavailable.", retry_after=3)
    assert unavailable_error(err, retry_after=8) is err


def test_an_unmigrated_database_is_a_defect_not_an_outage() -> None:
    missing = _wrapped(sa_errors.OperationalError, sqlite3.OperationalError("no such table: events"))
    assert unavailable_error(missing) is None
