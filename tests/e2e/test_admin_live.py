"""The admin API against a real gunicorn server: the README's shell example, and a whole event."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.admin_support import bearer, claims
from tests.commands import child_env
from tests.openapi_check import ValidatingSession

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "operate-event.sh"


def _readme_blocks() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("## Operating an event")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def test_the_readme_calls_the_installed_command_by_its_path() -> None:
    """Right after ``make run`` there is no ``idp`` on ``PATH``: every shell example names ``.venv/bin/idp``."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```(?:sh|bash|console)\n(.*?)```", text, flags=re.S)
    bare = [line for block in blocks for line in block.splitlines() if re.search(r"(^|[\s$(`;|&])idp\s", line)]
    assert bare == []
    # Prose names the command by its path too; only the lines about what runs inside the image say plain idp.
    inline = [
        m for line in text.splitlines() if "inside the image" not in line for m in re.findall(r"`(idp [^`]*)`", line)
    ]
    assert inline == []


def test_the_readme_quotes_the_script_exactly() -> None:
    blocks = _readme_blocks()
    assert len(blocks) == 2
    assert blocks[1] == SCRIPT.read_text(encoding="utf-8")
    assert "sh scripts/operate-event.sh" in blocks[0]


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_the_readme_example_runs_against_a_live_server(live_server: Any, backend: str) -> None:
    server = live_server(backend)
    setup = _readme_blocks()[0]
    # The block runs exactly as a reader pastes it, from the checkout's root, with no ``idp`` on PATH.
    assert (REPO / ".venv" / "bin" / "idp").exists(), "run the tests with the checkout's .venv (make test)"
    env = child_env({**server.env, "BASE": server.url}, with_venv=False)
    assert shutil.which("idp", path=env["PATH"]) is None
    result = subprocess.run(
        ["bash", "-c", "set -eu\n" + setup], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sections: dict[str, list[str]] = {}
    current = ""
    for line in result.stdout.splitlines():
        if line.startswith("== "):
            current = line[3:]
            sections[current] = []
        elif line.strip():
            sections[current].append(line)
    assert sections["create the event"] == ['{"event_id":"concert","name":"Concert"}']
    client = sections["register a relying party (its client_secret is shown only now)"][0]
    assert '"event_id":"concert"' in client and '"has_secret":true' in client
    assert sections["two visitors join"] == ['{"queue_number":2}']
    assert sections["admit one"] == ['{"serving_num":1}']
    assert sections["the first visitor's token set"] == ["verify: 200"]
    assert sections["stats"] == ['{"queue":2,"serving":1,"waiting":1,"tokens":1,"active_tokens":1}']
    assert sections["the visitor is done on the site"] == ['{"status":1}', '{"active_tokens":0}']
    assert sections["start over"] == ['{"event_id":"concert"}', '{"queue_number":1}']
    # The key the README made is an admin key in the server's database, and its writes were audited.
    services = server.services()
    from idp.admin.audit import AuditLog

    entries, _ = AuditLog(services.db, services.clock).list()
    assert [e.action for e in reversed(entries)] == [
        "admin_key.create",
        "event.create",
        "client.create",
        "increment_serving_counter",
        "generate_token",
        "update_session",
        "reset_initial_state",
    ]


def test_a_whole_event_against_gunicorn(live_server: Any) -> None:
    # A hundred visitors from one test address: the per-address join limit is not what this test is about.
    server = live_server("postgres", IDP_SESSION_CACHE_SECONDS=0, IDP_WORKERS=2, IDP_RATE_LIMITS="off")
    from idp.admin.keys import AdminKeyService

    services = server.services()
    _record, key = AdminKeyService(services.db, services.clock).create("e2e", ["admin"])
    admin = bearer(key)
    api = ValidatingSession(server.url)
    try:
        assert api.post("/admin/api/events", headers=admin, json={"event_id": "live"}).status_code == 201
        assert (
            api.post(
                "/admin/api/clients",
                headers=admin,
                json={"event_id": "live", "redirect_uris": ["https://rp.example/cb"]},
            ).status_code
            == 201
        )
        joined = [api.post("/api/assign_queue_num", json={"event_id": "live"}).json() for _ in range(100)]
        assert sorted(j["queue_number"] for j in joined) == list(range(1, 101))
        by_position = {j["queue_number"]: j["api_request_id"] for j in joined}
        assert api.post(
            "/admin/api/increment_serving_counter", headers=admin, json={"event_id": "live", "increment_by": 25}
        ).json() == {"serving_num": 25}
        tokens = {}
        for position in range(1, 26):
            response = api.post(
                "/admin/api/generate_token",
                headers=admin,
                json={"event_id": "live", "request_id": by_position[position]},
            )
            assert response.status_code == 200
            tokens[position] = response.json()
            assert claims(response.json()["access_token"])["queue_position"] == position
        assert (
            api.post("/api/generate_token", json={"event_id": "live", "request_id": by_position[26]}).status_code == 202
        )
        for position in range(1, 6):
            assert (
                api.post(
                    "/admin/api/update_session",
                    headers=admin,
                    json={"event_id": "live", "request_id": by_position[position], "status": 1},
                ).status_code
                == 200
            )
        for position in range(6, 9):
            assert (
                api.post(
                    "/admin/api/update_session",
                    headers=admin,
                    json={"event_id": "live", "request_id": by_position[position], "status": -1},
                ).status_code
                == 200
            )
        assert (
            api.post(
                "/admin/api/update_session",
                headers=admin,
                json={"event_id": "live", "request_id": by_position[1], "status": -1},
            ).status_code
            == 409
        )
        assert api.get("/verify?event_id=live", headers=bearer(tokens[1]["access_token"])).status_code == 401
        assert api.get("/verify?event_id=live", headers=bearer(tokens[9]["access_token"])).status_code == 200
        stats = api.get("/admin/api/events/live/stats", headers=admin).json()
        assert stats == {
            "event_id": "live",
            "queue": 100,
            "serving": 25,
            "waiting": 75,
            "tokens": 25,
            "expired": 0,
            "completed": 5,
            "abandoned": 3,
            "max_expired": 0,
            "active_tokens": 17,
            "lost": 0,
        }

        assert api.post("/admin/api/reset_initial_state", headers=admin, json={"event_id": "live"}).status_code == 200
        assert api.get("/admin/api/events/live/stats", headers=admin).json()["queue"] == 0
        assert api.get("/verify?event_id=live", headers=bearer(tokens[9]["access_token"])).status_code == 401
        assert api.get("/api/queue_num", params={"event_id": "live", "request_id": by_position[9]}).status_code == 404
        rejoined = api.post("/api/assign_queue_num", json={"event_id": "live"})
        assert rejoined.json().get("queue_number") == 1, rejoined.text
        assert api.checked > 130
    finally:
        api.close()
