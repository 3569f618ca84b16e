"""Fixtures: the registry tests' real PostgreSQL (embedded, or VIA_TEST_DSN); and the scenario
gates' offline runs, started in spawned processes once the session is collected (offline_runs.py)."""

from __future__ import annotations

import pytest

from tests.registry.conftest import data_dir, db_dsn, pg_server  # noqa: F401
from tests.simulate.offline_runs import RUNS


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the runs of every selected test marked `scenario_runs` (its module's GATE_PATHS)."""
    paths: list[str] = []
    for item in session.items:
        module = getattr(item, "module", None)
        if item.get_closest_marker("scenario_runs") and module is not None:
            paths += module.GATE_PATHS
    if paths:
        RUNS.submit(paths)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    RUNS.shutdown()
