"""Schemathesis holds the server to ``openapi.yaml``: generated requests, valid and invalid, to every
public and admin operation (the admin ones with an admin key) get only answers the document describes,
and never a server error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from idp.app import create_app
from idp.clock import FrozenClock
from idp.config import Settings
from idp.storage.db import upgrade_database
from tests.conftest import TEST_SECRET

pytestmark = pytest.mark.integration

OPENAPI = Path(__file__).resolve().parents[2] / "idp" / "admin" / "openapi.yaml"
schema = schemathesis.openapi.from_path(OPENAPI)
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """The app on a fresh SQLite database, with an event, a client and an admin key holding every scope."""
    folder = tmp_path_factory.mktemp("openapi-fuzz")
    url = f"sqlite:///{folder / 'idp.sqlite3'}"
    upgrade_database(url)
    app = create_app(
        Settings(
            env="test",
            secret_key=TEST_SECRET,
            database_url=url,
            instance_path=str(folder),
            cache_ttl_ms=0,
            session_cache_seconds=0,
            log_level="CRITICAL",
        ),
        clock=FrozenClock(1_800_000_000),
    )
    services = app.extensions["idp"]
    services.events.create({"event_id": "sale", "name": "Sale"})
    _record, key = services.admin_keys.create("openapi-fuzz", ["admin"])
    yield app, key
    services.close()


# One test per operation, each with its own id: schemathesis's own parametrisation gives every
# operation the same node id, and pytest-xdist then runs only one of them.
OPERATIONS = [result.ok() for result in schema.get_all_operations()]


def test_the_document_describes_operations() -> None:
    assert len(OPERATIONS) > 50
    assert len({operation.label for operation in OPERATIONS}) == len(OPERATIONS)


@pytest.mark.parametrize("operation", OPERATIONS, ids=[operation.label for operation in OPERATIONS])
def test_every_answer_is_one_the_document_describes(operation: Any, served: tuple[Any, str]) -> None:
    app, key = served

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def answers(case: Any) -> None:
        response = case.call(app=app, headers={"Authorization": f"Bearer {key}"})
        case.validate_response(response, checks=CHECKS)

    answers()
