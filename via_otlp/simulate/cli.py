"""`via-otlp simulate`: run labelled scenarios, score them, print, store and draw the results."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from via_otlp.config import Config, load_config

if TYPE_CHECKING:  # the runners pull in the whole pipeline: imported when the command runs
    from via_otlp.simulate.run import ProgressFn, RunResult
    from via_otlp.simulate.scenario import Scenario

# The scenario suite of the source tree; an installed copy (the container image) names its own
# place with VIA_SCENARIOS_DIR.
STANDARD_SUITE = Path(__file__).resolve().parents[2] / "config" / "scenarios"


def standard_suite() -> Path:
    """Where the standard scenarios are: $VIA_SCENARIOS_DIR, else the source tree's."""
    import os

    return Path(os.environ.get("VIA_SCENARIOS_DIR") or STANDARD_SUITE)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "simulate",
        help="run labelled scenarios through the pipeline and score precision, recall, F1, delay",
        description="Generate labelled traffic from scenario files, run it through the same "
        "pipeline as `serve` (offline in event time, or against a live server), and score it.",
    )
    p.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO",
        help="scenario files (JSON5) or directories of them (default: config/scenarios)",
    )  # fmt: skip
    p.add_argument(
        "--live", metavar="HOST:PORT",
        help="send to a running server over OTLP/gRPC instead (its emit.endpoint must point at "
        "http://COLLECT (plaintext), and its receive.max_future_skew must cover the scenario)",
    )  # fmt: skip
    p.add_argument(
        "--collect", metavar="HOST:PORT", default="127.0.0.1:4319",
        help="with --live: where to receive the server's anomaly logs (default 127.0.0.1:4319)",
    )  # fmt: skip
    p.add_argument("--report", metavar="FILE", help="write the JSON report to FILE")
    p.add_argument("--plot", metavar="DIR", help="write one PNG per scenario into DIR (matplotlib)")
    p.add_argument("--write-otlp", metavar="DIR",
                   help="also write each scenario's traffic as OTLP/JSON lines (the replay format)")  # fmt: skip
    p.add_argument("--check", action="store_true",
                   help="exit 1 when a target is missed (with --families/--count-series: #10's)")  # fmt: skip
    p.add_argument(
        "--config", "-c", metavar="FILE",
        help="via-otlp config (detect settings; with its registry enabled, results are also "
        "stored in evaluation_metrics). Default: built-in defaults, no registry",
    )  # fmt: skip
    g = p.add_argument_group("evaluations made from code (issue #10; no scenario files)")
    g.add_argument("--families", action="store_true",
                   help="scenario families: per kind found/missed and delay, false episodes per "
                   "source-day on day one and day seven (via_otlp/simulate/families.py)")  # fmt: skip
    g.add_argument("--count-series", action="store_true",
                   help="5-minute count series scored in the style of the NAB benchmark "
                   "(via_otlp/simulate/countseries.py)")  # fmt: skip
    g.add_argument("--seeds", type=int, default=5, metavar="N", help="seeds to run (default 5)")
    g.add_argument("--first-seed", type=int, default=1, metavar="K",
                   help="the seeds are K..K+N-1 (default 1): hold out other seeds")  # fmt: skip
    g.add_argument("--count-config", metavar="FILE",
                   help="--count-series: detector config for 5-minute buckets "
                   "(default via_otlp/simulate/countseries.json5)")  # fmt: skip
    g.add_argument("--deployment", choices=("day1", "day7", "both"), default="both",
                   help="--families: which deployment(s) to run (default both)")  # fmt: skip
    g.add_argument("--wander", type=_wander, default=60.0, metavar="SECONDS",
                   help="--families: every how many seconds the rates' noise draws a new factor "
                   "(default 60: minute-scale; 300 or 900 check a coarser wander than the one "
                   "the detector was developed on)")  # fmt: skip
    g.add_argument("--daily", type=_amplitude, default=None, metavar="AMPLITUDE",
                   help="--families: every service's daily curve 1 + A·cos(...) at this A in [0, 1) "
                   "(default: drawn, 0.3-0.7; 0.9 checks a deep night, 5 %% of the peak)")  # fmt: skip
    g.add_argument("--daily-shape", choices=("cosine", "business"), default="cosine",
                   help="--families: the daily curve's shape (default cosine, as developed on; "
                   "business: a working day, a steep morning rise at 08:00-09:00, a plateau with "
                   "a lunch dip, an evening decline, the night as deep and the mean as the cosine's)")  # fmt: skip
    g.add_argument("--noise", choices=("gamma", "walk"), default="gamma",
                   help="--families: the rates' noise (default gamma, a factor drawn every "
                   "--wander seconds, as developed on; walk: the log-rate a mean-reverting walk, "
                   "correlation time 20-60 min, partly shared by a service's templates, its "
                   "variance the gamma's)")  # fmt: skip
    p.set_defaults(func=cmd_simulate)


