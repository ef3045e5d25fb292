"""The migrations build exactly the models' schema, run one at a time, and the app refuses an old schema."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from idp.app import create_app
from idp.config import Settings
from idp.storage.db import (
    MIGRATION_LOCK_KEY,
    SchemaNotCurrentError,
    alembic_config,
    make_engine,
    upgrade_database,
)
from idp.storage.models import Base
from tests.conftest import TEST_SECRET, new_pg_database

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for this test."""
    with new_pg_database("idp_mig") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("empty_pg_url"))
    return f"sqlite:///{tmp_path / 'idp.sqlite3'}"


def _heads() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def _current(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()


def _settings(url: str, tmp_path: Path) -> Settings:
    return Settings(
        env="test", secret_key=TEST_SECRET, database_url=url, instance_path=str(tmp_path), log_level="CRITICAL"
    )


def test_the_migrations_build_exactly_the_models(empty_url: str) -> None:
    upgrade_database(empty_url)
    engine = make_engine(empty_url)
    try:
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert differences == [], "a model and the migrations disagree; add a migration"


def test_the_app_refuses_a_database_without_tables(empty_url: str, tmp_path: Path) -> None:
    with pytest.raises(SchemaNotCurrentError, match="no tables of this service.*idp db upgrade"):
        create_app(_settings(empty_url, tmp_path))


def test_the_app_refuses_a_database_behind_this_release(empty_url: str, tmp_path: Path) -> None:
    upgrade_database(empty_url, "0001")
    with pytest.raises(SchemaNotCurrentError, match="schema is at 0001.*idp db upgrade"):
        create_app(_settings(empty_url, tmp_path))
    upgrade_database(empty_url)
    app = create_app(_settings(empty_url, tmp_path))
    app.extensions["idp"].close()


def test_gunicorn_on_an_unmigrated_database_exits_with_the_reason(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'never-migrated.sqlite3'}"
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO_ROOT),
        "IDP_DATABASE_URL": url,
        "IDP_SECRET_KEY": TEST_SECRET,
        "IDP_INSTANCE_PATH": str(tmp_path),
        "IDP_BIND": "127.0.0.1:0",
        "IDP_WORKERS": "1",
    }
    result = subprocess.run(  # noqa: S603 - the project's own interpreter and gunicorn config
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "refusing to start: The database has no tables of this service yet." in result.stderr
    assert "idp db upgrade" in result.stderr


def _waiting_for_the_lock(url: str) -> bool:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                    "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()"
                )
            ).scalar_one()
            return int(waiting) > 0
    finally:
        engine.dispose()


def test_a_migration_waits_for_the_one_already_running(empty_pg_url: str) -> None:
    holder = create_engine(empty_pg_url)
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            upgrade_database(empty_pg_url)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    try:
        with holder.connect() as conn, conn.begin():
            # Another process is migrating: it holds the lock in its transaction.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            thread = threading.Thread(target=migrate)
            thread.start()
            deadline = time.monotonic() + 60
            while not _waiting_for_the_lock(empty_pg_url):
                assert thread.is_alive(), errors
                assert time.monotonic() < deadline, "the migration never asked for the lock"
                time.sleep(0.05)
            assert _current(empty_pg_url) == set()
        thread.join(timeout=120)
    finally:
        holder.dispose()
    assert not thread.is_alive()
    assert errors == []
    assert _current(empty_pg_url) == _heads()


def test_migrations_started_together_all_succeed(empty_pg_url: str) -> None:
    # Containers starting together: separate processes, each running every migration.
    script = "import sys; from idp.storage.db import upgrade_database; upgrade_database(sys.argv[1])"
    processes = [
        subprocess.Popen(  # noqa: S603 - the project's own interpreter
            [sys.executable, "-c", script, empty_pg_url],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outcomes = [(process.wait(timeout=120), process.communicate()[1]) for process in processes]
    assert [code for code, _ in outcomes] == [0, 0, 0, 0], [err for _, err in outcomes]
    assert _current(empty_pg_url) == _heads()
