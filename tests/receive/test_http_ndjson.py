"""The NDJSON parser process of `/v1/ingest`: pieces parsed there give the records, errors and
line numbers of the whole body, whatever the cut, and a dead parser is replaced."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from via_otlp.receive.http_ndjson import (
    MAX_NDJSON_LINE,
    NdjsonParser,
    ParserUnavailable,
    parse_piece,
)
from via_otlp.receive.ndjson import LineSplitter

BODY = (
    b'{"body": "a", "service": "s1"}\n\n'
    b"not json\n"
    b'{"body": "b", "service": "s2"}\n'
    b'{"body": "c"}\n'
    b'{"nobody": 1}\n'
    b'{"body": "d", "service": "s1"}'
)


def bodies(payload: bytes) -> list[tuple[str, str]]:
    """(service, body) of every record of a serialised request, in order."""
    out = []
    for rl in ExportLogsServiceRequest.FromString(payload).resource_logs:
        service = next((a.value.string_value for a in rl.resource.attributes), "")
        out += [(service, r.body.string_value) for sl in rl.scope_logs for r in sl.log_records]
    return out


@pytest.mark.parametrize("cut", [1, 7, 40, len(BODY)])
def test_pieces_concatenated_are_the_whole_body(cut: int) -> None:
    splitter = LineSplitter(MAX_NDJSON_LINE)
    payload, rejected, errors = b"", 0, []
    pieces = [BODY[i : i + cut] for i in range(0, len(BODY), cut)] + [None]
    for piece in pieces:  # the splitter crosses a process boundary with every piece
        splitter, parsed = parse_piece(pickle.loads(pickle.dumps(splitter)), piece, "dflt", 100, 10)
        payload += parsed.payload
        rejected += parsed.rejected
        errors += parsed.errors
    assert sorted(bodies(payload)) == [("dflt", "c"), ("s1", "a"), ("s1", "d"), ("s2", "b")]
    assert rejected == 2 and [n for n, _ in errors] == [3, 6]


def test_lines_past_the_limit_are_not_parsed() -> None:
    splitter, parsed = parse_piece(LineSplitter(MAX_NDJSON_LINE), BODY, "dflt", 4, 10)
    assert parsed.records == 2 and parsed.rejected == 1 and splitter.lines > 4


def test_the_parser_process_parses_and_a_dead_one_is_replaced() -> None:
    async def main() -> None:
        parser = NdjsonParser()
        try:
            _, parsed = await parser.parse(LineSplitter(MAX_NDJSON_LINE), BODY, "x", 100, 10)
            assert parsed.records == 3  # the last line waits for the end of the body
            assert parser._pool is not None
            for pid in list(parser._pool._processes):
                os.kill(pid, signal.SIGKILL)
            with pytest.raises(ParserUnavailable):
                await parser.parse(LineSplitter(MAX_NDJSON_LINE), BODY, "x", 100, 10)
            _, parsed = await parser.parse(LineSplitter(MAX_NDJSON_LINE), BODY, "x", 100, 10)
            assert parsed.records == 3
        finally:
            parser.close()

    asyncio.run(main())


def test_an_idle_parser_process_is_stopped() -> None:
    async def main() -> None:
        parser = NdjsonParser(idle_seconds=0.2)
        try:
            await parser.parse(LineSplitter(MAX_NDJSON_LINE), BODY, "x", 100, 10)
            assert parser.running
            for _ in range(600):  # a generous deadline for the timer, not a timing assertion
                if not parser.running:
                    break
                await asyncio.sleep(0.1)
            assert not parser.running
            _, parsed = await parser.parse(LineSplitter(MAX_NDJSON_LINE), BODY, "x", 100, 10)
            assert parsed.records == 3 and parser.running  # started again when needed
        finally:
            parser.close()

    asyncio.run(main())


ORPHAN = """
import asyncio, os, signal
from via_otlp.receive.http_ndjson import NdjsonParser
from via_otlp.receive.ndjson import LineSplitter
async def main():
    p = NdjsonParser()
    await p.parse(LineSplitter(1 << 20), b'{"body": "x"}\\n', "s", 10, 10)
    print(next(iter(p._pool._processes)), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
asyncio.run(main())
"""


def test_the_parser_process_ends_when_the_serving_process_is_killed() -> None:
    out = subprocess.run([sys.executable, "-c", ORPHAN], capture_output=True, timeout=120)
    assert out.returncode == -signal.SIGKILL
    worker = int(out.stdout.split()[0])
    for _ in range(600):  # a generous deadline, not a timing assertion
        if not Path(f"/proc/{worker}").exists():
            break
        time.sleep(0.1)
    assert not Path(f"/proc/{worker}").exists(), "the parser process outlived its parent"
