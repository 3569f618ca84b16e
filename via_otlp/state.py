"""The learned state on disk: one versioned JSON document, written atomically.

Never pickle: the file can be read by a person, diffed, and loaded by a newer version that knows
the older `version`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from via_otlp.errors import ViaError

STATE_VERSION = 1
STATE_FILE = "state.json"


def save_state(path: Path, parts: dict[str, Any]) -> None:
    """Write `{"version": .., **parts}` to `path` via a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"version": STATE_VERSION, **parts}
    fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, separators=(",", ":"))
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
        doc = json.loads(text)
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
