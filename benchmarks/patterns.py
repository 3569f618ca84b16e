"""Template mining on the eight Loghub-2k systems, side by side with Drain3; prints a table.

    python benchmarks/patterns.py [--repeat N] [--rounds N]
    python benchmarks/patterns.py --adversarial
    python benchmarks/patterns.py --loso
    python benchmarks/patterns.py --lines 1000000

For each system: grouping accuracy (GA: a line is right when the set of lines in its predicted
group equals the set in its true group), parsing accuracy (PA: its final template equals the
corrected ground truth after whitespace normalisation), and lines/s of mining alone (best of
`--repeat` runs, each on a fresh model), for via-otlp's miner (one global configuration) and
for the PyPI `drain3` package with its default configuration, timed alternately in the same run.

Then a mixed stream: the eight systems interleaved as eight sources, first as recorded and then
in `--rounds - 1` more rounds where every run of digits is replaced by a random number of random
length (new values, same shapes, as in production), through `PatternStage.apply` in batches of
1000. Last, the memory of a model holding 100,000 templates (tracemalloc), per template.

``--loso`` is how the miner is tuned: leave-one-system-out over the eight dev systems. For each
system, the knobs of `GRID` are fitted (best mean GA, then PA) on the other seven, and the
system is scored with them as if unseen; the table shows those held-out scores, the default
configuration's, and the mean. Then the synthetic systems of `synthetic_systems.py` (other log
styles, generated with ground truth) with the default configuration and with the knobs fitted
on all eight dev systems.

``--lines N`` measures at scale: N lines (the eight dev systems and the six synthetic ones
interleaved as 14 sources, every run of digits replaced by a fresh random number of random
length after the first round) through `PatternStage.apply` in batches of 1000, and through one
Drain3 `TemplateMiner` per source, each miner in its own child process (same stream, same
seed), so that each one's peak RSS is its own: lines/s (wall and CPU), peak RSS, and RSS
growth while mining (the stream itself is held by both).

``--adversarial`` times the lines of `synthetic_logs.adversarial_lines` (runs of same-shaped
tokens that made the old regex span matcher backtrack exponentially) and of
`synthetic_logs.long_token_lines` (huge tokens), next to as many ordinary Loghub lines.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import gc
import json
import logging
import random
import re
import subprocess
import sys
import time
import tracemalloc
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import synthetic_systems
from synthetic_logs import adversarial_lines, long_token_lines

from via_otlp.model import LogBatch, Source
from via_otlp.patterns.config import PatternsConfig
from via_otlp.patterns.miner import SourceMiner
from via_otlp.patterns.stage import PatternStage

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "loghub-2k"
SYSTEMS = ("HDFS", "Hadoop", "Spark", "Zookeeper", "OpenSSH", "Apache", "Proxifier", "HealthApp")


@dataclass(frozen=True)
class Dataset:
    name: str
    lines: list[str]
    truth: list[str]


@dataclass(frozen=True)
class Score:
    ga: float
    pa: float
    lines_per_s: float


def load(name: str) -> Dataset:
    """The Content and EventTemplate columns of a system's corrected structured CSV."""
    path = DATA / name / f"{name}_2k.log_structured_corrected.csv"
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return Dataset(name, [r["Content"] for r in rows], [r["EventTemplate"] for r in rows])


def grouping_accuracy(predicted: list[str], truth: list[str]) -> float:
    """Fraction of lines whose predicted group is exactly their true group."""
    pred_groups: dict[str, set[int]] = defaultdict(set)
    true_groups: dict[str, set[int]] = defaultdict(set)
    for i, (p, t) in enumerate(zip(predicted, truth, strict=True)):
        pred_groups[p].add(i)
        true_groups[t].add(i)
    right = 0
    for members in pred_groups.values():
        if true_groups[truth[next(iter(members))]] == members:
            right += len(members)
    return right / len(truth)


