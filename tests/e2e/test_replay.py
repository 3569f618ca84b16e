"""`via-otlp replay`: the same pipeline offline, from files or stdin, in every input format."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from tests.conftest import BIN
from via_otlp.receive.otlp_codec import request_to_json_line

pytestmark = pytest.mark.slow

T0 = 1_790_000_000  # seconds


def replay(
    *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "via-otlp"), "replay", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def ndjson_day(path: Path) -> int:
    """Two hours of a steady pattern, then a burst of a never-seen ERROR pattern."""
    lines = []
    for second in range(0, 7200, 2):
        lines.append(
            {
                "time": T0 + second,
                "service": "billing",
                "severity": "INFO",
                "body": f"invoice {second} sent",
            }
        )
    for i in range(40):
        lines.append({"time": T0 + 7200 + i / 10, "service": "billing", "severity": "ERROR",
                      "body": f"ledger write failed for invoice {i}", "trace_id": f"{i + 1:032x}"})  # fmt: skip
    for second in range(7205, 7800, 2):
        lines.append(
            {
                "time": T0 + second,
                "service": "billing",
                "severity": "INFO",
                "body": f"invoice {second} sent",
            }
        )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return len(lines)


def test_ndjson_replay_finds_the_new_error_and_writes_anomalies(tmp_path: Path) -> None:
    log = tmp_path / "day.ndjson"
    n = ndjson_day(log)
    out = tmp_path / "anomalies.jsonl"
    result = replay(str(log), "--anomalies-out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"replayed {n:,} records" in result.stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    novelty = [e for e in events if e["kind"] == "novelty"]
    assert novelty, events
    first = novelty[0]
    assert first["state"] == "open"
    assert "ledger write failed for invoice <*>" in first["template"]
    assert first["source"]["attributes"] == {"service.name": "billing"}
    assert first["observed"] == 40 and first["expected"] == 0
    assert first["time_unix_nano"] == (T0 + 7210) * 10**9  # the end of the bucket holding the burst
    assert len(first["rhythm_hash"]) == 16 and 0 < first["score"] <= 100
    assert first["sample_trace_ids"][0] == f"{1:032x}"
    assert "new ERROR pattern" in first["explanation"]
    assert [e["state"] for e in novelty] == ["open", "resolved"]
    # the same input gives the same anomalies, byte for byte
    again = tmp_path / "again.jsonl"
    assert replay(str(log), "--anomalies-out", str(again), cwd=tmp_path).returncode == 0
    assert again.read_text() == out.read_text()


def test_otlp_json_and_text_and_stdin(tmp_path: Path) -> None:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.add(key="service.name").value.string_value = "svc"
    for i in range(5):
        lr = rl.scope_logs.add().log_records.add()
        lr.time_unix_nano = (T0 + i) * 10**9
        lr.body.string_value = f"job {i} finished"
        lr.trace_id = bytes(range(16))
    otlp = tmp_path / "export.jsonl"
    otlp.write_text(request_to_json_line(req) + "\n" + request_to_json_line(req) + "\n")
    result = replay(str(otlp), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "replayed 10 records" in result.stderr and "1 rhythm hashes" in result.stderr
    result = replay(
        "-",
        "--format",
        "text",
        "--service",
        "cron",
        stdin="job 1 done\njob 2 done\n\nworker 7 started\n",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "replayed 3 records" in result.stderr and "2 rhythm hashes" in result.stderr


def test_unreadable_lines_are_reported_not_fatal(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"body": "ok"}\nnot json\n{"time": "yesterday", "body": "x"}\n')
    result = replay(str(bad), "--format", "ndjson", cwd=tmp_path)
    assert result.returncode == 0
    assert "replayed 1 records" in result.stderr
    assert "2 line(s) could not be read" in result.stderr and "bad.ndjson:2" in result.stderr


def test_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    result = replay(str(tmp_path / "nope.log"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("via-otlp: cannot read")
    assert "Traceback" not in result.stderr


def test_anomalies_show_the_generalised_template(tmp_path: Path) -> None:
    """A profile created from the first line shows its template as it is now, not as it was."""
    lines = []
    for s in range(0, 7200, 2):
        lines.append(
            {
                "time": T0 + s,
                "service": "mail",
                "body": f"invoice {s} sent to user{s % 17}@example.com",
            }
        )
    for s in range(7200, 7500):
        for k in range(8):
            lines.append(
                {
                    "time": T0 + s + k / 8,
                    "service": "mail",
                    "body": f"invoice {s} sent to user{k}@example.com",
                }
            )
    log = tmp_path / "mail.ndjson"
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "a.jsonl"
    assert replay(str(log), "--anomalies-out", str(out), cwd=tmp_path).returncode == 0
    events = [json.loads(line) for line in out.read_text().splitlines()]
    spikes = [e for e in events if e["kind"] == "spike"]
    assert spikes, events
    assert spikes[0]["template"] == "invoice <*> sent to <*>"


def test_text_lines_keep_their_own_time(tmp_path: Path) -> None:
    """A day of plain log lines replays in the lines' time, not the time they were read."""
    from datetime import UTC, datetime

    def iso(t: float) -> str:
        return (
            datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )

    lines = [f"{iso(T0 + s)} INFO invoice {s} sent" for s in range(0, 7200, 2)]
    for i in range(40):
        lines.append(f"{iso(T0 + 7200 + i / 10)} ERROR ledger write failed for invoice {i}")
        lines.append("    at ledger.Writer.write(Writer.java:42)")  # continuation: no time
    lines += [f"{iso(T0 + s)} INFO invoice {s} sent" for s in range(7205, 7800, 2)]
    log = tmp_path / "day.log"
    log.write_text("\n".join(lines) + "\n")
    out = tmp_path / "a.jsonl"
    result = replay(str(log), "--format", "text", "--service", "billing",
                    "--anomalies-out", str(out), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "40 text line(s) carried no timestamp" in result.stderr
    assert "(0 with none before: the read time)" in result.stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    novelty = [e for e in events if e["kind"] == "novelty" and e["state"] == "open"]
    assert novelty, events
    assert "ledger write failed" in novelty[0]["template"]
    assert novelty[0]["time_unix_nano"] == (T0 + 7210) * 10**9  # event time, as with NDJSON
