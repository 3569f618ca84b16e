"""A progress line on a terminal: rewritten in place at most every `interval` seconds, shown
only when the stream is a terminal (so logs and pipes get no control characters)."""

from __future__ import annotations

import sys
import time
from typing import IO


class StatusLine:
    """One line of stderr (or `stream`) that `show` rewrites and `close` clears."""

    def __init__(self, stream: IO[str] | None = None, interval: float = 0.2) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.interval = interval
        self.started = time.monotonic()
        self._last = 0.0  # the first `show` is seen at once

    def due(self) -> bool:
        """Whether a `show` now would be seen (a terminal, and `interval` passed since the last)."""
        return self.enabled and time.monotonic() - self._last >= self.interval

    def show(self, text: str) -> None:
        """Replace the line with `text`, if `due`."""
        if self.due():
            self._last = time.monotonic()
            self.stream.write(f"\r{text} ")
            self.stream.flush()

    def rate(self, done: float) -> float:
        """`done` per second since the line was made."""
        return done / max(time.monotonic() - self.started, 1e-9)

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()
