"""Results: the terminal table, the JSON report, `evaluation_metrics` rows, and plots."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from via_otlp.registry.records import EvaluationRow
from via_otlp.simulate.run import RunResult
from via_otlp.simulate.scenario import InjectedKind
from via_otlp.simulate.score import KindScore, Score


@dataclass(frozen=True)
class Targets:
    """The standard suite's bar: a drop below it fails CI."""

    min_f1: float = 0.9
    max_false_per_source_day: float = 1.0  # on scenarios without anomalies
    max_median_delay: float = 2.0  # buckets, for spikes and new templates


def suite_score(results: Sequence[RunResult]) -> Score:
    total = Score()
    for r in results:
        total.merge(r.score, prefix=f"{r.scenario.name}:")
    return total


def quiet_rates(results: Sequence[RunResult]) -> dict[str, float]:
    """False episodes per source per day on scenarios with no anomalies at all."""
    out: dict[str, float] = {}
    for r in results:
        if not r.scenario.anomalies:
            for s, v in r.score.false_per_source_day().items():
                out[f"{r.scenario.name}:{s}"] = v
    return out


def failures(results: Sequence[RunResult], targets: Targets = Targets()) -> list[str]:
    """What misses the targets (empty: the suite passes)."""
    total = suite_score(results)
    out = []
    for kind, ks in sorted(total.by_kind.items()):
        if ks.windows and ks.f1 < targets.min_f1:
            out.append(f"{kind.value}: F1 {ks.f1:.3f} < {targets.min_f1}")
        if kind in (InjectedKind.SPIKE, InjectedKind.NEW_TEMPLATE):
            med = ks.delay_median
            if med is not None and med > targets.max_median_delay:
                out.append(
                    f"{kind.value}: median delay {med:.1f} > {targets.max_median_delay} buckets"
                )
    for where, rate in quiet_rates(results).items():
        if rate > targets.max_false_per_source_day:
            out.append(
                f"{where}: {rate:.2f} false episodes per day > {targets.max_false_per_source_day}"
            )
    return out


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def table(results: Sequence[RunResult]) -> str:
    """Per-scenario lines, then per kind and overall; then the quiet-week false-episode rates."""
    lines = [
        f"{'scenario':<28} {'mode':<7} {'records':>10} {'secs':>6} {'windows':>7} {'hit':>4} "
        f"{'FP':>4} {'F1':>6}"
    ]
    for r in results:
        o = r.score.overall
        lines.append(
            f"{r.scenario.name:<28} {r.mode:<7} {r.records:>10,} {r.seconds:>6.1f} {o.windows:>7} "
            f"{o.hits:>4} {o.false_positives:>4} {o.f1:>6.3f}"
        )
    total = suite_score(results)
    lines.append("")
    lines.append(
        f"{'kind':<14} {'windows':>7} {'TP':>4} {'FP':>4} {'miss':>4} {'precision':>9} "
        f"{'recall':>7} {'F1':>6} {'delay p50':>9} {'delay p90':>9}"
    )
    rows: list[tuple[str, KindScore]] = [(k.value, v) for k, v in sorted(total.by_kind.items())]
    rows.append(("overall", total.overall))
    for name, ks in rows:
        lines.append(
            f"{name:<14} {ks.windows:>7} {ks.hits:>4} {ks.false_positives:>4} {ks.misses:>4} "
            f"{ks.precision:>9.3f} {ks.recall:>7.3f} {ks.f1:>6.3f} {_fmt(ks.delay_median):>9} "
            f"{_fmt(ks.delay_p90):>9}"
        )
    quiet = quiet_rates(results)
    if quiet:
        lines.append("")
        lines.append("false episodes per source per day on quiet scenarios:")
        for where, v in sorted(quiet.items()):
            lines.append(f"  {where:<50} {v:.2f}")
    rates = total.false_per_source_day()
    if rates:
        lines.append(
            f"false episodes per source per day on quiet stretches, all scenarios: "
            f"mean {np.mean(list(rates.values())):.2f}, max {max(rates.values()):.2f}"
        )
    lines.append("delays are in buckets from the window start to the event (1 = the first bucket)")
    return "\n".join(lines)


