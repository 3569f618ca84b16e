"""The learned state on disk: one versioned JSON document, written atomically.

Never pickle: the file can be read by a person, diffed, and loaded by a newer version that knows
the older `version`. Snapshots are trees whose leaves may be 1-d numpy arrays
(`via_otlp.detect.codec`); here an array is written as ``{"__ndarray__": dtype, "b64": bytes}``
and read back as an array.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from via_otlp.errors import ViaError

_ARRAY_KEY = "__ndarray__"


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        dt = a.dtype.newbyteorder("<")
        raw = a.astype(dt, copy=False).tobytes()
        return {_ARRAY_KEY: dt.str, "b64": base64.b64encode(raw).decode("ascii")}
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} cannot be saved in the state file")


def _decode(d: dict[str, Any]) -> Any:
    if _ARRAY_KEY in d and len(d) == 2:
        return np.frombuffer(base64.b64decode(d["b64"]), dtype=np.dtype(d[_ARRAY_KEY])).copy()
    return d


STATE_VERSION = 1
STATE_FILE = "state.json"


def save_state(path: Path, parts: dict[str, Any]) -> None:
    """Write `{"version": .., **parts}` to `path` via a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"version": STATE_VERSION, **parts}
    fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, separators=(",", ":"), default=_encode)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_state(path: Path) -> dict[str, Any] | None:
    """The saved parts, or None when there is no state yet; a corrupt file is an error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(text, object_hook=_decode)
    except ValueError as exc:
        raise ViaError(
            f"state file {path} is corrupt: {exc}", hint="move it away to start fresh"
        ) from None
    if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
        raise ViaError(
            f"state file {path} has version {doc.get('version') if isinstance(doc, dict) else '?'}, "
            f"this via-otlp reads version {STATE_VERSION}",
            hint="move it away to start fresh",
        )
    doc.pop("version")
    return doc
