"""Fixtures of the emit tests: anomaly events, and real OTLP gRPC / HTTP servers on loopback.

The servers record every request they accept and can be scripted to fail the next calls
(`fail_next`), so the emitter is tested against real sockets, real gRPC status trailers and
real HTTP responses rather than mocks.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
import grpc.aio
import pytest
from aiohttp import web
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.conftest import free_port  # noqa: F401  (re-exported to the emit tests)
from via_otlp.emit.config import BatchConfig, EmitConfig, RetryConfig
from via_otlp.model import AnomalyEvent, AnomalyKind, EpisodeState, Source

T0 = 1_700_000_000_000_000_000
SAMPLE_TRACE = "0af7651916cd43dd8448eb211c80319c"


def make_event(
    episode_id: str = "ep-1",
    *,
    state: EpisodeState = EpisodeState.OPEN,
    score: float = 50.0,
    service: str = "checkout",
    kind: AnomalyKind = AnomalyKind.SPIKE,
    **changes: Any,
) -> AnomalyEvent:
    """An anomaly event of `service`; resolved events end 60 s after they start."""
    source = Source.from_attributes((("service.namespace", "shop"), ("service.name", service)))
    resolved = state is EpisodeState.RESOLVED
    event = AnomalyEvent(
        episode_id=episode_id,
        kind=kind,
        state=state,
        time_ns=T0 + (60_000_000_000 if resolved else 0),
        started_ns=T0,
        ended_ns=T0 + 60_000_000_000 if resolved else 0,
        score=score,
        source=source,
        rhythm_hash="9f86d081884c7d65",
        template_id="t-42",
        template="payment <*> failed after <*> ms",
        severity="ERROR",
        expected=2.0,
        observed=40.0,
        baseline_mean=2.1,
        baseline_std=0.9,
        bucket_seconds=10.0,
        explanation=f"'payment <*> failed' in {service}: 40 per 10s, expected about 2",
        sample_trace_ids=(SAMPLE_TRACE,),
    )
    return replace(event, **changes) if changes else event


def fast_config(endpoint: str, **changes: Any) -> EmitConfig:
    """An emitter config with short intervals, so retry tests take a fraction of a second."""
    config = EmitConfig(
        endpoint=endpoint,
        batch=BatchConfig(max_size=100, interval=0.02),
        retry=RetryConfig(
            initial_interval=0.02,
            max_interval=0.1,
            multiplier=2.0,
            randomization_factor=0.2,
            max_elapsed_time=10.0,
        ),
        timeout=2.0,
    )
    return replace(config, **changes) if changes else config


async def wait_until(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll `predicate` until true, failing the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@dataclass
class Failure:
    """A scripted failure: a gRPC code or an HTTP status, with an optional server delay."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    http_status: int = 503
    retry_delay: float | None = None


@dataclass
class Recorder:
    """What a test server received, and the failures it still has to answer with."""

    logs: list[logs_service_pb2.ExportLogsServiceRequest] = field(default_factory=list)
    traces: list[trace_service_pb2.ExportTraceServiceRequest] = field(default_factory=list)
    metrics: list[metrics_service_pb2.ExportMetricsServiceRequest] = field(default_factory=list)
    attempts: list[float] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    rejected: int = 0  # answer with a partial success rejecting this many items

    def fail_next(self, count: int = 1, **kw: Any) -> None:
        self.failures.extend(Failure(**kw) for _ in range(count))

    @property
    def log_records(self) -> list[Any]:
        return [
            r
            for req in self.logs
            for rl in req.resource_logs
            for sl in rl.scope_logs
            for r in sl.log_records
        ]

    @property
    def spans(self) -> list[Any]:
        return [
            s
            for req in self.traces
            for rs in req.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        ]


def _retry_status_details(code: grpc.StatusCode, delay: float) -> bytes:
    info = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=int(delay), nanos=int((delay % 1) * 1e9))
    )
    status = status_pb2.Status(code=code.value[0], message="scripted")
    status.details.add().Pack(info)
    return status.SerializeToString()