def _wander(text: str) -> float:
    """`--wander`: seconds, checked as `build_case` checks them (families imported only here)."""
    from via_otlp.simulate.families import checked_wander

    return _checked(checked_wander, text)


def _amplitude(text: str) -> float:
    """`--daily`: a daily curve's amplitude, checked as `build_case` checks it."""
    from via_otlp.simulate.families import checked_daily

    return _checked(checked_daily, text)


def _checked(check: Callable[[float], float], text: str) -> float:
    """`text` as a number that passes `check`, or argparse's error with the check's words."""
    try:
        return check(float(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def require_matplotlib() -> None:
    """Fail now, with the fix, when `--plot` cannot draw (a whole run would be lost)."""
    from via_otlp.errors import ViaError

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ViaError("--plot needs matplotlib", hint="pip install 'via-otlp[plot]'") from None


def scenario_files(args: list[str]) -> list[Path]:
    paths = [Path(a) for a in args] or [standard_suite()]
    out: list[Path] = []
    for p in paths:
        out += sorted(p.glob("*.json5")) if p.is_dir() else [p]
    return out


class ProgressLine:
    """One line on stderr per running scenario, updated in place on a terminal."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last = 0.0

    def for_scenario(self, sc: Scenario) -> ProgressFn:
        started = time.monotonic()

        def show(done: int, total: int) -> None:
            now = time.monotonic()
            if not self.tty or (now - self._last < 0.2 and done < total):
                return
            self._last = now
            pct = 100.0 * done / max(total, 1)
            self.stream.write(
                f"\r{sc.name}: {pct:5.1f}%  {done:,}/{total:,} records  {now - started:.1f}s\033[K"
            )
            self.stream.flush()

        return show

    def labelled(self, label: str) -> ProgressFn:
        """A progress function for one run of an evaluation (`--families`, `--count-series`)."""
        started = time.monotonic()

        def show(done: int, total: int) -> None:
            now = time.monotonic()
            if not self.tty or (now - self._last < 0.5 and done < total):
                return
            self._last = now
            pct = 100.0 * done / max(total, 1)
            self.stream.write(f"\r{label}: {pct:5.1f}%  {done:,}/{total:,} records  "
                              f"{now - started:.0f}s\033[K")  # fmt: skip
            if done >= total:
                self.stream.write("\r\033[K")
            self.stream.flush()

        return show

    def done(self, r: RunResult) -> None:
        end = "\r\033[K" if self.tty else ""
        self.stream.write(
            f"{end}{r.scenario.name}: {r.records:,} records in {r.seconds:.1f}s, "
            f"{len(r.detections)} detections, F1 {r.score.overall.f1:.3f}\n"
        )
        self.stream.flush()


def cmd_simulate(args: argparse.Namespace) -> int:
    from via_otlp.simulate import report
    from via_otlp.simulate.run import run_live_sync, run_offline
    from via_otlp.simulate.scenario import load_scenario

    if args.families or args.count_series:
        return cmd_evaluations(args)
    if args.plot:
        require_matplotlib()  # before the run, not after it
    config = load_config(args.config) if args.config else Config()
    scenarios = [load_scenario(p) for p in scenario_files(args.scenarios)]
    if not scenarios:
        print("via-otlp: no scenario files found", file=sys.stderr)
        return 2
    progress = ProgressLine()
    started = time.monotonic()
    results: list[RunResult] = []
    if args.write_otlp:
        from via_otlp.simulate.generate import generate

        Path(args.write_otlp).mkdir(parents=True, exist_ok=True)
        for sc in scenarios:
            generate(sc).write_jsonl(Path(args.write_otlp) / f"{sc.name}.otlp.jsonl")
    if args.live:
        results = run_live_sync(
            scenarios, args.live, args.collect, config.detect.bucket_ns, progress.for_scenario
        )
        for r in results:
            progress.done(r)
    else:
        for sc in scenarios:
            r = run_offline(sc, config, progress.for_scenario(sc))
            progress.done(r)
            results.append(r)
    print(report.table(results))
    missed = report.failures(results)
    if not args.live:  # incident grouping needs the events, which only an offline run keeps
        from via_otlp.simulate import incidents

        missed += incidents.report_incidents(results, config)
    print(f"{len(results)} scenario(s) in {time.monotonic() - started:.1f}s")
    if args.report:
        report.write_report(args.report, results)
        print(f"report written to {args.report}", file=sys.stderr)
    if args.plot:
        for r in results:
            path = report.plot(r, args.plot)
            print(f"plot written to {path}", file=sys.stderr)
    if args.config and config.registry.enabled:
        run_id = f"simulate-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        n = asyncio.run(record_evaluations(config, report.evaluation_rows(results, run_id)))
        print(f"{n} evaluation_metrics row(s) recorded as run {run_id}", file=sys.stderr)
    for line in missed:
        print(f"target missed: {line}", file=sys.stderr)
    return 1 if args.check and missed else 0


def cmd_evaluations(args: argparse.Namespace) -> int:
    """`--families` and/or `--count-series`: run, print the summary, write the JSON report."""
    import json

    seeds = list(range(args.first_seed, args.first_seed + max(1, args.seeds)))
    progress = ProgressLine()
    out: dict[str, Any] = {}
    missed: list[str] = []
    started = time.monotonic()
    if args.families:
        from via_otlp.simulate.families import DEPLOYMENTS, run_families

        config = load_config(args.config) if args.config else Config()
        deps = DEPLOYMENTS if args.deployment == "both" else (args.deployment,)

        fam = run_families(
            seeds, config, deps, progress.labelled, args.wander, args.daily, args.daily_shape,
            args.noise,
        )  # fmt: skip
        print(fam.table())
        out["families"] = fam.to_json()
        missed += fam.failures()
    if args.count_series:
        from via_otlp.simulate.countseries import run_count_series

        cs = run_count_series(seeds, args.count_config, progress.labelled)
        print(cs.table())
        out["count_series"] = cs.to_json()
        missed += cs.failures()
    print(f"evaluations in {time.monotonic() - started:.1f}s")
    if args.report:
        Path(args.report).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
        print(f"report written to {args.report}", file=sys.stderr)
    for line in missed:
        print(f"target missed: {line}", file=sys.stderr)
    return 1 if args.check and missed else 0


async def record_evaluations(config: Config, rows: list[Any]) -> int:
    """Write `evaluation_metrics` rows through the registry (started and stopped here)."""
    from via_otlp.registry import Registry

    registry = Registry(config.registry, config.state.data_dir)
    await registry.start()
    try:
        n = sum(1 for row in rows if registry.record_evaluation(row))
        await registry.flush()
        return n
    finally:
        await registry.shutdown()
