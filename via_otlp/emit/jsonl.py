"""`JsonLinesSink`: every anomaly event as one JSON object per line (``--anomalies-out FILE``).

Written for replays, where a file of events is the result to compare and diff; each `write`
ends with a flush so an interrupted replay still leaves whole lines behind.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TextIO

from via_otlp.emit.encode import event_to_json
from via_otlp.errors import ViaError
from via_otlp.model import AnomalyEvent


class JsonLinesSink:
    """Open a file, write events as JSON lines, close it; usable as a context manager.

    `open` truncates the file; `close` is idempotent; writing while closed is an error.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: TextIO | None = None
        self.written = 0

    def open(self) -> None:
        """Create (or truncate) the file; a second call is a no-op."""
        if self._file is not None:
            return
        try:
            self._file = self.path.open("w", encoding="utf-8")
        except OSError as exc:
            raise ViaError(
                f"cannot open anomalies file {self.path}: {exc.strerror}",
                hint="check that the directory exists and is writable",
            ) from exc

    def write(self, events: Sequence[AnomalyEvent]) -> None:
        """Append one line per event and flush."""
        if self._file is None:
            raise ViaError(f"anomalies file {self.path} is not open", hint="call open() first")
        lines = (json.dumps(event_to_json(e), ensure_ascii=False, allow_nan=False) for e in events)
        self._file.write("".join(f"{line}\n" for line in lines))
        self._file.flush()
        self.written += len(events)

    def close(self) -> None:
        """Close the file; safe to call twice or without `open`."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> JsonLinesSink:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
