"""Anomaly events printed for people, like the Collector's ``debug`` exporter.

Used when no endpoint is configured. One line per event (easy to grep), then the indented
template and explanation, so a terminal shows what broke, where, and why.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from via_otlp.emit.encode import DEFAULT_ERROR_SCORE, VIA_EVENT_NAME, severity_of
from via_otlp.model import AnomalyEvent
from via_otlp.times import format_rfc3339


def format_event(event: AnomalyEvent, error_score: float = DEFAULT_ERROR_SCORE) -> str:
    """A block of three lines describing one event (no trailing newline)."""
    source = " ".join(f"{k}={v}" for k, v in event.source.attributes) or event.source.key
    head = (
        f"{format_rfc3339(event.time_ns)} {severity_of(event, error_score):<5} {VIA_EVENT_NAME} "
        f"kind={event.kind.value} state={event.state.value} score={event.score:.1f} "
        f"expected={event.expected:g} observed={event.observed:g} "
        f"episode={event.episode_id} rhythm={event.rhythm_hash} {source}"
    )
    return f"{head}\n    template: {event.template}\n    {event.explanation}"


class ConsoleWriter:
    """Writes event blocks to a text stream (stdout by default), flushing after each batch."""

    def __init__(self, stream: TextIO | None = None, error_score: float = DEFAULT_ERROR_SCORE):
        self._stream = stream
        self._error_score = error_score

    def write_lines(self, lines: Sequence[str]) -> None:
        """Print plain lines (incident stories), flushing after them."""
        if not lines:
            return
        stream = self._stream if self._stream is not None else sys.stdout
        stream.write("".join(f"{line}\n" for line in lines))
        stream.flush()

    def write(self, events: Sequence[AnomalyEvent]) -> None:
        """Print `events`; the stream is looked up late so tests that swap stdout see output."""
        if not events:
            return
        stream = self._stream if self._stream is not None else sys.stdout
        blocks = (format_event(e, self._error_score) for e in events)
        stream.write("".join(f"{b}\n" for b in blocks))
        stream.flush()
