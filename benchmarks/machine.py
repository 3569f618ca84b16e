"""The machine a benchmark runs on: its load (quote it with every figure), and via_otlp
byte-compiled before a start is timed, as an installed wheel is (pip compiles at install).

A checkout run with PYTHONDONTWRITEBYTECODE=1 (as the benchmarks' machine sets it) compiles every
module of via_otlp at each start: ~0.3 s CPU of each start to SERVING (0.79-0.94 s without .pyc,
0.56-0.64 s with, registry off, load 10-12).
"""

from __future__ import annotations

import compileall
import importlib.util
import os
from pathlib import Path


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` shows them."""
    return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def compile_package(name: str = "via_otlp") -> None:
    """Write the package's .pyc files (writing them ignores PYTHONDONTWRITEBYTECODE)."""
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.origin is not None:
        compileall.compile_dir(Path(spec.origin).parent, quiet=1)
