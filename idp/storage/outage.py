"""Which exceptions mean "a backing service is unavailable": the one place that decides 503 over 500.

Redis and PostgreSQL fail in many ways that all mean "not now, retry shortly": refused or reset
connections, timeouts, a server that is starting up, shutting down or recovering, a primary that has
just become a replica (failover), a cluster that is down or moving slots (resharding), a connection pool
with nothing free. Every request path (the Flask views and the WSGI fast path) asks
:func:`unavailable_error` and answers 503 with ``Retry-After`` for these; anything else stays a bug and
a 500. The module imports no Flask.
"""

from __future__ import annotations

import psycopg2
from redis import exceptions as redis_errors
from sqlalchemy import exc as sa_errors

from idp.errors import UnavailableError

# The exception types that may be an outage: catch these, then ask unavailable_error.
OUTAGE_CANDIDATES: tuple[type[Exception], ...] = (
    redis_errors.RedisError,
    redis_errors.RedisClusterException,
    sa_errors.SQLAlchemyError,
    psycopg2.Error,
    OSError,
)

QUEUE_STORE_MESSAGE = "The queue store is unavailable."
DATABASE_MESSAGE = "The database is unavailable."

# Redis answers that mean the server cannot take the command right now (the message's first word).
_REDIS_BUSY_REPLIES = frozenset(
    {"LOADING", "BUSY", "MASTERDOWN", "NOREPLICAS", "READONLY", "CLUSTERDOWN", "TRYAGAIN", "MOVED", "ASK", "OOM"}
)
_REDIS_UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,  # refused, reset, closed; also Sentinel's "no primary found"
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,  # a write reached a primary that failover turned into a replica
    redis_errors.ClusterError,  # CLUSTERDOWN, MASTERDOWN
    redis_errors.TryAgainError,  # a multi-key command during resharding
    redis_errors.AskError,  # MOVED/ASK the cluster client could not follow in time
    redis_errors.SlotNotCoveredError,
    redis_errors.OutOfMemoryError,
)
# Cluster client errors that are our own mistakes, not an outage.
_REDIS_CLIENT_BUGS: tuple[type[BaseException], ...] = (
    redis_errors.CrossSlotTransactionError,
    redis_errors.InvalidPipelineStack,
)
# PostgreSQL SQLSTATEs that mean "retry later": admin/crash shutdown, cannot connect now (starting up,
# shutting down, recovering), a standby that refuses writes, too many connections, query canceled by a
# timeout, serialization failure and deadlock (both retryable by definition).
_PG_UNAVAILABLE_CODES = frozenset(
    {"57P01", "57P02", "57P03", "57P05", "25006", "53300", "53400", "57014", "40001", "40P01", "08000", "08003"}
)
_PG_UNAVAILABLE_CLASSES = ("08",)  # connection exceptions


def _redis_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, _REDIS_CLIENT_BUGS):
        return False
    if isinstance(exc, _REDIS_UNAVAILABLE):
        return True
    if isinstance(exc, redis_errors.RedisClusterException):
        # "Redis Cluster cannot be connected", no node reachable for a slot.
        return True
    if isinstance(exc, redis_errors.ResponseError):
        # A pipeline prefixes the server's reply with "Command # n (...) of pipeline caused error: ".
        reply = str(exc).rpartition("caused error: ")[2]
        first = reply.split(" ", 1)[0].upper()
        return first in _REDIS_BUSY_REPLIES
    return False


def _dbapi_unavailable(orig: BaseException | None) -> bool:
    code = getattr(orig, "pgcode", None)
    if isinstance(code, str):
        return code in _PG_UNAVAILABLE_CODES or code.startswith(_PG_UNAVAILABLE_CLASSES)
    return False


def _database_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, (sa_errors.TimeoutError, sa_errors.DisconnectionError)):
        return True  # pool exhausted, or a connection found dead at checkout
    if isinstance(exc, sa_errors.DBAPIError):
        if exc.connection_invalidated:
            return True
        if isinstance(exc, sa_errors.OperationalError):
            # Every driver reports lost connections, "the database system is starting up/shutting down",
            # locked SQLite files and timeouts as OperationalError; a missing table or column is a
            # deployment defect (an unmigrated database), not an outage.
            detail = str(exc.orig).lower() if exc.orig is not None else ""
            return "no such table" not in detail and "no such column" not in detail
        if isinstance(exc, sa_errors.InterfaceError) and not _is_sqlite(exc.orig):
            return True  # "connection already closed"
        return _dbapi_unavailable(exc.orig)
    if isinstance(exc, psycopg2.Error):
        # Raised by the driver outside SQLAlchemy (for example from the cooperative wait callback).
        return isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) or _dbapi_unavailable(exc)
    return False


def _is_sqlite(orig: BaseException | None) -> bool:
    return orig is not None and type(orig).__module__.startswith("sqlite3")


def unavailable_error(exc: BaseException, retry_after: int = 5) -> UnavailableError | None:
    """Return the 503 a request should answer for ``exc``, or None when ``exc`` is not an outage."""
    if isinstance(exc, UnavailableError):
        return exc
    if isinstance(exc, redis_errors.RedisError | redis_errors.RedisClusterException):
        if _redis_unavailable(exc):
            return UnavailableError(QUEUE_STORE_MESSAGE, retry_after=retry_after)
        return None
    if _database_unavailable(exc):
        return UnavailableError(DATABASE_MESSAGE, retry_after=retry_after)
    if isinstance(exc, (ConnectionError, TimeoutError)):
        # A socket error that no client library wrapped.
        return UnavailableError(retry_after=retry_after)
    return None


def unavailable_message(exc: BaseException) -> str | None:
    """The sentence a visitor is told for an outage, or None when ``exc`` is not one."""
    unavailable = unavailable_error(exc)
    return None if unavailable is None else unavailable.message


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means a backing service is unavailable (see :func:`unavailable_error`)."""
    return unavailable_error(exc) is not None
