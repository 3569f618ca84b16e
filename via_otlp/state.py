"""The learned state on disk: binary snapshots of trees with array leaves, and the old JSON file.

A snapshot tree is what `Engine.snapshot()`, `PatternStage.snapshot()` and
`SchemaTracker.snapshot()` return: JSON values (str, int, float, bool, None, lists, dicts with
str keys) whose leaves may also be 1-d `numpy.ndarray`s. `encode_tree` turns one into bytes:

    b"VIASNAP\\0" | u32 header length | header (JSON) | tree (JSON) | padding to 8 | arrays

The header holds the format version, `meta`, each array's dtype, offset and length, and the
tree's length; in the tree every array is replaced by a reference ``{"$nd": i}``. Arrays are written as raw bytes (no
base64, no per-element JSON), so a state of 100k profiles restores in a fraction of a second.
Never pickle: the header can be read by a person, and a newer version reads an older one.

>>> import numpy as np
>>> tree = {"a": np.arange(3, dtype=np.int64), "b": [1, "x", {"c": np.zeros(2)}]}
>>> back = decode_tree(encode_tree(tree))
>>> back["a"].tolist(), back["b"][0], back["b"][2]["c"].dtype.name
([0, 1, 2], 1, 'float64')

`state.json` (one JSON document) is what via-otlp wrote before shards; it still loads
(`load_state`; version 1 with its source keys moved to the current format), and the service
migrates it to per-shard snapshots.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from via_otlp.durable import fsync_dir
from via_otlp.errors import ViaError
from via_otlp.model import DEFAULT_SOURCE_ATTRIBUTES
from via_otlp.sourcekeys import rekey_state

# 2: source keys in the unambiguous format of `via_otlp.model.source_key` (reads 1, migrated)
STATE_VERSION = 2
STATE_FILE = "state.json"
SNAPSHOT_MAGIC = b"VIASNAP\0"
# 2: the tree as its own JSON document after the header (reads 1)
SNAPSHOT_VERSION = 2
_ND = "$nd"
_HEAD = struct.Struct("<8sI")


_SCALARS = frozenset({str, int, float, bool, type(None)})


def encode_tree(tree: Any, meta: dict[str, Any] | None = None) -> bytes:
    """A snapshot tree (JSON values and 1-d ndarray leaves) as bytes; `meta` goes in the header."""
    return b"".join(encode_parts(tree, meta))


def encode_parts(tree: Any, meta: dict[str, Any] | None = None) -> list[bytes | memoryview]:
    """`encode_tree` as pieces, to be written one after another (arrays are not copied)."""
    arrays: list[np.ndarray] = []

    def strip(node: Any) -> Any:
        if isinstance(node, np.ndarray):
            arrays.append(np.ascontiguousarray(node.reshape(-1)))
            return {_ND: len(arrays) - 1}
        if isinstance(node, dict):
            return {str(k): strip(v) for k, v in node.items()}
        if isinstance(node, list | tuple):
            if set(map(type, node)) <= _SCALARS:  # a column of plain values: as it is, in C
                return node
            return [strip(v) for v in node]
        if isinstance(node, np.generic):
            return node.item()
        return node

    skeleton = strip(tree)
    specs = []
    offset = 0
    for a in arrays:
        specs.append({"dtype": a.dtype.str, "offset": offset, "length": len(a)})
        offset += _pad8(a.nbytes)
    body = json.dumps(skeleton, separators=(",", ":"), allow_nan=True).encode("utf-8")
    head = json.dumps(
        {"version": SNAPSHOT_VERSION, "meta": meta or {}, "arrays": specs, "tree_bytes": len(body)},
        separators=(",", ":"),
    ).encode("utf-8")
    header = head + body
    parts: list[bytes | memoryview] = [_HEAD.pack(SNAPSHOT_MAGIC, len(head)), head, body]
    parts.append(b"\0" * (_pad8(_HEAD.size + len(header)) - _HEAD.size - len(header)))
    for a in arrays:
        parts.append(memoryview(a.view(np.uint8)))  # type: ignore[arg-type]
        parts.append(b"\0" * (_pad8(a.nbytes) - a.nbytes))
    return parts


def decode_tree(data: bytes | memoryview) -> Any:
    """The tree `encode_tree` wrote (arrays are writable copies)."""
    tree, _ = decode_tree_meta(data)
    return tree


def decode_tree_meta(data: bytes | memoryview, *, own: bool = False) -> tuple[Any, dict[str, Any]]:
    """The tree and the header's `meta`; raises `ValueError` on anything malformed.

    Arrays are copies, or with `own` (the caller hands over a writable `data` it will not use
    again) writable views into `data`: a restore copies them into its own columns anyway, and
    a second copy of 130 MB took a fifth of the restore at 100,000 profiles."""
    view = memoryview(data)
    if len(view) < _HEAD.size:
        raise ValueError("snapshot is truncated")
    magic, hlen = _HEAD.unpack_from(view)
    if magic != SNAPSHOT_MAGIC:
        raise ValueError("not a via-otlp snapshot")
    head = json.loads(bytes(view[_HEAD.size : _HEAD.size + hlen]))
    version = head.get("version")
    if version not in (1, SNAPSHOT_VERSION):
        raise ValueError(
            f"snapshot format version {version}, this via-otlp reads {SNAPSHOT_VERSION}"
        )
    tree_at = _HEAD.size + hlen
    tree_len = int(head.get("tree_bytes", 0))
    base = _pad8(tree_at + tree_len)
    arrays = []
    for spec in head["arrays"]:
        dtype = np.dtype(spec["dtype"])
        start = base + int(spec["offset"])
        end = start + int(spec["length"]) * dtype.itemsize
        if end > len(view):
            raise ValueError("snapshot is truncated")
        a = np.frombuffer(view[start:end], dtype=dtype)
        arrays.append(a if own and not view.readonly else a.copy())

    def array_of(d: dict[str, Any]) -> Any:
        return arrays[d[_ND]] if len(d) == 1 and _ND in d else d

    if version == 1:  # the tree inside the header, arrays put back by a walk
        return _fill(head["tree"], array_of), dict(head.get("meta") or {})
    # Arrays put back while the JSON is parsed (in C, one call per object).
    tree = json.loads(bytes(view[tree_at : tree_at + tree_len]), object_hook=array_of)
    return tree, dict(head.get("meta") or {})


def _fill(node: Any, array_of: Any) -> Any:
    if isinstance(node, dict):
        return array_of({k: _fill(v, array_of) for k, v in node.items()})
    if isinstance(node, list):
        if set(map(type, node)) <= _SCALARS:
            return node
        return [_fill(v, array_of) for v in node]
    return node


def _pad8(n: int) -> int:
    return (n + 7) & ~7


def write_atomic(path: Path, data: bytes | list[bytes | memoryview]) -> None:
    """Write `data` (or its pieces, in order) to `path` through a temporary file, fsync, an
    atomic rename and an fsync of the directory (without it a crash can undo the rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, list):
                f.writelines(data)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def save_snapshot(path: Path, tree: Any, meta: dict[str, Any] | None = None) -> int:
    """Write a binary snapshot atomically; returns its size in bytes."""
    parts = encode_parts(tree, meta)
    write_atomic(path, parts)
    return sum(len(p) if isinstance(p, bytes) else p.nbytes for p in parts)


