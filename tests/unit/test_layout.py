"""The layout shows the architecture: only the web modules import Flask.

Services, stores and decisions (``idp.oidc.decisions``, ``idp.oidc.interaction``, the queue engine...)
are plain Python a unit test or a worker can use without an application or a request context.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

IDP = Path(__file__).resolve().parents[2] / "idp"
# Modules that are web by name: the views and HTTP glue of each package, and the web package itself.
WEB_NAMES = frozenset({"web.py", "views.py", "app.py"})
# Web modules by nature, not by name.
WEB_MODULES = frozenset(
    {
        "admin/auth.py",  # the admin API's guard on each request (a decorator of its views)
        "admin/operator.py",  # the admin API's operator views (inlet, webhooks, dashboard)
        "oidc/server.py",  # Authlib's Flask AuthorizationServer and its endpoints
        "pages/respond.py",  # a waiting-room page as a Flask answer (its language, CSP nonce and headers)
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


# Views: parse the request, call a service, render. Queries live in the services that own the tables.
VIEW_MODULES = (
    "abuse/web.py",
    "admin/auth.py",
    "admin/operator.py",
    "admin/views.py",
    "api/views.py",
    "oidc/views.py",
    "pages/web.py",
    "tokens/web.py",
    "web/landing.py",
    "web/metrics.py",
    "web/ops.py",
)


def _queries_or_private_reach(source: str) -> list[str]:
    """SQLAlchemy imports (its exceptions aside) and reaches into another object's private attributes."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [
                f"{node.lineno}: imports {name}"
                for name in names
                if name.split(".")[0] == "sqlalchemy" and name != "sqlalchemy.exc"
            ]
        elif (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not isinstance(node.value, ast.Name)  # self._x and module._x are the module's own business
        ):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("from sqlalchemy import select", True),
        ("import sqlalchemy.orm", True),
        ("from sqlalchemy.exc import SQLAlchemyError", False),
        ("svc.tokens._sessions.invalidate()", True),
        ("services().tokens._sessions", True),
        ("self._cache.get(1)", False),
        ("svc.tokens.forget_sessions()", False),
    ],
)
def test_the_check_finds_a_query_or_a_private_reach(source: str, found: bool) -> None:
    assert bool(_queries_or_private_reach(source)) is found


@pytest.mark.parametrize("module", VIEW_MODULES)
def test_views_run_no_queries_and_touch_no_private_attribute(module: str) -> None:
    assert _queries_or_private_reach((IDP / module).read_text(encoding="utf-8")) == []


# The services and decisions a view calls load without Flask, even through what they import.
FLASK_FREE = (
    "idp.admin.keys",
    "idp.admin.service",
    "idp.oidc.cookies",
    "idp.oidc.decisions",
    "idp.oidc.interaction",
    "idp.oidc.tickets",
    "idp.pages.cookies",
    "idp.pages.places",
    "idp.pages.return_urls",
    "idp.queue.engine",
    "idp.tokens.issuer",
)


def test_services_and_decisions_load_without_flask() -> None:
    script = (
        "import importlib, sys\n"
        f"for name in {FLASK_FREE!r}:\n"
        "    importlib.import_module(name)\n"
        "    loaded = sorted(m for m in sys.modules if m == 'flask' or m.startswith('flask.'))\n"
        "    assert not loaded, (name, loaded)\n"
    )
    result = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
