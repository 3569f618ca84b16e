"""NDJSON lines: splitting a streamed body into numbered lines, and JSON oddities per line."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from via_otlp.receive import ndjson
from via_otlp.receive.ndjson import Line, LineSplitter, parse_ndjson_line


def split(body: bytes, piece_sizes: list[int], max_line: int) -> tuple[list[Line], int]:
    splitter = LineSplitter(max_line)
    out: list[Line] = []
    at = 0
    sizes = iter(piece_sizes)
    while at < len(body):
        n = next(sizes, 7) or 1
        out += splitter.feed(body[at : at + n])
        at += n
    out += splitter.end()
    return out, splitter.lines


def reference(body: bytes, max_line: int) -> tuple[list[Line], int]:
    """What splitting must give: non-blank lines stripped, too long ones (counted from their
    first non-blank byte) as None, numbered from 1; a last line without newline counts."""
    parts = body.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    lines = []
    for number, part in enumerate(parts, 1):
        content = part.lstrip()
        if len(content) > max_line:
            lines.append(Line(number, None))
        elif content.strip():
            lines.append(Line(number, content.rstrip()))
    return lines, len(parts)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.sampled_from([b"\n", b" ", b"\r\n", b"a", b"{}", b"xyz" * 3, b"\t"]), max_size=60),
    st.lists(st.integers(0, 9), max_size=80),
    st.integers(1, 12),
)
def test_any_body_in_any_pieces_splits_like_the_reference(
    tokens: list[bytes], pieces: list[int], max_line: int
) -> None:
    body = b"".join(tokens)
    assert split(body, pieces, max_line) == reference(body, max_line)


def test_millions_of_blank_lines_cost_no_step_per_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """16 Mi blank lines (what 16 KiB of gzip inflate to) in 64 KiB pieces: the work is one
    regex search and one newline count per piece, none per line."""
    calls = {"search": 0}
    real = ndjson._CONTENT

    class Counting:
        def finditer(self, *args: object) -> object:
            calls["search"] += 1
            return real.finditer(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(ndjson, "_CONTENT", Counting())
    splitter = LineSplitter(1 << 20)
    piece = b"\n" * 65536
    found = [line for _ in range(256) for line in splitter.feed(piece)]
    assert found == [] and splitter.lines == 16 * 1024 * 1024
    assert calls["search"] == 256


def test_a_line_over_the_limit_is_reported_once_and_not_kept() -> None:
    splitter = LineSplitter(max_line=10)
    out = splitter.feed(b"x" * 25) + splitter.feed(b"y" * 1000) + splitter.feed(b'\n{"a":1}\n')
    assert out == [Line(1, None), Line(2, b'{"a":1}')]
    assert len(splitter._partial) == 0


@pytest.mark.parametrize(
    "line",
    [
        b'{"body": "\\ud800"}',
        b'{"body": {"\\udc00": 1}}',
        b'{"body": "x", "attributes": {"\\udfff": "v\\ud800"}}',
        b'{"body": "x", "service": "svc\\udc00"}',
    ],
)
def test_unpaired_surrogates_in_a_line_are_replaced(line: bytes) -> None:
    record = parse_ndjson_line(line)
    from via_otlp.receive.ndjson import records_to_request

    data = records_to_request([record]).SerializeToString()  # protobuf takes it now
    assert "\ufffd".encode() in data


def test_ndjson_nesting_is_cut_where_rendering_cuts() -> None:
    from via_otlp.receive.normalise import MAX_RENDER_DEPTH

    deep = "1"
    for _ in range(200):
        deep = '{"k": ' + deep + "}"
    record = parse_ndjson_line(('{"body": ' + deep + "}").encode())
    value, depth = record.record.body, 0
    while value.HasField("kvlist_value"):
        value, depth = value.kvlist_value.values[0].value, depth + 1
    assert depth == MAX_RENDER_DEPTH + 1 and value.string_value == "…"
