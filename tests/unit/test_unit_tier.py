"""``make test-unit`` needs no service and no test extra: it collects and runs with pytest alone."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
# The import names of the ``test`` extra, besides pytest itself.
TEST_EXTRAS = (
    "xdist",
    "jwt",
    "jwcrypto",
    "playwright",
    "openapi_core",
    "openapi_spec_validator",
    "hypothesis",
    "kubernetes_validate",
    "yaml",
    "schemathesis",
)
BLOCKER = f"""
import sys

BLOCKED = {TEST_EXTRAS!r}


class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (a test extra, not installed here)")
        return None


sys.meta_path.insert(0, _Blocker())
"""


def _make_test_unit_arguments() -> list[str]:
    recipe = re.search(r"^test-unit:.*\n\t(.+)$", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M)
    assert recipe is not None, "the Makefile has a test-unit target"
    words = recipe.group(1).split()
    assert words[:3] == ["$(BIN)/python", "-m", "pytest"], words
    return [word for word in words[3:] if word != "$(PYTEST_ARGS)"]


def test_the_unit_tier_collects_without_the_test_extras_or_any_service(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key not in ("CI", "PYTHONPATH")}
    # Only pytest is installed: no plugin of a test extra (hypothesis, xdist) registers itself.
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    # Nowhere to reach: a test that wanted Redis or PostgreSQL here would fail to connect.
    env.update(
        PYTHONPATH=str(tmp_path),
        IDP_TEST_REDIS_URL="redis://127.0.0.1:1/0",
        IDP_TEST_PG_ADMIN_URL="postgresql+psycopg2://postgres@127.0.0.1:1/postgres",
    )
    result = subprocess.run(  # noqa: S603 - the project's own interpreter
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            *_make_test_unit_arguments(),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "error" not in result.stdout.lower().split("\n")[-2], result.stdout[-2000:]
    collected = [line for line in result.stdout.splitlines() if line.startswith("tests/")]
    assert collected and all(line.startswith("tests/unit/") for line in collected)


def test_every_unit_module_is_in_the_unit_tier() -> None:
    # ``make test-unit`` selects ``-m unit``: a module in tests/unit without the mark never runs there.
    unmarked = [
        path.name
        for path in sorted((ROOT / "tests" / "unit").glob("test_*.py"))
        if not re.search(r"^pytestmark = .*pytest\.mark\.unit", path.read_text(encoding="utf-8"), re.M)
    ]
    assert unmarked == []
