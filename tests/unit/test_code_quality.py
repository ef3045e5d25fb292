"""The code stays formatted, lint-clean and strictly typed: ruff and mypy run with the suite.

The tools are the exact versions pinned in the ``test`` extra; a missing tool skips these tests on a
developer machine and fails them under CI.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import service_missing

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PYTHON_SOURCES = ["idp", "tests", "bench", "migrations", "wsgi.py", "gunicorn.conf.py"]


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).parent / tool
    if not executable.exists():
        service_missing(tool, FileNotFoundError(str(executable)))
    return subprocess.run(  # noqa: S603 - our own tools from the virtual environment, fixed arguments
        [str(executable), *args], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )


def test_ruff_check_finds_nothing() -> None:
    result = _run("ruff", "check", "--no-cache", *PYTHON_SOURCES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_would_change_nothing() -> None:
    result = _run("ruff", "format", "--check", "--no-cache", *PYTHON_SOURCES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_strict_over_every_module_of_idp() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    assert config["strict"] is True
    assert config["files"] == ["idp"]
    assert "ignore_missing_imports" not in config, "name the untyped libraries in an override instead"


def test_mypy_finds_nothing() -> None:
    # No arguments: the files and the strictness come from [tool.mypy] in pyproject.toml.
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Success: no issues found")
