"""Make the database drivers cooperative under gevent workers (the default of ``idp serve``).

A gevent worker serves many connections in one process, switching between them whenever one waits on
the network, so slow or idle clients cost a parked greenlet instead of a whole worker. gunicorn's gevent
worker patches the standard library, which makes redis-py (pure Python sockets) cooperative; psycopg2
talks to PostgreSQL from C, so it is told to hand every wait to gevent through its wait callback, and
SQLite's lock waits are done in Python (``idp.storage.db``) instead of in C.
"""

from __future__ import annotations

from typing import Any

_cooperative = False


def cooperative() -> bool:
    """Whether this process serves with gevent (blocking waits must then go through gevent)."""
    return _cooperative


# A PostgreSQL that does not answer one step of a connection or a query within this many seconds is
# treated as unavailable (libpq's connect_timeout does not apply to connections driven this way).
WAIT_SECONDS = 10.0


def _gevent_wait(conn: Any) -> None:
    """psycopg2 wait callback: poll the connection, parking this greenlet until its socket is ready."""
    import psycopg2
    from gevent.socket import wait_read, wait_write
    from psycopg2.extensions import POLL_OK, POLL_READ, POLL_WRITE

    while True:
        state = conn.poll()
        try:
            if state == POLL_OK:
                return
            if state == POLL_READ:
                wait_read(conn.fileno(), timeout=WAIT_SECONDS)
            elif state == POLL_WRITE:
                wait_write(conn.fileno(), timeout=WAIT_SECONDS)
            else:
                raise psycopg2.OperationalError(f"unexpected poll state {state!r}")
        except TimeoutError as exc:
            raise psycopg2.OperationalError("PostgreSQL did not answer in time") from exc
        except BaseException:
            # Interrupted (a timeout, the worker stopping): cancel the statement so the connection is reusable.
            conn.cancel()
            raise


def make_cooperative() -> None:
    """Install the gevent wait callback for psycopg2 (call once per worker process, after the fork)."""
    import psycopg2.extensions

    global _cooperative
    _cooperative = True
    psycopg2.extensions.set_wait_callback(_gevent_wait)
