"""Fixtures: the registry tests' real PostgreSQL (embedded, or VIA_TEST_DSN); and the scenario
gates' offline runs, started in spawned processes once the session is collected (offline_runs.py).

Under pytest-xdist every worker collects every test but runs only some, so a worker does not
start the runs when it collects (each worker would run them all); the gates go first instead,
and the worker given a gate starts its runs as the session begins."""

from __future__ import annotations

import os

import pytest

from tests.registry.conftest import data_dir, db_dsn, pg_server  # noqa: F401
from tests.simulate.offline_runs import RUNS


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under xdist, the tests marked `scenario_runs` first (their runs are most of the CPU)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.get_closest_marker("scenario_runs") is None)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the runs of every selected test marked `scenario_runs` (its module's GATE_PATHS)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    paths: list[str] = []
    for item in session.items:
        module = getattr(item, "module", None)
        if item.get_closest_marker("scenario_runs") and module is not None:
            paths += module.GATE_PATHS
    if paths:
        RUNS.submit(paths)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    RUNS.shutdown()
