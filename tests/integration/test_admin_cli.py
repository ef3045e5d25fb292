"""``idp admin-keys`` and ``idp clients`` on a real SQLite database, and the demo admin key."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from idp import cli
from idp.admin.audit import AuditLog
from idp.admin.keys import AdminKeyService
from idp.clock import SystemClock
from idp.storage.db import Database, upgrade_database
from tests.conftest import TEST_SECRET

pytestmark = pytest.mark.integration


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    upgrade_database(url)
    for name, value in {
        "IDP_DATABASE_URL": url,
        "IDP_SECRET_KEY": TEST_SECRET,
        "IDP_ENV": "test",
        "IDP_INSTANCE_PATH": str(tmp_path),
        "IDP_LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("IDP_REDIS_URL", raising=False)
    db = Database(url)
    yield db
    db.dispose()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_admin_keys_create_list_revoke(database: Any, capsys: pytest.CaptureFixture[str]) -> None:
    keys = AdminKeyService(database, SystemClock())
    code, out, _ = _run(capsys, "admin-keys", "create", "--name", "ops", "--scopes", "events:read,events:write")
    assert code == 0
    key = out.strip().splitlines()[-1]
    record = keys.authenticate(key)
    assert record is not None and record.scopes == ["events:read", "events:write"] and record.name == "ops"
    assert f"key_id: {record.key_id}" in out

    code, out, _ = _run(capsys, "admin-keys", "create", "--name", "ci", "--scopes", "admin", "--quiet")
    quiet_key = out.strip()
    assert code == 0 and quiet_key.startswith("idpk_") and "\n" not in quiet_key
    assert keys.authenticate(quiet_key) is not None

    code, out, _ = _run(capsys, "admin-keys", "list")
    listed = json.loads(out)
    assert {k["name"] for k in listed} == {"ops", "ci"}
    assert key not in out and quiet_key not in out and "hash" not in out

    code, out, _ = _run(capsys, "admin-keys", "revoke", record.key_id)
    assert code == 0 and record.key_id in out
    assert keys.authenticate(key) is None
    assert keys.authenticate(quiet_key) is not None

    code, _, err = _run(capsys, "admin-keys", "create", "--name", "bad", "--scopes", "root")
    assert code == 1 and "invalid_scopes" in err
    code, _, err = _run(capsys, "admin-keys", "revoke", "0123456789abcdef")
    assert code == 1 and "admin_key_not_found" in err

    actions = [(e.action, e.detail.get("via")) for e in AuditLog(database, SystemClock()).list()[0]]
    assert actions == [("admin_key.revoke", "cli"), ("admin_key.create", "cli"), ("admin_key.create", "cli")]


def test_clients_create_prints_the_secret_once(database: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "events", "create", "sale")[0] == 0
    code, out, err = _run(
        capsys,
        "clients",
        "create",
        "--event",
        "sale",
        "--redirect-uri",
        "https://rp.example/cb",
        "--redirect-uri",
        "https://rp.example/cb2",
        "--initiate-login-uri",
        "https://rp.example/login",
        "--name",
        "Shop",
    )
    assert code == 0 and "shown this once" in err
    created = json.loads(out)
    assert created["redirect_uris"] == ["https://rp.example/cb", "https://rp.example/cb2"]
    assert created["initiate_login_uri"] == "https://rp.example/login" and created["name"] == "Shop"

    from idp.clients.service import ClientService

    stored = ClientService(database, SystemClock(), 0).get(created["client_id"])
    assert stored.check_secret(created["client_secret"])
    code, out, _ = _run(capsys, "clients", "list")
    assert created["client_id"] in out and created["client_secret"] not in out

    code, _, err = _run(capsys, "clients", "create", "--event", "nope", "--redirect-uri", "https://rp.example/cb")
    assert code == 1 and "event_not_found" in err
    code, _, err = _run(capsys, "clients", "create", "--event", "sale", "--redirect-uri", "not a url")
    assert code == 1 and "invalid_field" in err


def test_serve_demo_prints_an_admin_key_once(database: Any, capsys: pytest.CaptureFixture[str]) -> None:
    cli._load_plugins()
    settings = cli._settings()
    args = argparse.Namespace(host="127.0.0.1", port=8123)
    cli._demo(settings, args)
    out = capsys.readouterr().out
    key = next(line.strip() for line in out.splitlines() if line.strip().startswith("idpk_"))
    record = AdminKeyService(database, SystemClock()).authenticate(key)
    assert record is not None and record.name == "demo" and record.scopes == ["admin"]
    assert "http://127.0.0.1:8123/admin/api/increment_serving_counter" in out
    assert f"Authorization: Bearer {key}" in out

    cli._demo(settings, args)
    again = capsys.readouterr().out
    assert "idpk_" not in again and f"Demo admin key exists (key_id {record.key_id})" in again
    assert len(AdminKeyService(database, SystemClock()).list()) == 1


@pytest.mark.parametrize(
    ("bind", "base"),
    [
        (None, "http://127.0.0.1:8000"),
        ("127.0.0.1:9123", "http://127.0.0.1:9123"),
        ("0.0.0.0:9124", "http://127.0.0.1:9124"),
        ("[::]:9125", "http://[::1]:9125"),
        ("[::1]:9126,127.0.0.1:9127", "http://[::1]:9126"),
        ("localhost", "http://localhost:8000"),
    ],
)
def test_serve_demo_prints_the_address_it_binds(
    database: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, bind: str | None, base: str
) -> None:
    if bind is None:
        monkeypatch.delenv("IDP_BIND", raising=False)
    else:
        monkeypatch.setenv("IDP_BIND", bind)
    started: list[dict[str, str]] = []
    monkeypatch.setattr(cli.os, "execve", lambda path, argv, env: started.append(env))
    assert cli.main(["serve", "--demo"]) == 0
    out = capsys.readouterr().out
    assert f"{base}/api/serving_num?event_id=demo" in out
    assert f"{base}/admin/api/increment_serving_counter" in out
    assert f"Discovery:     {base}/.well-known/openid-configuration" in out
    assert ":8000" not in out.replace(base, "") and started[0]["IDP_BIND"] == (bind or "127.0.0.1:8000")


def test_clients_create_public_prints_no_secret(database: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "events", "create", "sale")[0] == 0
    code, out, err = _run(
        capsys, "clients", "create", "--event", "sale", "--redirect-uri", "https://spa.example/cb", "--public"
    )
    assert code == 0 and "shown this once" not in err
    created = json.loads(out)
    assert "client_secret" not in created
    assert created["token_endpoint_auth_methods"] == ["none"]
    assert created["require_pkce"] is True and created["refresh_token_rotation"] is True