def report_json(results: Sequence[RunResult], targets: Targets = Targets()) -> dict[str, Any]:
    total = suite_score(results)
    return {
        "version": 1,
        "scenarios": [
            {
                "name": r.scenario.name,
                "mode": r.mode,
                "records": r.records,
                "seconds": round(r.seconds, 3),
                "by_kind": {k.value: v.to_json() for k, v in sorted(r.score.by_kind.items())},
                "overall": r.score.overall.to_json(),
                "false_episodes_per_source_day": r.score.false_per_source_day(),
                "windows": [
                    {
                        "index": w.index,
                        "kind": w.kind.value,
                        "what": w.description,
                        "start_unix_nano": w.start_ns,
                        "end_unix_nano": w.end_ns,
                        "delay_buckets": r.score.window_hits.get(w.index),
                    }
                    for w in r.traffic.truth
                ],
                "false_positives": [
                    {
                        "kind": d.kind.value,
                        "source": d.source_key,
                        "template": d.template,
                        "started_unix_nano": d.started_ns,
                    }
                    for d in r.score.false_detections
                ],
            }
            for r in results
        ],
        "by_kind": {k.value: v.to_json() for k, v in sorted(total.by_kind.items())},
        "overall": total.overall.to_json(),
        "quiet_false_episodes_per_source_day": quiet_rates(results),
        "targets": {
            "min_f1": targets.min_f1,
            "max_false_per_source_day": targets.max_false_per_source_day,
            "max_median_delay_buckets": targets.max_median_delay,
        },
        "failures": failures(results, targets),
    }


def write_report(path: str | Path, results: Sequence[RunResult]) -> None:
    Path(path).write_text(json.dumps(report_json(results), indent=2) + "\n", encoding="utf-8")


def evaluation_rows(results: Sequence[RunResult], run: str) -> list[EvaluationRow]:
    """One `evaluation_metrics` row per scenario."""
    rows = []
    for r in results:
        o = r.score.overall
        delays = [d for k in r.score.by_kind.values() for d in k.delays]
        med = float(np.median(delays)) * r.scenario.bucket if delays else None
        rows.append(
            EvaluationRow(
                run=run,
                scenario=r.scenario.name,
                precision=o.precision,
                recall=o.recall,
                f1=o.f1,
                detection_delay_s=med,
                params={
                    "mode": r.mode,
                    "records": r.records,
                    "seed": r.scenario.seed,
                    "by_kind": {k.value: v.to_json() for k, v in r.score.by_kind.items()},
                    "false_episodes_per_source_day": r.score.false_per_source_day(),
                },
            )
        )
    return rows


def plot(result: RunResult, directory: str | Path) -> Path:
    """A PNG: each affected template's rate over time, truth windows shaded, detections marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the install
        from via_otlp.errors import ViaError

        raise ViaError("--plot needs matplotlib", hint="pip install 'via-otlp[plot]'") from exc
    tr = result.traffic
    sc = tr.scenario
    codes: list[int] = []
    for w in tr.truth:
        codes += [c for c in w.template_codes if c not in codes]
    if not codes:  # a quiet scenario: its busiest few templates
        codes = np.argsort(-tr.counts.sum(axis=1))[:4].tolist()
    codes = codes[:8]
    fig, axes = plt.subplots(
        len(codes), 1, figsize=(12, 2.2 * len(codes) + 0.6), sharex=True, squeeze=False
    )
    hours = np.arange(tr.counts.shape[1]) * sc.bucket / 3600.0
    colors = {"spike": "tab:red", "drop": "tab:blue", "drift": "tab:orange", "novelty": "tab:purple",
              "cardinality": "tab:green", "schema": "tab:brown"}  # fmt: skip
    rhythms_of = result.rhythms_of or {}
    for ax, code in zip(axes[:, 0], codes, strict=True):
        g = tr.templates[code]
        ax.plot(hours, tr.counts[code], lw=0.5, color="0.35", label="records per bucket")
        ax.plot(hours, tr.rates[code], lw=0.8, color="tab:cyan", alpha=0.8, label="expected")
        for w in tr.truth:
            if code in w.template_codes or (
                w.kind is InjectedKind.SCHEMA and w.service == g.service
            ):
                a = (w.start_ns - sc.start_ns) / 3.6e12
                b = (w.end_ns - sc.start_ns) / 3.6e12
                ax.axvspan(a, max(b, a + sc.bucket / 3600), color="gold", alpha=0.35)
        mine = rhythms_of.get(code, frozenset())
        src_key = sc.sources[g.source_index].key
        for d in result.detections:
            if d.rhythm_hash in mine or (d.kind.value == "schema" and d.source_key == src_key):
                x = (d.started_ns - sc.start_ns) / 3.6e12
                ax.axvline(x, color=colors.get(d.kind.value, "k"), lw=1.2, ls="--")
                ax.text(x, ax.get_ylim()[1] * 0.9, d.kind.value, fontsize=7, rotation=90,
                        color=colors.get(d.kind.value, "k"))  # fmt: skip
        ax.set_title(f"{g.key}  ({g.spec.severity}) '{g.spec.text}'", fontsize=8, loc="left")
        ax.set_ylabel("per bucket", fontsize=7)
    axes[-1, 0].set_xlabel("hours since the scenario start")
    fig.suptitle(f"{sc.name}: truth windows shaded, detections dashed", fontsize=10)
    fig.tight_layout()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{sc.name}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
