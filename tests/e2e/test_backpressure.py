"""Flow control: with a tiny queue and a slow consumer, senders that retry as the SDK does get
every record through; the retryable answers (UNAVAILABLE + RetryInfo, HTTP 503 + Retry-After)
are counted, and nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from tests.conftest import CLIENT_TIMEOUT, free_port
from via_otlp.app import App
from via_otlp.config import parse_config
from via_otlp.model import LogBatch

pytestmark = pytest.mark.slow

RECORDS = 1500
BATCH = 100


def send(exporter: object) -> None:
    provider = LoggerProvider(resource=Resource.create({"service.name": "pressure"}))
    provider.add_log_record_processor(
        BatchLogRecordProcessor(
            exporter,
            max_queue_size=RECORDS * 2,
            max_export_batch_size=BATCH,
            schedule_delay_millis=10,
        )  # type: ignore[arg-type]
    )
    logger = provider.get_logger("pressure")
    for i in range(RECORDS):
        logger.emit(body=f"work item {i} done")
    assert provider.force_flush(120_000)
    provider.shutdown()


async def slow(batch: LogBatch) -> None:
    await asyncio.sleep(0.01)


@pytest.mark.parametrize("transport", ["grpc", "http"])
async def test_tiny_queue_and_slow_consumer_lose_nothing(tmp_path: Path, transport: str) -> None:
    grpc_port, http_port = free_port(), free_port()
    config = parse_config(
        f"""{{receive: {{grpc: {{endpoint: "127.0.0.1:{grpc_port}"}}, http: {{endpoint: "127.0.0.1:{http_port}"}},
              queue_max_records: {BATCH * 2}}},
             state: {{data_dir: "{tmp_path}"}}, control: {{enabled: false}}, registry: {{enabled: false}}}}"""
    )
    app = App(config, consume_hook=slow)
    await app.start()
    try:

        def exporter() -> object:
            if transport == "grpc":
                return GrpcLogExporter(endpoint=f"127.0.0.1:{grpc_port}", insecure=True, timeout=60)
            return HttpLogExporter(endpoint=f"http://127.0.0.1:{http_port}/v1/logs", timeout=60)

        senders = [asyncio.to_thread(send, exporter()) for _ in range(3)]
        await asyncio.gather(*senders)
        await asyncio.wait_for(app.pipeline.queue.join(), CLIENT_TIMEOUT)
    finally:
        await app.shutdown()
    stats = app.pipeline.stats
    assert stats.records_consumed == 3 * RECORDS
    assert stats.records_accepted == 3 * RECORDS
    key = "grpc" if transport == "grpc" else "http"
    retryable = stats.as_dict()["requests"][key].get("queue_full", 0)  # type: ignore[index]
    assert retryable > 0, "the queue never filled: the test did not exercise backpressure"
    assert sum(app.pipeline.rhythm_counts().values()) == 3 * RECORDS
    assert stats.normalised.records == 3 * RECORDS  # refused requests cost no normalisation
