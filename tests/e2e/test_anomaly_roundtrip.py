"""End to end: the SDK's exporter sends logs to a `via-otlp serve` process, via-otlp finds the
anomaly and emits it to a real OTLP/gRPC server on loopback, as logs and spans that carry the
fields a backend needs. A downstream that is down when the anomaly happens, then comes up,
still receives it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from tests.conftest import CLIENT_TIMEOUT, ServerProcess, free_port, start_server
from tests.emit.conftest import GrpcServerFactory, Recorder

pytestmark = pytest.mark.slow

SECOND = 10**9
HISTORY = 240  # seconds of event time before the anomaly


def fast_detection(emit_endpoint: str) -> dict[str, Any]:
    return {
        "detect": {
            "bucket": "1s",
            "allowed_lateness": "1s",
            "warmup": "20s",
            "cooldown": "3s",
            "novelty": {"source_warmup": "30s", "threshold": 0},  # every new pattern
        },
        "emit": {
            "endpoint": emit_endpoint,
            "signals": "both",
            "batch": {"interval": "100ms"},
            "retry": {"initial_interval": "200ms", "max_interval": "500ms"},
        },
    }


def send_history_then_a_new_error(target: str) -> int:
    """HISTORY seconds of a steady pattern, then a never-seen ERROR pattern, in event time."""
    provider = LoggerProvider(
        resource=Resource.create({"service.name": "checkout", "deployment.environment.name": "e2e"})
    )
    provider.add_log_record_processor(
        BatchLogRecordProcessor(
            OTLPLogExporter(endpoint=target, insecure=True),
            max_queue_size=20_000,
            max_export_batch_size=1000,
            schedule_delay_millis=50,
        )
    )
    logger = provider.get_logger("e2e")
    start = time.time_ns() - (HISTORY + 5) * SECOND
    for second in range(HISTORY):
        for i in range(10):
            logger.emit(timestamp=start + second * SECOND + i * 10**8, severity_number=SeverityNumber.INFO,
                        severity_text="INFO", body=f"GET /api/items/{second * 10 + i} 200")  # fmt: skip
    for i in range(20):
        logger.emit(
            timestamp=start + HISTORY * SECOND + i * 10**7,
            severity_number=SeverityNumber.ERROR,
            severity_text="ERROR",
            body=f"Payment gateway timeout for order {9000 + i}",
        )
    assert provider.force_flush(30_000)
    provider.shutdown()
    return HISTORY * 10 + 20


def attrs(record: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in record.attributes:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None
    return out


def novelty_records(rec: Recorder) -> list[Any]:
    return [r for r in rec.log_records if attrs(r).get("via.anomaly.kind") == "novelty"]


async def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def run(tmp_path: Path, factory: GrpcServerFactory, downstream_first: bool) -> None:
    port = free_port()
    downstream = await factory(port) if downstream_first else None
    server: ServerProcess = await asyncio.to_thread(
        start_server, tmp_path, fast_detection(f"http://127.0.0.1:{port}")
    )
    try:
        sent = await asyncio.to_thread(send_history_then_a_new_error, server.grpc_target)
        await asyncio.to_thread(server.wait_for, lambda s: s["intake"]["records_consumed"] >= sent)
        if downstream is None:
            await asyncio.to_thread(
                server.wait_for,
                lambda s: s["events"]["emitted"] >= 1,
                CLIENT_TIMEOUT,
                "the anomaly to be found",
            )
            await asyncio.to_thread(  # the emitter is retrying against a closed port
                server.wait_for,
                lambda s: s["emit"]["retries"] >= 1,
                CLIENT_TIMEOUT,
                "the emitter to retry",
            )
            downstream = await factory(port)
        rec = downstream.rec
        await wait_for(
            lambda: novelty_records(rec), CLIENT_TIMEOUT, "a novelty log record downstream"
        )
        record = novelty_records(rec)[0]
        a = attrs(record)
        assert record.event_name == "via.anomaly"
        assert record.severity_text in ("WARN", "ERROR")
        assert "Payment gateway timeout for order <*>" in a["log.record.template"]
        assert a["via.anomaly.state"] == "open"
        assert 0 < a["via.anomaly.score"] <= 100
        assert len(a["via.rhythm_hash"]) == 16 and a["via.episode.id"]
        assert "via.expected" in a and a["via.observed"] >= 1
        assert "checkout" in record.body.string_value
        resource = {
            kv.key: kv.value.string_value for kv in rec.logs[0].resource_logs[0].resource.attributes
        }
        assert resource["service.name"] == "checkout"
        assert rec.logs[0].resource_logs[0].scope_logs[0].scope.name == "via-otlp"

        # the episode resolves after the cool-down and becomes a span from open to resolve
        # (other episodes may resolve too: once the test stops sending, the steady pattern's
        # silence is a drop, seen on the wall clock)
        def novelty_spans() -> list[Any]:
            return [s for s in rec.spans if attrs(s).get("via.episode.id") == a["via.episode.id"]]

        await wait_for(novelty_spans, CLIENT_TIMEOUT, "the novelty episode's span")
        span = novelty_spans()[0]
        assert attrs(span)["via.anomaly.kind"] == "novelty"
        assert span.start_time_unix_nano == a["via.episode.start_time_unix_nano"]
        assert span.end_time_unix_nano > span.start_time_unix_nano
    finally:
        code = await asyncio.to_thread(server.stop)
    assert code == 0, server.log()


async def test_anomaly_reaches_a_downstream_otlp_server(
    tmp_path: Path, grpc_server_factory: GrpcServerFactory
) -> None:
    await run(tmp_path, grpc_server_factory, downstream_first=True)


async def test_downstream_down_then_up_still_receives_the_anomaly(
    tmp_path: Path, grpc_server_factory: GrpcServerFactory
) -> None:
    await run(tmp_path, grpc_server_factory, downstream_first=False)
