"""Every ``IDP_*`` variable is read by ``Settings`` (one line each) and listed in the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from idp.config import _VARIABLES, Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"\bIDP_[A-Z0-9_]*[A-Z0-9]\b")
# Reading the environment directly: os.environ.get("IDP_..."), os.environ["IDP_..."], os.getenv("IDP_...").
DIRECT_READ = re.compile(r"""(environ(\.get)?\s*[\(\[]|getenv\s*\()\s*["']IDP_""")
VARIABLES = {variable for variable, _coerce in _VARIABLES.values()}
# Variables of the test suite and the benchmarks, not of the service.
HARNESS_PREFIXES = ("IDP_TEST_", "IDP_BENCH_")


def _sources() -> list[Path]:
    return sorted(
        [
            *(ROOT / "idp").rglob("*.py"),
            ROOT / "wsgi.py",
            ROOT / "gunicorn.conf.py",
            *(ROOT / "migrations").rglob("*.py"),
        ]
    )


def test_every_variable_is_listed_in_the_readme() -> None:
    readme = set(NAME.findall((ROOT / "README.md").read_text(encoding="utf-8")))
    assert sorted(VARIABLES - readme) == []


def test_the_readme_names_no_variable_the_service_does_not_read() -> None:
    readme = {
        name
        for name in NAME.findall((ROOT / "README.md").read_text(encoding="utf-8"))
        if not name.startswith(HARNESS_PREFIXES)
    }
    assert sorted(readme - VARIABLES) == []


def test_only_settings_reads_idp_variables_from_the_environment() -> None:
    readers = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in _sources()
        if path.name != "config.py" or path.parent.name != "idp"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if DIRECT_READ.search(line)
    ]
    assert readers == []


def test_the_code_names_no_variable_settings_does_not_read() -> None:
    unknown = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in _sources()
        for name in NAME.findall(path.read_text(encoding="utf-8"))
        if name not in VARIABLES
    }
    assert sorted(unknown) == []


def test_each_field_has_one_variable_and_each_variable_one_field() -> None:
    fields = {field for field in Settings.__dataclass_fields__}
    assert set(_VARIABLES) == fields
    assert len(VARIABLES) == len(_VARIABLES)


@pytest.mark.parametrize(
    ("variable", "raw", "field", "value"),
    [
        ("IDP_WORKERS", "3", "workers", 3),
        ("IDP_THREADS", "4", "threads", 4),
        ("IDP_BIND", "0.0.0.0:9000", "bind", "0.0.0.0:9000"),  # noqa: S104 - a value, nothing listens
        ("IDP_PORT", "9001", "port", 9001),
        ("IDP_MIGRATIONS_DIR", "/app/migrations", "migrations_dir", "/app/migrations"),
        ("IDP_RETRY_AFTER_SECONDS", "9", "retry_after_seconds", 9),
        ("IDP_KEEPALIVE", "65", "keepalive", 65),
    ],
)
def test_the_server_variables_are_settings(variable: str, raw: str, field: str, value: object) -> None:
    assert getattr(Settings.from_env({variable: raw}), field) == value


def test_the_default_database_lives_in_the_instance_folder(tmp_path: Path) -> None:
    settings = Settings.from_env({"IDP_INSTANCE_PATH": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'idp.sqlite3'}"
    assert Settings(instance_path=str(tmp_path)).database_url == settings.database_url
