"""JSON-safe encoding of numpy arrays (base64 of little-endian bytes) and snapshot versions."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np


def encode_array(a: np.ndarray) -> dict[str, Any]:
    """``{"dtype", "b64"}`` holding the exact bytes of a 1-d array (no float rounding)."""
    a = np.ascontiguousarray(a)
    dt = a.dtype.newbyteorder("<")
    return {
        "dtype": dt.str,
        "b64": base64.b64encode(a.astype(dt, copy=False).tobytes()).decode("ascii"),
    }


def decode_array(d: dict[str, Any], dtype: Any) -> np.ndarray:
    """The array `encode_array` encoded, converted to `dtype` (a fresh, writable copy)."""
    raw = np.frombuffer(base64.b64decode(d["b64"]), dtype=np.dtype(d["dtype"]))
    return raw.astype(dtype, copy=True)


def check_version(state: dict[str, Any], version: int, what: str) -> None:
    """Reject a snapshot written by an unknown format version."""
    got = state.get("version") if isinstance(state, dict) else None
    if got != version:
        raise ValueError(f"{what} snapshot: version {got!r} is not supported (expected {version})")
