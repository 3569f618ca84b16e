"""End to end: the Emitter against a real OTLP/gRPC server on loopback."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import grpc
import pytest

from via_otlp import __version__
from via_otlp.emit import VIA_EVENT_NAME, VIA_SCOPE_NAME, Emitter, EmitterState
from via_otlp.emit.config import BatchConfig, RetryConfig
from via_otlp.emit.encode import episode_span_id, episode_trace_id
from via_otlp.errors import StartupError
from via_otlp.model import EpisodeState

from .conftest import (
    SAMPLE_TRACE,
    GrpcServer,
    GrpcServerFactory,
    fast_config,
    free_port,
    make_event,
    wait_until,
)


def _attrs(kvs) -> dict:
    out = {}
    for kv in kvs:
        v = kv.value
        out[kv.key] = getattr(v, v.WhichOneof("value"))
    return out


async def test_logs_and_spans_carry_the_anomaly_fields(grpc_server: GrpcServer) -> None:
    config = fast_config(
        grpc_server.endpoint, signals="both", headers={"X-Tenant": "acme"}, compression="gzip"
    )
    emitter = Emitter(config)
    await emitter.start()
    opened = make_event("ep-7", score=91.0)
    resolved = make_event("ep-7", state=EpisodeState.RESOLVED, score=91.0)
    other = make_event("ep-8", service="cart", score=40.0)
    emitter.submit([opened, other])
    emitter.submit([resolved])
    await emitter.shutdown()

    rec = grpc_server.rec
    assert len(rec.log_records) == 3
    assert len(rec.spans) == 1
    assert rec.headers[0]["x-tenant"] == "acme"

    resource_logs = [rl for req in rec.logs for rl in req.resource_logs]
    by_service = {_attrs(rl.resource.attributes)["service.name"]: rl for rl in resource_logs}
    assert set(by_service) == {"checkout", "cart"}
    checkout = by_service["checkout"]
    assert _attrs(checkout.resource.attributes) == {
        "service.namespace": "shop",
        "service.name": "checkout",
    }
    scope = checkout.scope_logs[0].scope
    assert (scope.name, scope.version) == (VIA_SCOPE_NAME, __version__)

    record = checkout.scope_logs[0].log_records[0]
    assert record.event_name == VIA_EVENT_NAME
    assert record.severity_text == "ERROR"
    assert record.body.string_value == opened.explanation
    assert record.time_unix_nano == opened.time_ns
    assert record.trace_id == episode_trace_id("ep-7")
    attrs = _attrs(record.attributes)
    assert attrs["via.anomaly.kind"] == "spike"
    assert attrs["via.anomaly.score"] == 91.0
    assert attrs["via.anomaly.state"] == "open"
    assert attrs["via.episode.id"] == "ep-7"
    assert attrs["via.rhythm_hash"] == opened.rhythm_hash
    assert attrs["log.record.template"] == opened.template
    assert attrs["via.expected"] == 2.0
    assert attrs["via.observed"] == 40.0

    cart_record = by_service["cart"].scope_logs[0].log_records[0]
    assert cart_record.severity_text == "WARN"

    span = rec.spans[0]
    assert span.trace_id == episode_trace_id("ep-7")
    assert span.span_id == episode_span_id("ep-7")
    assert (span.start_time_unix_nano, span.end_time_unix_nano) == (
        resolved.started_ns,
        resolved.ended_ns,
    )
    assert _attrs(span.attributes)["via.anomaly.state"] == "resolved"
    assert [link.trace_id.hex() for link in span.links] == [SAMPLE_TRACE]
    span_scope = rec.traces[0].resource_spans[0].scope_spans[0].scope
    assert span_scope.name == VIA_SCOPE_NAME

    stats = emitter.stats()
    assert stats.sent == 4
    assert stats.state is EmitterState.CLOSED
    assert (stats.retries, stats.failed_permanent, stats.dropped_queue_full) == (0, 0, 0)


async def test_downstream_down_then_up_receives_every_event(
    grpc_server_factory: GrpcServerFactory,
) -> None:
    port = free_port()
    emitter = Emitter(
        fast_config(f"http://127.0.0.1:{port}", batch=BatchConfig(max_size=5, interval=0.01))
    )
    await emitter.start()
    events = [make_event(f"ep-{i}") for i in range(20)]
    emitter.submit(events[:10])
    await wait_until(lambda: emitter.stats().retries >= 2)
    assert emitter.stats().state is EmitterState.RETRYING

    server = await grpc_server_factory(port=port)
    emitter.submit(events[10:])
    await wait_until(lambda: len(server.rec.log_records) == 20)
    await emitter.shutdown()

    ids = sorted(_attrs(r.attributes)["via.episode.id"] for r in server.rec.log_records)
    assert ids == sorted(e.episode_id for e in events)
    stats = emitter.stats()
    assert stats.sent == 20
    assert stats.failed_retries_exhausted == 0
    assert stats.dropped_queue_full == 0


async def test_unavailable_with_retry_info_waits_the_given_delay(grpc_server: GrpcServer) -> None:
    grpc_server.rec.fail_next(grpc_code=grpc.StatusCode.UNAVAILABLE, retry_delay=0.4)
    emitter = Emitter(fast_config(grpc_server.endpoint))
    await emitter.start()
    emitter.submit([make_event()])
    await wait_until(lambda: len(grpc_server.rec.log_records) == 1)
    await emitter.shutdown()

    first, second = grpc_server.rec.attempts
    assert second - first >= 0.38  # the backoff alone would be ~0.02 s
    assert emitter.stats().retries == 1
    assert emitter.stats().sent == 1


async def test_resource_exhausted_is_retried_only_with_retry_info(grpc_server: GrpcServer) -> None:
    rec = grpc_server.rec
    rec.fail_next(grpc_code=grpc.StatusCode.RESOURCE_EXHAUSTED, retry_delay=0.05)
    rec.fail_next(grpc_code=grpc.StatusCode.RESOURCE_EXHAUSTED)
    emitter = Emitter(fast_config(grpc_server.endpoint))
    await emitter.start()
    emitter.submit([make_event()])
    await emitter.shutdown()

    assert len(rec.attempts) == 2  # retried once (RetryInfo), then given up (none)
    stats = emitter.stats()
    assert (stats.retries, stats.failed_permanent, stats.sent) == (1, 1, 0)


async def test_invalid_argument_is_permanent_and_counted(grpc_server: GrpcServer) -> None:
    grpc_server.rec.fail_next(grpc_code=grpc.StatusCode.INVALID_ARGUMENT)
    emitter = Emitter(fast_config(grpc_server.endpoint))
    await emitter.start()
    emitter.submit([make_event("ep-1"), make_event("ep-2")])
    await wait_until(lambda: emitter.stats().failed_permanent == 2)
    assert emitter.stats().state is EmitterState.FAILING
    assert "INVALID_ARGUMENT" in emitter.stats().last_error

    emitter.submit([make_event("ep-3")])  # the next batch goes through again
    await emitter.shutdown()
    assert len(grpc_server.rec.attempts) == 2
    stats = emitter.stats()
    assert (stats.retries, stats.sent, stats.failed_permanent) == (0, 1, 2)


async def test_partial_success_is_counted_as_rejected(grpc_server: GrpcServer) -> None:
    grpc_server.rec.rejected = 1
    emitter = Emitter(fast_config(grpc_server.endpoint))
    await emitter.start()
    emitter.submit([make_event("ep-1"), make_event("ep-2"), make_event("ep-3")])
    await emitter.shutdown()
    stats = emitter.stats()
    assert (stats.sent, stats.rejected, stats.retries) == (2, 1, 0)
    assert "scripted rejection" in stats.last_error


async def test_retries_exhausted_at_the_batch_deadline(grpc_server: GrpcServer) -> None:
    grpc_server.rec.fail_next(100, grpc_code=grpc.StatusCode.UNAVAILABLE)
    retry = RetryConfig(initial_interval=0.02, max_interval=0.05, max_elapsed_time=0.3)
    emitter = Emitter(fast_config(grpc_server.endpoint, retry=retry))
    await emitter.start()
    emitter.submit([make_event()])
    await wait_until(lambda: emitter.stats().failed_retries_exhausted == 1)
    await emitter.shutdown()
    assert emitter.stats().retries >= 2
    assert emitter.stats().sent == 0


async def test_shutdown_flushes_the_queue(grpc_server: GrpcServer) -> None:
    config = fast_config(grpc_server.endpoint, batch=BatchConfig(max_size=1000, interval=60.0))
    emitter = Emitter(config)
    await emitter.start()
    emitter.submit([make_event(f"ep-{i}") for i in range(50)])
    await asyncio.sleep(0.05)
    assert grpc_server.rec.log_records == []  # waiting for the batch interval (60 s)
    await emitter.shutdown(timeout=5.0)
    # all 50 went out during a shutdown bounded at 5 s: it did not wait for the interval
    assert len(grpc_server.rec.log_records) == 50
    assert emitter.stats().sent == 50


async def test_shutdown_cuts_a_long_retry_short(grpc_server: GrpcServer) -> None:
    grpc_server.rec.fail_next(100, grpc_code=grpc.StatusCode.UNAVAILABLE, retry_delay=30.0)
    emitter = Emitter(fast_config(grpc_server.endpoint))
    await emitter.start()
    emitter.submit([make_event()])
    await wait_until(lambda: len(grpc_server.rec.attempts) == 1)
    await emitter.shutdown(timeout=0.5)
    # the 30 s retry delay was cut short: no second attempt was made
    assert len(grpc_server.rec.attempts) == 1
    stats = emitter.stats()
    assert stats.sent == 0
    assert stats.failed_retries_exhausted + stats.dropped_shutdown >= 1
    assert stats.state is EmitterState.CLOSED


async def test_queue_overflow_is_counted_not_raised(grpc_server: GrpcServer) -> None:
    grpc_server.rec.fail_next(1, grpc_code=grpc.StatusCode.UNAVAILABLE, retry_delay=0.3)
    config = fast_config(
        grpc_server.endpoint, queue_size=10, batch=BatchConfig(max_size=5, interval=0.01)
    )
    emitter = Emitter(config)
    await emitter.start()
    emitter.submit([make_event(f"first-{i}") for i in range(5)])
    await wait_until(lambda: len(grpc_server.rec.attempts) == 1)  # that batch is in flight
    emitter.submit([make_event(f"ep-{i}") for i in range(25)])  # 10 fit, 15 overflow
    assert emitter.stats().dropped_queue_full == 15
    assert emitter.stats().queued == 10
    await emitter.shutdown()
    assert len(grpc_server.rec.log_records) == 15
    assert emitter.stats().sent == 15


async def test_shutdown_without_start_is_safe_and_idempotent() -> None:
    emitter = Emitter(fast_config("http://127.0.0.1:1"))
    emitter.submit([make_event()])
    await emitter.shutdown()
    await emitter.shutdown()
    stats = emitter.stats()
    assert stats.state is EmitterState.CLOSED
    assert stats.dropped_shutdown == 1
    with pytest.raises(StartupError):
        await emitter.start()


async def test_shutdown_twice_concurrently_and_submit_after(grpc_server: GrpcServer) -> None:
    emitter = Emitter(fast_config(grpc_server.endpoint))
    await emitter.start()
    await emitter.start()  # no-op
    emitter.submit([make_event()])
    await asyncio.gather(emitter.shutdown(), emitter.shutdown())
    emitter.submit([make_event("late")])
    stats = emitter.stats()
    assert (stats.sent, stats.dropped_shutdown) == (1, 1)


async def test_spans_only_sends_resolved_episodes(grpc_server: GrpcServer) -> None:
    emitter = Emitter(fast_config(grpc_server.endpoint, signals="spans"))
    await emitter.start()
    emitter.submit([make_event("ep-1"), make_event("ep-1", state=EpisodeState.RESOLVED)])
    emitter.submit([make_event("ep-1", state=EpisodeState.RESOLVED)])  # a re-send: same ids
    await emitter.shutdown()
    assert grpc_server.rec.logs == []
    assert [s.span_id for s in grpc_server.rec.spans] == [episode_span_id("ep-1")] * 2
    assert emitter.stats().sent == 2


async def test_missing_ca_file_fails_start() -> None:
    config = fast_config("otlp.example.com:4317")
    config = replace(config, tls=replace(config.tls, ca_file="/nonexistent/ca.pem"))
    emitter = Emitter(config)
    with pytest.raises(StartupError, match="ca_file"):
        await emitter.start()
    await emitter.shutdown()
