"""Older engine snapshots brought to the current format, so an upgrade keeps what was learned.

Each step is a pure function from one version's tree to the next; `upgrade_engine` chains them.
Version 3 is the format the released service wrote (JSON, arrays as base64 of little-endian
bytes, one HyperLogLog object per open bucket and profile); version 4 holds raw numpy arrays,
the profiles' identity as columns, and an open bucket's distinct ids as packed triples.
Versions before 3 were never released and are refused.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import numpy as np

from via_otlp.detect.hll import pack


def upgrade_engine(state: dict[str, Any]) -> dict[str, Any]:
    """`state` in the current format (itself when it already is; ValueError when unknown)."""
    while (version := state.get("version")) in _STEPS:
        state = _STEPS[version](state)
    return state


def _decoded(value: Any) -> Any:
    """A version-3 leaf as an array: ``{"dtype", "b64"}`` decoded; anything else unchanged."""
    if isinstance(value, dict) and set(value) == {"dtype", "b64"}:
        return np.frombuffer(base64.b64decode(value["b64"]), dtype=np.dtype(value["dtype"])).copy()
    return value


def _table_v3_to_v4(table: dict[str, Any]) -> dict[str, Any]:
    """Columns flattened to "name" / "owner.field" keys; identity rows to columns."""
    columns: dict[str, Any] = {}
    for name, value in table["columns"].items():
        if isinstance(value, dict) and "b64" not in value:  # EWMeanVar or Cusum: nested arrays
            for field, arr in value.items():
                columns[f"{name}.{field}"] = _decoded(arr)
        else:
            columns[name] = _decoded(value)
    rows = sorted(table["profiles"], key=lambda r: r[0])
    sources = table["sources"]
    used = sorted({r[2] for r in rows})
    renumber = {old: new for new, old in enumerate(used)}
    return {
        "version": 4,
        "capacity": table["capacity"],
        "day": table["day"],
        "recent": list(table["recent"]),
        "free": np.asarray(table["free"], dtype=np.int64),
        "columns": columns,
        "slots": np.array([r[0] for r in rows], dtype=np.int64),
        "profiles": {
            "sources": [sources[i] for i in used],
            "source": np.array([renumber[r[2]] for r in rows], dtype=np.int64),
            "rhythm_hash": [r[1] for r in rows],
            "template_id": [r[3] for r in rows],
            "template": [r[4] for r in rows],
            "severity": [r[5] for r in rows],
        },
    }


def _registers_v3(slot: int, hll: dict[str, Any]) -> np.ndarray:
    """A version-3 HyperLogLog of one profile as packed (slot, register, rank) triples."""
    if "dense" in hll:
        ranks = np.frombuffer(base64.b64decode(hll["dense"]), dtype=np.uint8)
        idx = np.flatnonzero(ranks)
        rho = ranks[idx].astype(np.int64)
    else:
        pairs = np.array(hll.get("sparse", []), dtype=np.int64).reshape(-1, 2)
        idx, rho = pairs[:, 0], pairs[:, 1]
    return pack(np.full(len(idx), slot, dtype=np.int64), idx, rho)


def _open_v3_to_v4(ob: dict[str, Any]) -> dict[str, Any]:
    """One open bucket: counts by slot, ids per slot and the sketches as packed triples."""
    slots = _decoded(ob["slots"]).astype(np.int64)
    with_id = dict(ob.get("with_id", []))
    regs = [_registers_v3(int(s), h) for s, h in ob.get("hll", [])]
    return {
        "bucket": ob["bucket"],
        "slots": slots,
        "counts": _decoded(ob["counts"]).astype(np.float64),
        "with_id": np.array([float(with_id.get(int(s), 0)) for s in slots], dtype=np.float64),
        "regs": np.concatenate(regs) if regs else np.zeros(0, dtype=np.int64),
        "samples": [[int(s), list(v)] for s, v in ob.get("samples", [])],
    }


def _engine_v3_to_v4(state: dict[str, Any]) -> dict[str, Any]:
    table = _table_v3_to_v4(state["table"])
    hash_of = dict(zip(table["slots"].tolist(), table["profiles"]["rhythm_hash"], strict=True))
    return {
        **state,
        "version": 4,
        "table": table,
        "open": [_open_v3_to_v4(ob) for ob in state["open"]],
        # v3 kept the forgotten hashes without their source: "" (any source) is what v4 reads
        # for a hash whose source is unknown.
        "forgotten": [[rh, ""] for rh in state["forgotten"]],
        "novel": [[hash_of[int(s)], int(b)] for s, b in state["novel"] if int(s) in hash_of],
    }


def upgrade_columns(columns: dict[str, Any]) -> dict[str, Any]:
    """A profile table's columns with those whose meaning changed in place (same table
    version) brought to their current form; `columns` itself when none did.

    - ``recent_expected`` (float32 expected counts of the ring of recent buckets) became
      ``recent_root`` (float16 square roots: 2 bytes a bucket instead of 4).
    """
    if "recent_expected" in columns and "recent_root" not in columns:
        old = np.asarray(columns["recent_expected"], dtype=np.float64)
        root = np.minimum(np.sqrt(np.maximum(old, 0.0)), float(np.finfo(np.float16).max))
        columns = {k: v for k, v in columns.items() if k != "recent_expected"}
        columns["recent_root"] = root.astype(np.float16)
    return columns


_STEPS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {3: _engine_v3_to_v4}
