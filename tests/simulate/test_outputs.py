"""What a run leaves behind: the table, the JSON report, PNG plots and evaluation_metrics rows."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg

from via_otlp.cli import main
from via_otlp.config import Config
from via_otlp.registry.config import RegistryConfig
from via_otlp.simulate import report
from via_otlp.simulate.cli import record_evaluations
from via_otlp.simulate.run import run_offline
from via_otlp.simulate.scenario import load_scenario

SMALL = Path(__file__).parent / "data" / "small.json5"


def test_cli_prints_the_table_and_writes_report_and_plot(tmp_path: Path, capsys) -> None:
    code = main(
        ["simulate", str(SMALL), "--report", str(tmp_path / "r.json"), "--plot", str(tmp_path / "p"),
         "--check"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "spike" in out and "new_template" in out and "overall" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["by_kind"]["spike"]["recall"] == 1.0
    assert data["by_kind"]["new_template"]["true_positives"] == 1
    assert data["scenarios"][0]["windows"][0]["delay_buckets"] is not None
    assert data["failures"] == []
    png = tmp_path / "p" / "small.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000  # axes, two series, shading: not an empty canvas


async def test_evaluation_metrics_row(db_dsn: str, data_dir: Path) -> None:
    config = Config(registry=RegistryConfig(dsn=db_dsn))
    result = run_offline(load_scenario(SMALL), Config())
    rows = report.evaluation_rows([result], "test-run")
    assert await record_evaluations_in(config, data_dir, rows) == 1
    conn = await asyncpg.connect(db_dsn)
    try:
        got = await conn.fetch("SELECT run, scenario, f1, recall, params FROM evaluation_metrics")
    finally:
        await conn.close()
    assert [(r["run"], r["scenario"]) for r in got] == [("test-run", "small")]
    assert got[0]["recall"] == 1.0


async def record_evaluations_in(config: Config, data_dir: Path, rows) -> int:
    from dataclasses import replace

    from via_otlp.config import StateConfig

    return await record_evaluations(
        replace(config, state=StateConfig(data_dir=str(data_dir))), rows
    )
