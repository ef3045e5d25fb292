"""Databases at the newest migration for tests: a new SQLite file is a copy of one migrated per process.

Running the Alembic migrations costs about 0.15 s of CPU; a suite that gives a thousand tests their own
SQLite file spent minutes on it. ``migrate(url)`` runs them once per test process into a template file,
then copies that file for each new SQLite database. Any other database (PostgreSQL, an SQLite file that
already exists) is migrated as ``idp db upgrade`` would; a test that needs another revision calls
``idp.storage.db.upgrade_database`` itself.
"""

from __future__ import annotations

import atexit
import shutil
import sqlite3
import tempfile
import threading
from pathlib import Path

from sqlalchemy.engine import make_url

_lock = threading.Lock()
_template: Path | None = None


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _migrated_template() -> Path:
    global _template
    with _lock:
        if _template is None:
            from idp.storage.db import upgrade_database

            folder = Path(tempfile.mkdtemp(prefix="idp-migrated-"))
            atexit.register(shutil.rmtree, folder, True)
            path = folder / "head.sqlite3"
            upgrade_database(f"sqlite:///{path}")
            # Everything in the one file: no write-ahead log left beside it to copy.
            with sqlite3.connect(path) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.execute("PRAGMA journal_mode=DELETE")
            conn.close()
            _template = path
        return _template


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest migration."""
    path = _sqlite_file(url)
    if path is None or path.exists():
        from idp.storage.db import upgrade_database

        upgrade_database(url)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_migrated_template(), path)