def load_snapshot(path: Path) -> tuple[Any, dict[str, Any]] | None:
    """A binary snapshot's tree and meta, or None if there is none; a corrupt file is an error."""
    try:
        with path.open("rb") as f:  # into memory nothing else zeroes or copies first
            buf = np.empty(os.fstat(f.fileno()).st_size, dtype=np.uint8)
            data = buf.data[: f.readinto(buf.data) or 0]
    except FileNotFoundError:
        return None
    try:
        return decode_tree_meta(data, own=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise ViaError(
            f"state file {path} is corrupt: {exc}", hint="move it away to start fresh"
        ) from None


def save_state(path: Path, parts: dict[str, Any]) -> None:
    """Write `{"version": .., **parts}` as JSON (the single-process state file)."""
    doc = {"version": STATE_VERSION, **parts}
    write_atomic(path, json.dumps(doc, separators=(",", ":"), default=_json_default).encode())


_ARRAY_KEY = "__ndarray__"


def _json_default(obj: Any) -> Any:
    """Arrays in the JSON state file: ``{"__ndarray__": dtype, "b64": little-endian bytes}``."""
    if isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        dt = a.dtype.newbyteorder("<")
        raw = a.astype(dt, copy=False).tobytes()
        return {_ARRAY_KEY: dt.str, "b64": base64.b64encode(raw).decode("ascii")}
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} cannot be saved in the state file")


def _json_array(d: dict[str, Any]) -> Any:
    if _ARRAY_KEY in d and len(d) == 2:
        return np.frombuffer(base64.b64decode(d["b64"]), dtype=np.dtype(d[_ARRAY_KEY])).copy()
    return d


def load_state(
    path: Path, source_order: Sequence[str] = DEFAULT_SOURCE_ATTRIBUTES
) -> dict[str, Any] | None:
    """The saved parts, or None when there is no state yet; a corrupt file is an error.

    A version-1 file is migrated to current source keys (`source_order`: the configured
    identity attributes, `receive.source_attributes`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(text, object_hook=_json_array)
    except ValueError as exc:
        raise ViaError(
            f"state file {path} is corrupt: {exc}", hint="move it away to start fresh"
        ) from None
    if isinstance(doc, dict) and doc.get("version") == 1:
        doc = rekey_state(doc, source_order)
    elif not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
        raise ViaError(
            f"state file {path} has version {doc.get('version') if isinstance(doc, dict) else '?'}, "
            f"this via-otlp reads version {STATE_VERSION}",
            hint="move it away to start fresh",
        )
    doc.pop("version")
    return doc
