"""Suite-wide collection order: the long runs start first.

The suite runs on pytest-xdist workers, one test file per worker at a time (``--dist loadfile``
in pyproject.toml). The real Flower deployment and the simulation spend most of their minutes
waiting on Flower's polling and deadlines; started first, they overlap the CPU-bound tests
instead of running alone at the end with no output.
"""

from __future__ import annotations

import pytest

#: The test files that take minutes, longest first: the real Flower runs, then the secure
#: training comparisons (one file, as its tests share the plain run).
LONG_RUNNING = (
    "tests/protocols/flower/test_flower_deployment.py",
    "tests/protocols/flower/test_flower_simulation.py",
    "tests/models/test_secure_training.py",
)


def _rank(item: pytest.Item) -> int:
    path = item.nodeid.partition("::")[0]
    return LONG_RUNNING.index(path) if path in LONG_RUNNING else len(LONG_RUNNING)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the long Flower tests to the front, keeping every other test's order."""
    items.sort(key=_rank)