def parsing_accuracy(templates: list[str], truth: list[str]) -> float:
    """Fraction of lines whose template equals the true one (whitespace normalised)."""
    ok = sum(
        " ".join(a.split()) == " ".join(b.split()) for a, b in zip(templates, truth, strict=True)
    )
    return ok / len(truth)


def run_via(lines: list[str]) -> tuple[float, list[str], list[str]]:
    """(seconds, group ids, final templates) of a fresh via-otlp miner over `lines`."""
    miner = SourceMiner(PatternsConfig())
    add = miner.add
    t0 = time.perf_counter()
    assigned = [add(line) for line in lines]
    seconds = time.perf_counter() - t0
    final = [t.resolve() for t in assigned]
    return seconds, [t.id for t in final], [t.text for t in final]


def run_drain3(lines: list[str]) -> tuple[float, list[str], list[str]]:
    """(seconds, cluster ids, final templates) of a fresh Drain3 (default config)."""
    from drain3 import TemplateMiner
    from drain3.template_miner_config import TemplateMinerConfig

    miner = TemplateMiner(config=TemplateMinerConfig())
    add = miner.add_log_message
    t0 = time.perf_counter()
    ids = [add(line)["cluster_id"] for line in lines]
    seconds = time.perf_counter() - t0
    clusters = miner.drain.id_to_cluster
    return seconds, [str(i) for i in ids], [clusters[i].get_template() for i in ids]


def measure(ds: Dataset, repeat: int) -> tuple[Score, Score]:
    """Accuracy once, speed as the best of `repeat` alternating runs of each miner."""
    best = {"via": float("inf"), "drain3": float("inf")}
    results = {}
    for _ in range(repeat):
        for name, fn in (("via", run_via), ("drain3", run_drain3)):
            gc.collect()
            seconds, ids, templates = fn(ds.lines)
            best[name] = min(best[name], seconds)
            results[name] = (ids, templates)
    scores = []
    for name in ("via", "drain3"):
        ids, templates = results[name]
        scores.append(
            Score(
                grouping_accuracy(ids, ds.truth),
                parsing_accuracy(templates, ds.truth),
                len(ds.lines) / best[name],
            )
        )
    return scores[0], scores[1]


_DIGITS = re.compile(r"\d+")
# Digits of values, not of words (ssh2, HTTP/1.1, log4j, I0304): a run not glued after a letter,
# a slash or a dot gets a fresh value at scale.
_VALUE_DIGITS = re.compile(r"(?<![A-Za-z0-9/.])\d+")


def mixed_stream(datasets: list[Dataset], rounds: int, seed: int = 7) -> list[tuple[int, str]]:
    """(source index, body): the systems interleaved; later rounds get fresh digit values."""
    rng = random.Random(seed)

    def fresh(m: re.Match[str]) -> str:
        return str(rng.randrange(10 ** rng.randint(1, max(1, len(m.group()) + 1))))

    stream = []
    for r in range(rounds):
        for i in range(len(datasets[0].lines)):
            for s, ds in enumerate(datasets):
                if i < len(ds.lines):
                    body = ds.lines[i] if r == 0 else _DIGITS.sub(fresh, ds.lines[i])
                    stream.append((s, body))
    return stream


def measure_mixed(
    datasets: list[Dataset], rounds: int, batch_size: int = 1000
) -> tuple[int, float, float, float, float]:
    """(lines, lines/s through PatternStage.apply, of one Drain3 per source; then both in CPU
    time, which a machine shared with other work distorts less)."""
    stream = mixed_stream(datasets, rounds)
    sources = [Source.from_attributes((("service.name", ds.name),)) for ds in datasets]
    batches = []
    for start in range(0, len(stream), batch_size):
        chunk = stream[start : start + batch_size]
        batches.append(
            LogBatch(
                sources=sources,
                source_index=[s for s, _ in chunk],
                severity=["INFO"] * len(chunk),
                body=[b for _, b in chunk],
                template_hint=[""] * len(chunk),
            )
        )
    stage = PatternStage()
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    for batch in batches:
        stage.apply(batch)
    via_rate = len(stream) / (time.perf_counter() - t0)
    via_cpu = len(stream) / (time.process_time() - c0)

    from drain3 import TemplateMiner
    from drain3.template_miner_config import TemplateMinerConfig

    miners = [TemplateMiner(config=TemplateMinerConfig()) for _ in datasets]
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    for s, body in stream:
        miners[s].add_log_message(body)
    drain_rate = len(stream) / (time.perf_counter() - t0)
    drain_cpu = len(stream) / (time.process_time() - c0)
    return len(stream), via_rate, drain_rate, via_cpu, drain_cpu


