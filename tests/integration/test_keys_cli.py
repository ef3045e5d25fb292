"""``idp keys rotate`` and ``idp keys list`` against a real database, and the first-start key."""

from __future__ import annotations

import json

import pytest

from idp import cli
from idp.clock import SystemClock
from idp.storage.db import Database, upgrade_database
from idp.tokens.keys import KeyManager
from tests.conftest import TEST_SECRET

pytestmark = pytest.mark.integration


@pytest.fixture
def database_url(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'idp.sqlite3'}"
    upgrade_database(url)
    for name in ("IDP_REDIS_URL", "IDP_ISSUER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDP_ENV", "test")
    monkeypatch.setenv("IDP_DATABASE_URL", url)
    monkeypatch.setenv("IDP_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("IDP_INSTANCE_PATH", str(tmp_path))
    return url


def run(capsys, *argv: str) -> object:
    assert cli.main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_rotate_and_list(database_url, capsys):
    first = run(capsys, "keys", "rotate")
    assert first["rotated"] == "RS256"
    es = run(capsys, "keys", "rotate", "--alg", "ES256")
    assert es["rotated"] == "ES256"
    second = run(capsys, "keys", "rotate")
    listed = run(capsys, "keys", "list")
    statuses = {k["kid"]: (k["alg"], k["status"]) for k in listed}
    assert statuses == {
        first["active_kid"]: ("RS256", "retiring"),
        es["active_kid"]: ("ES256", "active"),
        second["active_kid"]: ("RS256", "active"),
    }
    for key in listed:
        assert set(key) == {"kid", "alg", "status", "created_at", "retiring_at", "retire_after"}
    # What the command made is what the service signs with.
    db = Database(database_url)
    try:
        keys = KeyManager(db, TEST_SECRET, SystemClock(), 60)
        assert keys.signing_key().kid == second["active_kid"]
        assert keys.signing_key("ES256").kid == es["active_kid"]
    finally:
        db.dispose()


def test_rotate_refuses_an_unknown_algorithm(database_url, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["keys", "rotate", "--alg", "HS256"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_first_start_creates_one_signing_key(database_url, capsys):
    from idp.config import Settings
    from idp.tokens.cli import prepare_keys

    cli._load_plugins()
    assert prepare_keys in cli._PREPARE_HOOKS
    settings = Settings.from_env().validate()
    prepare_keys(settings)
    prepare_keys(settings)
    listed = run(capsys, "keys", "list")
    assert [(k["alg"], k["status"]) for k in listed] == [("RS256", "active")]
