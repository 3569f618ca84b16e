"""`via-otlp patterns [FILE|-] [--config FILE] [--summary]`: mine templates from a file.

Reads one message per line, mines them all with the configured miner (one source), then prints
for every input line, in order, ``<template_id>\\t<template>``: the ids and templates shown are
the final ones, after the whole input was read. ``--summary`` prints instead every template
with its line count, most frequent first (``<count>\\t<template_id>\\t<template>``).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable
from typing import TextIO

from via_otlp.configload import load_section
from via_otlp.errors import ViaError
from via_otlp.patterns.config import PatternsConfig
from via_otlp.patterns.miner import SourceMiner, Template
from via_otlp.progress import StatusLine


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `patterns` subcommand."""
    parser = subparsers.add_parser(
        "patterns",
        help="mine log templates from a file (one message per line)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument("file", nargs="?", default="-", help="input file, or - for stdin (default)")
    parser.add_argument(
        "--config", metavar="FILE", help="via.json5 whose `patterns` section is used"
    )
    parser.add_argument(
        "--summary",
        action="store_true",
        help="print templates with their counts, most frequent first",
    )
    parser.set_defaults(func=run)


def mine_lines(
    lines: Iterable[str], config: PatternsConfig, progress: Progress | None = None
) -> list[Template]:
    """The final template of every line (merged templates resolved to their survivor)."""
    miner = SourceMiner(config)
    if progress is None:
        assigned = [miner.add(line) for line in lines]
    else:
        assigned = []
        for i, line in enumerate(lines, 1):
            assigned.append(miner.add(line))
            if not i % 10_000:
                progress.advance(i)
        progress.close()
    return [t.resolve() for t in assigned]


class Progress:
    """`lines mined of total` on one line of stderr, only when stderr is a terminal (as replay)."""

    def __init__(self, total: int, stream: TextIO | None = None, interval: float = 0.2) -> None:
        self.line = StatusLine(stream, interval)
        self.line.enabled = self.line.enabled and total > 0
        self.total = total

    def advance(self, done: int) -> None:
        if self.line.due():
            self.line.show(
                f"mining: {100 * done / self.total:5.1f}% {done:,} of {self.total:,} lines, "
                f"{self.line.rate(done):,.0f} lines/s"
            )

    def close(self) -> None:
        self.line.close()


def _read_lines(stream: TextIO) -> list[str]:
    return [line.rstrip("\r\n") for line in stream]


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; 0 on success, 2 on a configuration or input error."""
    try:
        config = (
            load_section(PatternsConfig, args.config, "patterns")
            if args.config
            else PatternsConfig()
        )
        if args.file == "-":
            lines = _read_lines(sys.stdin)
        else:
            with open(args.file, encoding="utf-8", errors="replace") as f:
                lines = _read_lines(f)
    except ViaError as exc:
        print(f"via-otlp patterns: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"via-otlp patterns: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    templates = mine_lines(lines, config, Progress(len(lines)))
    out = sys.stdout
    if args.summary:
        counts = Counter(t.id for t in templates)
        by_id = {t.id: t for t in templates}
        for tid, count in counts.most_common():
            out.write(f"{count}\t{tid}\t{by_id[tid].text}\n")
    else:
        out.writelines(f"{t.id}\t{t.text}\n" for t in templates)
    return 0