def _word(i: int) -> str:
    """A distinct lower-case word for every integer (no digits, so masking keeps it)."""
    letters = []
    i += 26 * 26
    while i:
        i, r = divmod(i, 26)
        letters.append(chr(97 + r))
    return "".join(letters)


def bytes_per_template(n: int = 100_000) -> tuple[int, float]:
    """(templates held, bytes per template) of one model fed `n` lines of distinct shapes."""
    config = PatternsConfig(max_templates_per_source=n, flood_ratio=1.0)
    lines = [
        f"{_word(i)} worker {_word(i * 7 + 3)} finished job {i} in {i % 977} ms with status ok"
        for i in range(n)
    ]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    miner = SourceMiner(config)
    for line in lines:
        miner.add(line)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    held = len(miner.templates)
    return held, (after - before) / held


# The knobs tuned by leave-one-system-out: every combination is tried on the training systems.
GRID: dict[str, tuple[object, ...]] = {
    "similarity": (0.4, 0.5, 0.6, 0.7),
    "min_word_values": (2, 3, 4),
    "key_values": (False, True),
}


def score(ds: Dataset, config: PatternsConfig) -> tuple[float, float]:
    """(GA, PA) of a fresh miner with `config` over one system."""
    miner = SourceMiner(config)
    final = [miner.add(line).resolve() for line in ds.lines]
    final = [t.resolve() for t in final]
    return (
        grouping_accuracy([t.id for t in final], ds.truth),
        parsing_accuracy([t.text for t in final], ds.truth),
    )


def _grid() -> list[dict[str, object]]:
    combos: list[dict[str, object]] = [{}]
    for key, values in GRID.items():
        combos = [{**c, key: v} for c in combos for v in values]
    return combos


def _fit(
    scores: dict[int, dict[str, tuple[float, float]]],
    train: list[str],
    combos: list[dict[str, object]],
) -> int:
    """The grid index with the best mean GA (then PA) over the `train` systems.

    Means are compared to three decimals; a tie goes to the combination closest to the
    defaults (fewest knobs changed), so a knob moves only when the training systems ask for it.
    """
    default = PatternsConfig()

    def rank(i: int) -> tuple[float, float, int]:
        ga = sum(scores[i][n][0] for n in train) / len(train)
        pa = sum(scores[i][n][1] for n in train) / len(train)
        changed = sum(getattr(default, k) != v for k, v in combos[i].items())
        return round(ga, 3), round(pa, 3), -changed

    return max(scores, key=rank)