class _LogsServicer(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    async def Export(self, request: Any, context: Any) -> Any:
        await _maybe_fail(self.rec, context)
        self.rec.logs.append(request)
        response = logs_service_pb2.ExportLogsServiceResponse()
        if self.rec.rejected:
            response.partial_success.rejected_log_records = self.rec.rejected
            response.partial_success.error_message = "scripted rejection"
        return response


class _TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    async def Export(self, request: Any, context: Any) -> Any:
        await _maybe_fail(self.rec, context)
        self.rec.traces.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class _MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    async def Export(self, request: Any, context: Any) -> Any:
        await _maybe_fail(self.rec, context)
        self.rec.metrics.append(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


async def _maybe_fail(rec: Recorder, context: Any) -> None:
    rec.attempts.append(time.monotonic())
    rec.headers.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
    if not rec.failures:
        return
    failure = rec.failures.pop(0)
    trailers: tuple[tuple[str, bytes], ...] = ()
    if failure.retry_delay is not None:
        details = _retry_status_details(failure.grpc_code, failure.retry_delay)
        trailers = (("grpc-status-details-bin", details),)
    await context.abort(failure.grpc_code, "scripted failure", trailing_metadata=trailers)


@dataclass
class GrpcServer:
    """A running OTLP/gRPC test server."""

    server: grpc.aio.Server
    port: int
    rec: Recorder

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"  # plaintext: without a scheme it would be TLS

    async def stop(self) -> None:
        await self.server.stop(grace=None)


GrpcServerFactory = Callable[..., Awaitable[GrpcServer]]


@pytest.fixture
async def grpc_server_factory() -> AsyncIterator[GrpcServerFactory]:
    """Start OTLP/gRPC servers (port 0 = any free port); all are stopped after the test."""
    servers: list[GrpcServer] = []

    async def start(port: int = 0, rec: Recorder | None = None) -> GrpcServer:
        rec = rec or Recorder()
        server = grpc.aio.server()
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_LogsServicer(rec), server)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceServicer(rec), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsServicer(rec), server)
        bound = server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        running = GrpcServer(server, bound, rec)
        servers.append(running)
        return running

    yield start
    for s in servers:
        await s.stop()


@pytest.fixture
async def grpc_server(grpc_server_factory: GrpcServerFactory) -> GrpcServer:
    """One OTLP/gRPC server on a free loopback port."""
    return await grpc_server_factory()


@dataclass
class HttpServer:
    """A running OTLP/HTTP test server."""

    runner: web.AppRunner
    port: int
    rec: Recorder
    content_encodings: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def http_server() -> AsyncIterator[HttpServer]:
    """An OTLP/HTTP server (aiohttp) on a free loopback port: /v1/logs and /v1/traces."""
    rec = Recorder()
    encodings: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        rec.attempts.append(time.monotonic())
        rec.headers.append(dict(request.headers))
        encodings.append(request.headers.get("Content-Encoding", ""))
        if request.content_type != "application/x-protobuf":
            return web.Response(status=415, text="protobuf only")
        if rec.failures:
            failure = rec.failures.pop(0)
            headers = {}
            if failure.retry_delay is not None:
                headers["Retry-After"] = str(int(failure.retry_delay))
            return web.Response(status=failure.http_status, headers=headers, text="scripted")
        body = await request.read()
        if body[:2] == b"\x1f\x8b":  # aiohttp may or may not have inflated it already
            body = gzip.decompress(body)
        if request.path == "/v1/logs":
            rec.logs.append(logs_service_pb2.ExportLogsServiceRequest.FromString(body))
            response: Any = logs_service_pb2.ExportLogsServiceResponse()
        elif request.path == "/v1/metrics":
            rec.metrics.append(metrics_service_pb2.ExportMetricsServiceRequest.FromString(body))
            response = metrics_service_pb2.ExportMetricsServiceResponse()
        else:
            rec.traces.append(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
            response = trace_service_pb2.ExportTraceServiceResponse()
        return web.Response(
            body=response.SerializeToString(), content_type="application/x-protobuf"
        )

    app = web.Application()
    app.router.add_post("/v1/logs", handle)
    app.router.add_post("/v1/traces", handle)
    app.router.add_post("/v1/metrics", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield HttpServer(runner, port, rec, encodings)
    await runner.cleanup()
