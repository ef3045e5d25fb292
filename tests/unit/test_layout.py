"""The layout shows the architecture: only the web modules import Flask.

Services, stores and decisions (``idp.oidc.decisions``, ``idp.oidc.interaction``, the queue engine...)
are plain Python a unit test or a worker can use without an application or a request context.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

IDP = Path(__file__).resolve().parents[2] / "idp"
# Modules that are web by name: the views and HTTP glue of each package, and the web package itself.
WEB_NAMES = frozenset({"web.py", "views.py", "app.py"})
# Web modules by nature, not by name.
WEB_MODULES = frozenset(
    {
        "admin/auth.py",  # the admin API's key check on each request (a decorator of its views)
        "admin/operator.py",  # the admin API's operator views (inlet, webhooks, dashboard)
        "oidc/server.py",  # Authlib's Flask AuthorizationServer and its endpoints
    }
)


def _imports_flask(source: str) -> list[int]:
    """Lines that import flask (at any depth: a lazy import inside a function counts)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if any(name == "flask" or name.startswith("flask.") or ".flask" in name for name in names):
            lines.append(node.lineno)
    return lines


def _is_web(relative: Path) -> bool:
    return relative.parts[0] == "web" or relative.name in WEB_NAMES or relative.as_posix() in WEB_MODULES


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("from flask import request", True),
        ("import flask", True),
        ("import flask.json as j", True),
        ("def f():\n    from flask import g\n", True),
        ("from authlib.integrations.flask_oauth2 import AuthorizationServer", True),
        ("from idp.web.http import services", False),
        ("import flaskish", False),
    ],
)
def test_the_check_finds_a_flask_import(source: str, found: bool) -> None:
    assert bool(_imports_flask(source)) is found


def test_only_web_modules_import_flask() -> None:
    offenders = []
    for path in sorted(IDP.rglob("*.py")):
        relative = path.relative_to(IDP)
        if _is_web(relative):
            continue
        lines = _imports_flask(path.read_text(encoding="utf-8"))
        offenders += [f"idp/{relative.as_posix()}:{line}" for line in lines]
    assert offenders == [], "Flask belongs in the web modules: " + ", ".join(offenders)


def test_the_named_web_modules_exist() -> None:
    # A module moved or renamed must not leave a stale exception behind.
    assert all((IDP / name).is_file() for name in WEB_MODULES)