def loso(datasets: list[Dataset]) -> None:
    """Leave-one-system-out table, then the synthetic systems (see the module docstring)."""
    combos = _grid()
    default = PatternsConfig()
    scores = {
        i: {ds.name: score(ds, dataclasses.replace(default, **c)) for ds in datasets}  # type: ignore[arg-type]
        for i, c in enumerate(combos)
    }
    plain = {ds.name: score(ds, default) for ds in datasets}
    print(
        f"{'held out':<10} | {'GA':>5} {'PA':>5} | {'default GA':>10} {'PA':>5} | fitted on the other seven"
    )
    print("-" * 79)
    held: list[tuple[float, float]] = []
    for ds in datasets:
        train = [d.name for d in datasets if d is not ds]
        best = _fit(scores, train, combos)
        ga, pa = scores[best][ds.name]
        held.append((ga, pa))
        knobs = ", ".join(f"{k}={v}" for k, v in combos[best].items())
        print(
            f"{ds.name:<10} | {ga:5.3f} {pa:5.3f} | {plain[ds.name][0]:10.3f} {plain[ds.name][1]:5.3f} | {knobs}"
        )
    print("-" * 79)
    n = len(datasets)
    print(
        f"{'mean':<10} | {sum(g for g, _ in held) / n:5.3f} {sum(p for _, p in held) / n:5.3f} | "
        f"{sum(g for g, _ in plain.values()) / n:10.3f} {sum(p for _, p in plain.values()) / n:5.3f} |"
    )
    fitted = combos[_fit(scores, [d.name for d in datasets], combos)]
    print()
    print(
        f"synthetic systems (synthetic_systems.py), default config and fitted on all dev ({fitted}):"
    )
    synth = synthetic_systems.all_systems()
    rows = [
        (ds.name, score(ds, default), score(ds, dataclasses.replace(default, **fitted)))
        for ds in synth
    ]  # type: ignore[arg-type]
    for name, (ga, pa), (fga, fpa) in rows:
        print(f"{name:<10} | {ga:5.3f} {pa:5.3f} | fitted {fga:5.3f} {fpa:5.3f}")
    m = len(rows)
    print(
        f"{'mean':<10} | {sum(r[1][0] for r in rows) / m:5.3f} {sum(r[1][1] for r in rows) / m:5.3f} | "
        f"fitted {sum(r[2][0] for r in rows) / m:5.3f} {sum(r[2][1] for r in rows) / m:5.3f}"
    )


def scale_stream(n: int, seed: int = 11) -> tuple[list[str], list[tuple[int, str]]]:
    """(source names, n (source index, body)): dev and synthetic systems, fresh values.

    After the first round every value's digits are new: a number standing alone gets a random
    length too, while one inside a date, time, address or padded field (next to ``:-/.`` or
    with leading zeros) keeps its width, as those fields do. Digits of words (``ssh2``,
    ``HTTP/1.1``, ``I0304``) are left alone.
    """
    datasets = [load(name) for name in SYSTEMS] + synthetic_systems.all_systems()
    rng = random.Random(seed)

    def fresh(m: re.Match[str]) -> str:
        digits, text = m.group(), m.string
        before = text[m.start() - 1] if m.start() else " "
        after = text[m.end()] if m.end() < len(text) else " "
        if before in ":-/." or after in ":-/." or (digits[0] == "0" and len(digits) > 1):
            return str(rng.randrange(10 ** len(digits))).zfill(len(digits))
        return str(rng.randrange(10 ** rng.randint(1, len(digits) + 1)))

    stream: list[tuple[int, str]] = []
    first = True
    while len(stream) < n:
        for i in range(max(len(ds.lines) for ds in datasets)):
            for s, ds in enumerate(datasets):
                if i < len(ds.lines):
                    body = ds.lines[i] if first else _VALUE_DIGITS.sub(fresh, ds.lines[i])
                    stream.append((s, body))
        first = False
    return [ds.name for ds in datasets], stream[:n]


