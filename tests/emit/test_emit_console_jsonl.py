"""The console output (no endpoint) and the JSON-lines file of replays."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from via_otlp.emit import Emitter, EmitterState, JsonLinesSink, event_to_json
from via_otlp.emit.config import EmitConfig
from via_otlp.emit.console import format_event
from via_otlp.errors import ViaError
from via_otlp.model import EpisodeState

from .conftest import make_event


def test_format_event_is_one_head_line_and_details() -> None:
    text = format_event(make_event("ep-9", score=85.0))
    head, template, explanation = text.split("\n")
    assert "ERROR via.anomaly kind=spike state=open score=85.0" in head
    assert "episode=ep-9" in head and "service.name=checkout" in head
    assert template.strip() == "template: payment <*> failed after <*> ms"
    assert "expected about 2" in explanation


async def test_emitter_without_endpoint_prints_every_event() -> None:
    out = io.StringIO()
    emitter = Emitter(EmitConfig(), console_stream=out)
    await emitter.start()
    assert emitter.stats().state is EmitterState.CONSOLE
    emitter.submit([make_event("a"), make_event("a", state=EpisodeState.RESOLVED)])
    await emitter.shutdown()
    heads = [line for line in out.getvalue().splitlines() if not line.startswith(" ")]
    assert len(heads) == 2
    assert "state=resolved" in heads[1]
    assert emitter.stats().sent == 2


async def test_console_defaults_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    emitter = Emitter(EmitConfig())
    await emitter.start()
    emitter.submit([make_event("on-stdout")])
    await emitter.shutdown()
    assert "episode=on-stdout" in capsys.readouterr().out


def test_json_lines_sink_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "anomalies.jsonl"
    events = [make_event("a"), make_event("a", state=EpisodeState.RESOLVED), make_event("b")]
    with JsonLinesSink(path) as sink:
        sink.write(events[:2])
        sink.write(events[2:])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [event_to_json(e) for e in events]
    assert sink.written == 3


def test_json_lines_sink_lifecycle(tmp_path: Path) -> None:
    sink = JsonLinesSink(tmp_path / "x.jsonl")
    sink.close()  # close without open is safe
    with pytest.raises(ViaError, match="not open"):
        sink.write([make_event()])
    sink.open()
    sink.open()
    sink.close()
    sink.close()
    with pytest.raises(ViaError, match="cannot open"):
        JsonLinesSink(tmp_path / "missing-dir" / "x.jsonl").open()
