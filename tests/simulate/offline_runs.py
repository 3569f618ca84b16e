"""The scenario gates' offline runs, in spawned processes that start as soon as the session has
collected a gate (tests/simulate/conftest.py), so they run beside the tests before it.

The gates (the standard suite, the incident suite) are most of the suite's CPU, and the tests
before them mostly wait on servers: started early, the runs are done, or nearly, when their
tests ask for them. Each scenario runs exactly as the test itself would run it (`run_offline`
with the default config, in a fresh process); only where and when changes. Processes are
spawned, not forked, from a test process that may hold gRPC and event-loop threads.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from via_otlp.config import Config
from via_otlp.simulate import incidents
from via_otlp.simulate.run import RunResult, run_offline
from via_otlp.simulate.scenario import Scenario, load_scenario


def run_scenario(path: str) -> RunResult:
    """One scenario, offline, with the default config (in a worker process)."""
    result = run_offline(load_scenario(Path(path)), Config())
    # The trace-id hook is a closure (not picklable); `restore` makes it again from the traffic.
    result.traffic.decorate = None
    return result


def restore(result: RunResult) -> RunResult:
    """A worker's result as `run_offline` returned it: with its traffic's trace-id hook."""
    if any(a.traces for a in result.scenario.anomalies):
        result.traffic.decorate = incidents.shared_trace_ids(result.traffic)
    return result


def cost(scenario: Scenario) -> float:
    """A scenario's relative cost: records plus profile-buckets (longest runs go first)."""
    templates = [t for s in scenario.sources for t in s.templates]
    per_bucket = sum(t.rate for t in templates) + len(templates)
    return scenario.duration / scenario.bucket * per_bucket


class BackgroundRuns:
    """Scenario runs in a pool of spawned processes (one per core), each run once a session."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._futures: dict[str, Future[RunResult]] = {}

    def submit(self, paths: list[str]) -> None:
        """Start the runs of `paths` not started yet, the costliest first."""
        todo = [p for p in dict.fromkeys(paths) if p not in self._futures]
        if not todo:
            return
        if self._pool is None:
            workers = max(1, len(os.sched_getaffinity(0)))
            self._pool = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn")
            )
        for p in sorted(todo, key=lambda p: -cost(load_scenario(Path(p)))):
            self._futures[p] = self._pool.submit(run_scenario, p)

    def results(self, paths: list[str]) -> list[RunResult]:
        """The runs of `paths`, in that order (started now if the session did not start them)."""
        self.submit(paths)
        return [restore(self._futures[p].result()) for p in paths]

    def shutdown(self) -> None:
        """Stop the pool; runs still going (a session stopped early: -x, ^C) are not waited for."""
        pool, self._pool = self._pool, None
        if pool is not None:
            if not all(f.done() for f in self._futures.values()):
                for proc in list((getattr(pool, "_processes", None) or {}).values()):
                    proc.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
        self._futures.clear()


RUNS = BackgroundRuns()
