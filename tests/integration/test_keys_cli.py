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
    # With no key yet a rotation signs at once; a later one is published now and signs from active_from.
    assert statuses == {
        first["kid"]: ("RS256", "active"),
        es["kid"]: ("ES256", "active"),
        second["kid"]: ("RS256", "next"),
    }
    assert first["active_from"] <= es["active_from"] < second["active_from"]
    for key in listed:
        assert set(key) == {"kid", "alg", "status", "created_at", "active_from", "retiring_at", "retire_after"}
    # What the command made is what the service signs with, and every change is in the audit log.
    db = Database(database_url)
    try:
        keys = KeyManager(db, TEST_SECRET, SystemClock(), 60)
        assert keys.signing_key().kid == first["kid"]
        assert keys.signing_key("ES256").kid == es["kid"]
        assert {k["kid"] for k in keys.jwks()["keys"]} == {first["kid"], es["kid"], second["kid"]}
        from idp.admin.audit import AuditLog

        entries, _cursor = AuditLog(db, SystemClock()).list()
        rotations = [(e.action, e.target, e.detail) for e in entries if e.action == "keys.rotate"]
        assert (
            "keys.rotate",
            second["kid"],
            {"alg": "RS256", "active_from": second["active_from"], "via": "cli"},
        ) in rotations
        assert len(rotations) == 3 and all(e.key_id is None for e in entries)
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
    assert sorted((k["alg"], k["status"]) for k in listed) == [("ES256", "active"), ("RS256", "active")]


def test_db_upgrade_makes_the_keys_of_both_algorithms(tmp_path, monkeypatch, capsys):
    # "idp db upgrade" then "gunicorn wsgi:app": the keys exist before any worker answers.
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    monkeypatch.setenv("IDP_ENV", "test")
    monkeypatch.setenv("IDP_DATABASE_URL", url)
    monkeypatch.setenv("IDP_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("IDP_INSTANCE_PATH", str(tmp_path))
    monkeypatch.delenv("IDP_REDIS_URL", raising=False)
    assert cli.main(["db", "upgrade"]) == 0
    capsys.readouterr()
    listed = run(capsys, "keys", "list")
    assert sorted((k["alg"], k["status"]) for k in listed) == [("ES256", "active"), ("RS256", "active")]


def test_events_create_is_in_the_audit_log(database_url, capsys):
    from idp.admin.audit import AuditLog

    assert cli.main(["events", "create", "concert", "--name", "Concert"]) == 0
    capsys.readouterr()
    db = Database(database_url)
    try:
        entries, _cursor = AuditLog(db, SystemClock()).list()
    finally:
        db.dispose()
    created = [e for e in entries if e.action == "event.create"]
    assert len(created) == 1 and created[0].target == "concert" and created[0].key_id is None
    assert created[0].detail["via"] == "cli" and created[0].detail["name"] == "Concert"
