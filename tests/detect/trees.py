"""Test helpers for snapshot trees: a JSON round trip that keeps ndarray leaves, and a stable
text form to compare two trees."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from via_otlp.detect.codec import check_tree


def _enc(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return {"__nd__": obj.dtype.str, "v": obj.tolist()}
    raise TypeError(type(obj).__name__)


def _dec(d: dict[str, Any]) -> Any:
    if "__nd__" in d:
        return np.array(d["v"], dtype=np.dtype(d["__nd__"]))
    return d


def dumps(tree: Any) -> str:
    """Stable text of a tree (arrays with their dtype): equal trees give equal text."""
    check_tree(tree)
    return json.dumps(tree, default=_enc, sort_keys=True)


def roundtrip(tree: Any) -> Any:
    """The tree after a trip through text, arrays back as arrays (what a state file does)."""
    return json.loads(dumps(tree), object_hook=_dec)
