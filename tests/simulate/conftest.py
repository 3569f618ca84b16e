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

# A gate waits for its runs (~500 s of CPU in all, the quiet week ~220 s of it): on a loaded
# 2-core machine (CI beside two CPU burners, or niced behind other work) that wait passed the
# suite's 900 s hang guard (1 of 1133 failed, nothing wrong but the wait). The guard for them is
# a hang guard too, not a speed check: well inside CI's 90 minutes.
GATE_TIMEOUT = 3000


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked `scenario_runs` get GATE_TIMEOUT; under xdist they go first (their
    runs are most of the CPU)."""
    for item in items:
        if item.get_closest_marker("scenario_runs") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(GATE_TIMEOUT))
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
