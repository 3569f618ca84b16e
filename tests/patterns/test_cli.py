"""`via-otlp patterns`: per-line output after the whole input, summary, config file."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from via_otlp.patterns import cli


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="via-otlp")
    cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["patterns", *argv])


def test_prints_final_ids_for_every_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "in.log"
    f.write_text("user=alice login ok\nuser=bob login ok\nVM Started\n", encoding="utf-8")
    args = parse([str(f)])
    assert args.func is cli.run
    assert cli.run(args) == 0
    out = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert len(out) == 3
    assert (
        out[0] == out[1] and out[0][1] == "user=<*> login ok"
    )  # the final template, not the first
    assert out[2][1] == "VM Started"


def test_summary_most_frequent_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "in.log"
    f.write_text("VM Started\n" + "".join(f"job {i} done\n" for i in range(3)), encoding="utf-8")
    assert cli.run(parse([str(f), "--summary"])) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [r[0] for r in rows] == ["3", "1"] and rows[0][2] == "job <*> done"


def test_stdin_and_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    cfg = tmp_path / "via.json5"
    cfg.write_text(
        '{patterns: {masking: [{name: "n", regex: "\\\\d+", mask: "<N>"}]}}', encoding="utf-8"
    )
    monkeypatch.setattr("sys.stdin", io.StringIO("took 5 ms\n"))
    assert cli.run(parse(["-", "--config", str(cfg)])) == 0
    assert capsys.readouterr().out.split("\t")[1].strip() == "took <N> ms"


def test_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(parse([str(tmp_path / "missing.log")])) == 2
    bad = tmp_path / "bad.json5"
    bad.write_text('{patterns: {masking: [{name: "x", regex: "("}]}}', encoding="utf-8")
    assert cli.run(parse([str(tmp_path / "missing.log"), "--config", str(bad)])) == 2
    assert "rule 'x' does not compile" in capsys.readouterr().err


def test_progress_on_a_terminal_only() -> None:
    import io

    from via_otlp.patterns.cli import PatternsConfig, Progress, mine_lines

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    lines = [f"user {i} logged in" for i in range(25_000)]
    for stream in (tty, pipe):
        templates = mine_lines(lines, PatternsConfig(), Progress(len(lines), stream, interval=0))
        assert len(templates) == len(lines)
    shown = tty.getvalue()
    assert "10,000 of 25,000 lines" in shown and "20,000 of 25,000 lines" in shown
    assert shown.endswith("\r\033[K")  # the line is cleared at the end
    assert pipe.getvalue() == ""