def _rss_kib(field: str) -> int:
    """VmRSS or VmHWM of this process, in KiB (Linux)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def scale_child(miner: str, n: int) -> dict[str, float]:
    """Run one miner over the scale stream in this process; figures as a dict."""
    names, stream = scale_stream(n)
    gc.collect()
    base = _rss_kib("VmRSS")
    if miner == "via":
        sources = [Source.from_attributes((("service.name", name),)) for name in names]
        batches = [
            LogBatch(
                sources=sources,
                source_index=[s for s, _ in stream[i : i + 1000]],
                severity=["INFO"] * len(stream[i : i + 1000]),
                body=[b for _, b in stream[i : i + 1000]],
                template_hint=[""] * len(stream[i : i + 1000]),
            )
            for i in range(0, n, 1000)
        ]
        base = _rss_kib("VmRSS")
        stage = PatternStage()
        wall, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            stage.apply(batch)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        templates = stage.stats().templates
    else:
        from drain3 import TemplateMiner
        from drain3.masking import MaskingInstruction
        from drain3.template_miner_config import TemplateMinerConfig

        config = TemplateMinerConfig()
        if miner == "drain3-masked":
            config.masking_instructions = [
                MaskingInstruction(p, m) for p, m in DRAIN3_EXAMPLE_MASKING
            ]
        miners = [TemplateMiner(config=config) for _ in names]
        wall, cpu = time.perf_counter(), time.process_time()
        for s, body in stream:
            miners[s].add_log_message(body)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        templates = sum(len(m.drain.id_to_cluster) for m in miners)
    return {
        "lines": n,
        "wall": wall,
        "cpu": cpu,
        "peak_kib": _rss_kib("VmHWM"),
        "grown_kib": _rss_kib("VmRSS") - base,
        "templates": templates,
    }


# The masking of Drain3's example configuration (examples/drain3.ini), for a fair second row.
_B, _E = r"((?<=[^A-Za-z0-9])|^)", r"((?=[^A-Za-z0-9])|$)"
DRAIN3_EXAMPLE_MASKING = [
    (_B + r"(([0-9a-f]{2,}:){3,}([0-9a-f]{2,}))" + _E, "ID"),
    (_B + r"(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})" + _E, "IP"),
    (_B + r"([0-9a-f]{6,} ?){3,}" + _E, "SEQ"),
    (_B + r"([0-9A-F]{4} ?){4,}" + _E, "SEQ"),
    (_B + r"(0x[a-f0-9A-F]+)" + _E, "HEX"),
    (_B + r"([\-\+]?\d+)" + _E, "NUM"),
]


def scale(n: int) -> None:
    """`--lines`: both miners over the same stream, each in a child process, side by side."""
    rows = {}
    for miner in ("via", "drain3", "drain3-masked"):
        out = subprocess.run(
            [sys.executable, __file__, "--lines", str(n), "--child", miner],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rows[miner] = json.loads(out.splitlines()[-1])
    print(f"{n:,} lines, 14 sources (8 Loghub + 6 synthetic systems), fresh digits after round 1")
    print(
        f"{'miner':<26} | {'lines/s wall':>12} {'lines/s CPU':>12} | {'peak RSS':>9} {'grown':>8} | templates"
    )
    for miner, label in (
        ("via", "via-otlp PatternStage"),
        ("drain3", "drain3 (one per source)"),
        ("drain3-masked", "drain3 + example masking"),
    ):
        r = rows[miner]
        print(
            f"{label:<26} | {n / r['wall']:12,.0f} {n / r['cpu']:12,.0f} | "
            f"{r['peak_kib'] / 1024:7.0f}MB {r['grown_kib'] / 1024:6.0f}MB | {r['templates']:,}"
        )
    for other in ("drain3", "drain3-masked"):
        ratio_wall = rows[other]["wall"] / rows["via"]["wall"]
        ratio_cpu = rows[other]["cpu"] / rows["via"]["cpu"]
        print(f"speed ratio via / {other}: {ratio_wall:.2f}x wall, {ratio_cpu:.2f}x CPU")


def _mine_seconds(lines: list[str], repeat: int) -> float:
    """Best wall time of a fresh miner over `lines` (final templates resolved, as the CLI)."""
    best = float("inf")
    for _ in range(repeat):
        miner = SourceMiner(PatternsConfig())
        t0 = time.perf_counter()
        for line in lines:
            miner.add(line)
        best = min(best, time.perf_counter() - t0)
    return best


def adversarial(repeat: int) -> None:
    """Print the time to template the adversarial classes, next to ordinary lines."""
    runs = adversarial_lines(72)
    longs = long_token_lines(8)
    ordinary = load("HDFS").lines[: len(runs)]
    for label, lines in (
        ("72 adversarial run lines", runs),
        ("8 lines of one 200,000-char token", longs),
        (f"{len(ordinary)} ordinary HDFS lines (baseline)", ordinary),
    ):
        seconds = _mine_seconds(lines, repeat)
        chars = sum(map(len, lines))
        print(
            f"{label:<40} {seconds * 1000:8.2f} ms  ({seconds / len(lines) * 1e6:8.1f} µs/line, "
            f"{chars:,} chars)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per miner and system")
    parser.add_argument("--rounds", type=int, default=8, help="rounds of the mixed stream")
    parser.add_argument(
        "--adversarial", action="store_true", help="time the adversarial line classes only"
    )
    parser.add_argument(
        "--loso", action="store_true", help="leave-one-system-out scores, then synthetic systems"
    )
    parser.add_argument("--lines", type=int, default=0, help="scale run over this many lines")
    parser.add_argument(
        "--child", choices=("via", "drain3", "drain3-masked"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # drain3 logs every new cluster at INFO
    if args.child:
        print(json.dumps(scale_child(args.child, args.lines)))
        return
    if args.lines:
        scale(args.lines)
        return
    if args.adversarial:
        adversarial(args.repeat)
        return
    datasets = [load(name) for name in SYSTEMS]
    if args.loso:
        loso(datasets)
        return

    print(
        f"{'system':<10} | {'GA':>5} {'PA':>5} {'lines/s':>9} | {'drain3 GA':>9} {'PA':>5} {'lines/s':>9} | speed ratio"
    )
    print("-" * 79)
    rows = [(ds.name, *measure(ds, args.repeat)) for ds in datasets]
    for name, via, d3 in rows:
        ratio = via.lines_per_s / d3.lines_per_s
        print(
            f"{name:<10} | {via.ga:5.3f} {via.pa:5.3f} {via.lines_per_s:9,.0f} | "
            f"{d3.ga:9.3f} {d3.pa:5.3f} {d3.lines_per_s:9,.0f} | {ratio:5.2f}x"
        )
    n = len(rows)
    avg_via = [sum(getattr(r[1], f) for r in rows) / n for f in ("ga", "pa", "lines_per_s")]
    avg_d3 = [sum(getattr(r[2], f) for r in rows) / n for f in ("ga", "pa", "lines_per_s")]
    total_via = sum(len(ds.lines) for ds in datasets) / sum(
        len(ds.lines) / r[1].lines_per_s for ds, r in zip(datasets, rows, strict=True)
    )
    total_d3 = sum(len(ds.lines) for ds in datasets) / sum(
        len(ds.lines) / r[2].lines_per_s for ds, r in zip(datasets, rows, strict=True)
    )
    print("-" * 79)
    print(
        f"{'average':<10} | {avg_via[0]:5.3f} {avg_via[1]:5.3f} {total_via:9,.0f} | "
        f"{avg_d3[0]:9.3f} {avg_d3[1]:5.3f} {total_d3:9,.0f} | {total_via / total_d3:5.2f}x"
    )
    print("(average lines/s = all 16,000 lines over the summed best times)")
    print()
    lines, via_rate, drain_rate, via_cpu, drain_cpu = measure_mixed(datasets, args.rounds)
    print(
        f"mixed stream: {lines:,} lines, 8 sources, {args.rounds} rounds (fresh digits after the first):\n"
        f"  PatternStage.apply (templates + rhythm hashes): {via_rate:,.0f} lines/s ({via_cpu:,.0f} in CPU time)\n"
        f"  drain3 (one TemplateMiner per source, mining only): {drain_rate:,.0f} lines/s ({drain_cpu:,.0f} in CPU time)"
    )
    held, per = bytes_per_template()
    print(f"memory: {held:,} templates held, {per:,.0f} bytes per template (model + its caches)")


if __name__ == "__main__":
    main()
