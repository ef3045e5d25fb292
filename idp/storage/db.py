"""Database engine, sessions and migrations (SQLite for the embedded default, PostgreSQL in production)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool, QueuePool

from idp import green
from idp.storage.outage import is_unavailable, unavailable_error

# The PostgreSQL advisory lock every migration run holds (its transaction's lock), so processes that
# start together migrate one after the other; the later ones find the schema current and do nothing.
MIGRATION_LOCK_KEY = 0x1D95C4E0A11

# The repository keeps migrations/ beside idp/; an installed wheel is told where (IDP_MIGRATIONS_DIR).
DEFAULT_MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def migrations_dir() -> Path:
    from idp.config import Settings

    configured = Settings.from_env().migrations_dir
    return Path(configured) if configured else DEFAULT_MIGRATIONS_DIR


def make_engine(url: str, *, readonly: bool = False) -> Engine:
    """Create an engine with the pragmas and pool settings each backend needs.

    On SQLite a writer begins ``IMMEDIATE`` (two writers never deadlock on a lock upgrade) while a
    reader begins ``DEFERRED`` so reads run beside the writer under WAL.
    """
    # Errors never carry the values bound to a statement (codes, hashes, ids): they reach the logs.
    kwargs: dict[str, Any] = {"future": True, "hide_parameters": True}
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        if readonly and path and path != ":memory:":
            # Reads (every refresh of a cached event's settings) keep a few connections: opening one
            # costs a file open and four pragmas, several times a second per worker under load. A
            # connection serves one checkout at a time; more at once open extra ones, closed after use.
            kwargs["poolclass"] = QueuePool
            kwargs.update(pool_size=4, max_overflow=-1)
        else:
            # Writers: a connection per checkout, never handed across threads.
            kwargs["poolclass"] = NullPool
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            # Under gevent, SQLite's own busy wait would block every greenlet of the worker, including
            # the one holding the lock: wait in Python instead (see _wait_for_lock).
            cur.execute(f"PRAGMA busy_timeout={0 if green.cooperative() else SQLITE_LOCK_WAIT_MS}")
            _wait_for_lock(lambda: cur.execute("PRAGMA journal_mode=WAL"))
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # IMMEDIATE takes the write lock up front, so two writers never deadlock on upgrade.
            statement = "BEGIN" if readonly else "BEGIN IMMEDIATE"
            _wait_for_lock(lambda: conn.exec_driver_sql(statement))

        return engine
    kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True, pool_recycle=1800)
    if url.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": 3}
    return create_engine(url, **kwargs)


SQLITE_LOCK_WAIT_MS = 30000


def _wait_for_lock(run: Callable[[], object]) -> None:
    """Run a SQLite statement; in a gevent worker, wait for a busy lock cooperatively.

    Outside gevent SQLite's busy timeout does the waiting. Inside, the busy timeout is 0 and this loop
    sleeps (a gevent sleep) between attempts, so the greenlet that holds the lock can finish.
    """
    if not green.cooperative():
        run()
        return
    deadline = time.monotonic() + SQLITE_LOCK_WAIT_MS / 1000.0
    pause = 0.001
    while True:
        try:
            run()
            return
        except (sqlite3.OperationalError, OperationalError) as exc:
            message = str(exc).lower()
            if ("locked" not in message and "busy" not in message) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


class Database:
    """Owns the engine and hands out sessions that commit or roll back as one unit."""

    def __init__(self, url: str, retry_after: int = 5) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.read_engine = make_engine(url, readonly=True) if self.engine.dialect.name == "sqlite" else self.engine
        self.read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)
        self.retry_after = retry_after

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextlib.contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """Yield a session inside one transaction; a lost connection becomes a 503."""
        factory = self.read_sessions if readonly else self.sessions
        try:
            with factory() as session, session.begin():
                yield session
        except (SQLAlchemyError, psycopg2.Error) as exc:
            unavailable = unavailable_error(exc, self.retry_after)
            if unavailable is not None and unavailable is not exc:
                raise unavailable from exc
            raise

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def upgrade(self) -> None:
        """Bring the schema to the newest migration."""
        upgrade_database(self.url)

    def dispose(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_database(url: str, revision: str = "head") -> None:
    """Migrate to ``revision``; on PostgreSQL under ``MIGRATION_LOCK_KEY`` (see ``migrations/env.py``)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


class SchemaNotCurrentError(Exception):
    """The database lacks this release's tables or migrations: the service must not start on it."""


def require_current_schema(db: Database) -> None:
    """Refuse to start on a database that is not migrated to this release's newest revision.

    A database that cannot be reached is left alone (requests answer 503 until it is back), and one at a
    revision this release does not know (a newer release migrated it) is accepted: migrations stay
    compatible with the previous release.
    """
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(db.url))
    heads = set(script.get_heads())
    try:
        with db.engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
    except (SQLAlchemyError, psycopg2.Error) as exc:
        if is_unavailable(exc):
            return
        raise
    if current == heads:
        return
    advice = "Run `idp db upgrade` (or start with `idp serve`, which migrates first)."
    if not current:
        raise SchemaNotCurrentError(f"The database has no tables of this service yet. {advice}")
    known = {rev.revision for rev in script.walk_revisions()}
    if current - known:
        return  # a newer release has migrated it
    raise SchemaNotCurrentError(
        f"The database schema is at {', '.join(sorted(current))}; this release needs "
        f"{', '.join(sorted(heads))}. {advice}"
    )
