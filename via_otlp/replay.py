"""Offline intake: feed log files through the same pipeline as `serve`, in event time.

Formats: `otlp-json` (one ExportLogsServiceRequest in OTLP/JSON per line, as the Collector's
`file` exporter writes), `ndjson` (one record per line, see `receive/ndjson.py`) and `text`
(raw lines of one service). `auto` looks at the first non-empty line.

`read_batches` gives normalised batches: OTLP/JSON lines go straight to columns
(`receive/otlp_json.py`, no protobuf message); a text line keeps the timestamp it carries
(`receive/linetime.py`); a line without one (a stack trace's continuation) takes the time of the
line before it in the file, or the read time when no line had one yet (counted).
"""

from __future__ import annotations

import asyncio
import enum
import io
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from via_otlp.config import Config
from via_otlp.errors import InputError, ViaError
from via_otlp.model import AnomalyEvent, LogBatch
from via_otlp.progress import StatusLine
from via_otlp.receive.intake import Intake, IntakeStats
from via_otlp.receive.linetime import LineTimes
from via_otlp.receive.ndjson import TextRecord, parse_ndjson_line, records_to_request, text_record
from via_otlp.receive.otlp_codec import Encoding
from via_otlp.shard.pool import ShardPool

CHUNK_RECORDS = 1000


class Format(enum.StrEnum):
    """Input formats of `via-otlp replay`."""

    AUTO = "auto"
    OTLP_JSON = "otlp-json"
    NDJSON = "ndjson"
    TEXT = "text"


def sniff_format(first_line: str) -> Format:
    """Guess the format from the first non-empty line."""
    stripped = first_line.lstrip()
    if stripped.startswith("{"):
        return (
            Format.OTLP_JSON
            if '"resourceLogs"' in stripped[:200] or '"resource_logs"' in stripped[:200]
            else Format.NDJSON
        )
    return Format.TEXT


@dataclass
class ReplayProblems:
    """Lines that could not be read, with the first few reasons."""

    count: int = 0
    shown: list[str] = field(default_factory=list)
    untimed: int = 0  # text lines without a timestamp of their own
    read_time: int = 0  # ... of which no earlier line of the file gave a time: read time used

    def add(self, where: str, error: Exception) -> None:
        self.count += 1
        if len(self.shown) < 10:
            self.shown.append(f"{where}: {error}")


def _open(path: str) -> tuple[IO[str], int]:
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace"), 0
    p = Path(path)
    try:
        return p.open(encoding="utf-8", errors="replace", newline="\n"), p.stat().st_size
    except OSError as exc:
        raise ViaError(f"cannot read {path}: {exc.strerror}") from None


def read_batches(
    path: str,
    fmt: Format,
    service: str,
    problems: ReplayProblems,
    intake: Intake,
    progress: Progress | None = None,
) -> Iterator[LogBatch]:
    """Normalised batches from one file, in file order: one per OTLP/JSON line, else of at most
    CHUNK_RECORDS records."""
    stream, size = _open(path)
    if progress is not None:
        progress.begin_file(path, size)
    times = LineTimes()
    last_time = 0
    with stream:
        pending: list[TextRecord] = []
        for line_no, line in enumerate(stream, 1):
            if progress is not None:
                progress.advance(len(line))
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            if fmt is Format.AUTO:
                fmt = sniff_format(text)
            try:
                if fmt is Format.OTLP_JSON:
                    yield intake.prepare_json(text)
                    continue
                if fmt is Format.NDJSON:
                    pending.append(parse_ndjson_line(text, service))
                else:
                    t = times.time_of(text)
                    if t is None:
                        problems.untimed += 1
                        problems.read_time += not last_time
                        t = last_time
                    last_time = t
                    pending.append(text_record(text, service, time_ns=t))
            except InputError as exc:
                problems.add(f"{path}:{line_no}", exc)
                continue
            if len(pending) >= CHUNK_RECORDS:
                yield intake.prepare_request(records_to_request(pending))
                pending = []
        if pending:
            yield intake.prepare_request(records_to_request(pending))


class Progress:
    """A one-line progress display on stderr, only when stderr is a terminal."""

    def __init__(self, stream: IO[str] | None = None, interval: float = 0.2) -> None:
        self.line = StatusLine(stream, interval)
        self.records = 0
        self._file = ""
        self._size = 0
        self._done = 0

    def begin_file(self, name: str, size: int) -> None:
        self._file, self._size, self._done = name, size, 0

    def advance(self, nbytes: int) -> None:
        self._done += nbytes

    def add_records(self, n: int) -> None:
        self.records += n
        if self.line.due():
            pct = f"{100 * self._done / self._size:5.1f}% " if self._size else ""
            rate = self.line.rate(self.records)
            self.line.show(f"{self._file}: {pct}{self.records:,} records, {rate:,.0f} records/s")

    def close(self) -> None:
        self.line.close()


async def replay_sharded(
    config: Config,
    requests: Iterable[ExportLogsServiceRequest],
    sink: Callable[[list[AnomalyEvent]], None],
    now_ns: int | None = None,
    window: int = 8,
) -> IntakeStats:
    """Feed requests through shard processes, in order and in event time, then flush.

    The same shards as `serve`, told the watermark by the coordinator, so the anomalies are the
    same for any `pipeline.workers`. Up to `window` requests are being decoded at once; their
    batches still go on in request order. Nothing is restored or saved: a replay starts fresh.
    """
    pool = ShardPool(config, sink, ordered=True, persist=False)
    await pool.start()
    try:
        pending: set[asyncio.Task[int]] = set()
        for request in requests:
            payload = request.SerializeToString()
            pending.add(
                asyncio.create_task(
                    pool.submit_payload(payload, Encoding.PROTOBUF, wait=True, now_ns=now_ns)
                )
            )
            if len(pending) >= window:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    t.result()
        if pending:
            await asyncio.gather(*pending)
        await pool.flush()
    finally:
        await pool.stop()
    return pool.stats
