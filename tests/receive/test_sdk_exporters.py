"""The OpenTelemetry Python SDK's own OTLP exporters send to a `via-otlp serve` process.

Every record must be counted, none lost, and the per-rhythm-hash counts must match what was
sent: ten patterns (five messages × two services) × 1,000 records each.
"""

from __future__ import annotations

import time
from collections import Counter

import grpc
import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from tests.conftest import ServerProcess

pytestmark = pytest.mark.slow

MESSAGES = [
    ("Payment declined for order {i}", SeverityNumber.ERROR, "ERROR"),
    ("User {i} logged in from 10.0.{j}.{k}", SeverityNumber.INFO, "INFO"),
    ("Cache miss for key session-{i}", SeverityNumber.DEBUG, "DEBUG"),
    ("Request took {i} ms", SeverityNumber.WARN, "WARN"),
    ("Connection reset by peer", SeverityNumber.ERROR, "ERROR"),
]
SERVICES = ["checkout", "frontend"]
PER_PATTERN = 1000


def send_with_sdk(exporter: object, service: str) -> None:
    provider = LoggerProvider(
        resource=Resource.create({"service.name": service, "deployment.environment.name": "test"})
    )
    provider.add_log_record_processor(
        BatchLogRecordProcessor(
            exporter, max_queue_size=20_000, max_export_batch_size=1000, schedule_delay_millis=50
        )  # type: ignore[arg-type]
    )
    logger = provider.get_logger("test.sdk")
    now = time.time_ns()
    for i in range(PER_PATTERN):
        for template, number, text in MESSAGES:
            logger.emit(
                timestamp=now + i * 1_000_000,
                severity_number=number,
                severity_text=text,
                body=template.format(i=i * 7 + 3, j=i % 250, k=(i * 3) % 250),
                attributes={"user.id": f"u{i % 37}"},
            )
    assert provider.force_flush(30_000)
    provider.shutdown()


def check_counts(server: ServerProcess, expected_records: int) -> None:
    status = server.wait_for(
        lambda s: s["intake"]["records_consumed"] >= expected_records,
        what=f"{expected_records} records",
    )
    assert status["intake"]["records_accepted"] == expected_records
    assert status["intake"]["records_consumed"] == expected_records
    counts = Counter(status["rhythm_counts"].values())
    # one rhythm hash per (service, message): 10 patterns of 1,000 records each
    assert counts == Counter({PER_PATTERN: len(SERVICES) * len(MESSAGES)}), status["rhythm_counts"]


def test_grpc_exporter_with_gzip_delivers_every_record(server: ServerProcess) -> None:
    for service in SERVICES:
        send_with_sdk(
            GrpcLogExporter(
                endpoint=server.grpc_target, insecure=True, compression=grpc.Compression.Gzip
            ),
            service,
        )
    check_counts(server, PER_PATTERN * len(MESSAGES) * len(SERVICES))
    assert server.status()["intake"]["requests"]["grpc"]["accepted"] >= 10


def test_http_exporter_delivers_every_record(server: ServerProcess) -> None:
    for service in SERVICES:
        send_with_sdk(
            HttpLogExporter(
                endpoint=f"{server.http_url}/v1/logs", compression=HttpCompression.Gzip
            ),
            service,
        )
    check_counts(server, PER_PATTERN * len(MESSAGES) * len(SERVICES))
    assert server.status()["intake"]["requests"]["http"]["accepted"] >= 10
