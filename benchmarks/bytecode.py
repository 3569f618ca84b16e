"""Byte-compile via_otlp before timing a start, as an installed wheel is (pip compiles at install).

A checkout run with PYTHONDONTWRITEBYTECODE=1 (as the benchmarks' machine sets it) compiles every
module of via_otlp at each start: ~0.3 s CPU of each start to SERVING (0.79-0.94 s without .pyc,
0.56-0.64 s with, registry off, load 10-12).
"""

from __future__ import annotations

import compileall
import importlib.util
from pathlib import Path


def compile_package(name: str = "via_otlp") -> None:
    """Write the package's .pyc files (writing them ignores PYTHONDONTWRITEBYTECODE)."""
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.origin is not None:
        compileall.compile_dir(Path(spec.origin).parent, quiet=1)
