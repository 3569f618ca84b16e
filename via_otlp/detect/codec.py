"""Snapshot trees: what detect's state looks like on its way to disk, and version checks.

A snapshot is a *tree*: dicts with str keys, lists, and leaves that are JSON values (str, int,
float, bool, None) or 1-d numpy arrays of a numeric dtype. Detect never does file I/O and
never encodes arrays: the state layer turns a tree into bytes (a small header plus the raw
array bytes) and back, so a snapshot of 100,000 profiles costs copies of a few dozen arrays,
not millions of Python objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def leaf(a: np.ndarray) -> np.ndarray:
    """A tree leaf holding `a`: a 1-d contiguous *copy* (live state keeps changing in place)."""
    return np.array(a, copy=True, order="C").reshape(-1)


def as_array(value: Any, dtype: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A writable array of `dtype` (and `shape`) from a tree leaf (an ndarray, or a list)."""
    a = np.array(value, dtype=dtype, copy=True)
    if shape is not None:
        a = a.reshape(shape)
    return a


def check_version(state: Mapping[str, Any], version: int, what: str) -> None:
    """Reject a snapshot written by an unknown format version."""
    got = state.get("version") if isinstance(state, Mapping) else None
    if got != version:
        raise ValueError(f"{what} snapshot: version {got!r} is not supported (expected {version})")


def check_tree(tree: Any, where: str = "") -> None:
    """Raise TypeError naming the path of the first leaf that breaks the tree rules."""
    if isinstance(tree, np.ndarray):
        if tree.ndim != 1 or tree.dtype.kind not in "biuf":
            raise TypeError(
                f"{where or '<root>'}: arrays must be 1-d numeric, got {tree.dtype}{tree.shape}"
            )
        return
    if isinstance(tree, dict):
        for k, v in tree.items():
            if not isinstance(k, str):
                raise TypeError(f"{where or '<root>'}: dict keys must be str, got {k!r}")
            check_tree(v, f"{where}.{k}" if where else k)
        return
    if isinstance(tree, list | tuple):
        for i, v in enumerate(tree):
            check_tree(v, f"{where}[{i}]")
        return
    if tree is None or isinstance(tree, str | int | float | bool):
        return
    raise TypeError(f"{where or '<root>'}: {type(tree).__name__} is not a tree leaf")
