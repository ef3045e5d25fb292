"""The unit tier runs with the service's own dependencies and pytest alone.

A unit test module that needs a test-only library (from the ``test`` extra) is named here with it: on a
machine without that library the module is left out, and under CI (where everything is installed) a
missing one fails the collection instead.
"""

from __future__ import annotations

import importlib.util

from tests.conftest import IN_CI

NEEDS_TEST_EXTRAS = {
    "test_engine_rules.py": "hypothesis",
    "test_hashing.py": "hypothesis",
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


collect_ignore = [] if IN_CI else [name for name, module in NEEDS_TEST_EXTRAS.items() if not _installed(module)]
