"""NDJSON bodies of `/v1/ingest` split, parsed and encoded in a process of their own.

Parsing is pure Python (a JSON object and a LogRecord per line). In a thread of the serving
process it held the GIL that the event loop needs to answer health checks: under a 100 MB
upload `/healthz` waited up to 1.6 s on a busy machine. In a process, the loop only hands over
64 KiB pieces and gets back serialised OTLP requests.

The line splitter's state travels with each piece (a few bytes: the unfinished last line), so
one worker serves every request in turn and a request needs no state in it.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from via_otlp.errors import InputError
from via_otlp.receive.ndjson import Line, LineSplitter, parse_ndjson_line, records_to_request

log = logging.getLogger(__name__)

MAX_NDJSON_LINE = 1024 * 1024


@dataclass(slots=True)
class Parsed:
    """What some lines of a body gave: their good records as one serialised request (several
    such requests concatenated are one request: protobuf merges repeated fields), the count of
    bad lines and the first `max_errors` of them with their line numbers."""

    payload: bytes = b""
    records: int = 0
    rejected: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    repaired: bool = False  # a line had invalid UTF-8 or unpaired surrogates, replaced


def parse_lines(lines: list[Line], default_service: str, max_errors: int) -> Parsed:
    """NDJSON lines -> `Parsed`. Pure."""
    out = Parsed()
    records = []
    for line in lines:
        try:
            if line.text is None:
                raise InputError(f"line longer than {MAX_NDJSON_LINE} bytes")
            record = parse_ndjson_line(line.text, default_service)
        except InputError as exc:
            out.rejected += 1
            if len(out.errors) < max_errors:
                out.errors.append((line.number, str(exc)))
            continue
        out.repaired = out.repaired or record.repaired
        records.append(record)
    if records:
        out.payload = records_to_request(records).SerializeToString()
        out.records = len(records)
    return out


def parse_piece(
    splitter: LineSplitter,
    piece: bytes | None,
    default_service: str,
    max_lines: int,
    max_errors: int,
) -> tuple[LineSplitter, Parsed]:
    """Feed `piece` (None: the body has ended) and parse the lines it completes, up to line
    `max_lines`; returns the splitter (its new state) with them. Runs in the parser process."""
    lines = splitter.feed(piece) if piece is not None else splitter.end()
    if splitter.lines > max_lines:
        lines = [line for line in lines if line.number <= max_lines]
    return splitter, parse_lines(lines, default_service, max_errors)


def _worker_init(parent: int) -> None:
    """The parser ends with the serving process, not on the terminal's Ctrl-C or a SIGTERM
    sent to the whole group (the serving process stops it when it has finished), and also
    when the serving process is killed (its task queue never ends then: it holds both ends)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


class ParserUnavailable(Exception):
    """The parser process died (killed, out of memory); a new one is started for the next piece."""


class NdjsonParser:
    """One parser process, started on first use (spawned: the serving process runs gRPC
    threads, which do not survive a fork); pieces of every request go through it in turn.
    It is stopped after `idle_seconds` without work, so its memory comes back."""

    def __init__(self, idle_seconds: float = 60.0) -> None:
        self.idle_seconds = idle_seconds
        self._pool: ProcessPoolExecutor | None = None
        self._busy = 0
        self._last_used = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None

    async def parse(
        self,
        splitter: LineSplitter,
        piece: bytes | None,
        default_service: str,
        max_lines: int,
        max_errors: int,
    ) -> tuple[LineSplitter, Parsed]:
        """`parse_piece` in the parser process; `ParserUnavailable` if that process died."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init,
                initargs=(os.getpid(),),
            )
        loop = asyncio.get_running_loop()
        self._busy += 1
        try:
            return await loop.run_in_executor(
                self._pool, parse_piece, splitter, piece, default_service, max_lines, max_errors
            )
        except BrokenProcessPool:
            log.error("the NDJSON parser process died; starting a new one for the next request")
            self.close()
            raise ParserUnavailable from None
        finally:
            self._busy -= 1
            self._last_used = loop.time()
            if self._idle_timer is None and self._pool is not None:
                self._idle_timer = loop.call_later(self.idle_seconds, self._close_if_idle)

    def _close_if_idle(self) -> None:
        self._idle_timer = None
        loop = asyncio.get_running_loop()
        idle = loop.time() - self._last_used
        if self._busy == 0 and idle >= self.idle_seconds:
            self.close()
        elif self._pool is not None:
            self._idle_timer = loop.call_later(
                max(0.1, self.idle_seconds - idle), self._close_if_idle
            )

    def close(self) -> None:
        """Stop the parser process (it finishes the piece it has, if any)."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    @property
    def running(self) -> bool:
        """Whether the parser process is up (started by a request, not yet idle)."""
        return self._pool is not None
