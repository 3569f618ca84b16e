"""OTLP/gRPC and OTLP/HTTP clients that send one export request and classify the answer.

A transport makes one attempt: it returns the partial-success figures or raises `ExportError`
(retryable or permanent, with the server's requested delay). Retrying, batching and counting
live in `Emitter`, not here, so both transports behave the same under failure.
"""

from __future__ import annotations

import gzip
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp
import grpc
import grpc.aio
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from via_otlp import __version__
from via_otlp.emit.config import EmitConfig, Target, TlsConfig
from via_otlp.emit.retry import ExportError, classify_grpc, classify_http
from via_otlp.errors import StartupError

ExportRequest = ExportLogsServiceRequest | ExportTraceServiceRequest | ExportMetricsServiceRequest
# OTLP/HTTP path and response type of each request type (metrics: via-otlp's own telemetry).
_HTTP_PATHS: dict[type, tuple[str, type[Message]]] = {
    ExportLogsServiceRequest: ("/v1/logs", ExportLogsServiceResponse),
    ExportTraceServiceRequest: ("/v1/traces", ExportTraceServiceResponse),
    ExportMetricsServiceRequest: ("/v1/metrics", ExportMetricsServiceResponse),
}

USER_AGENT = f"via-otlp/{__version__}"
_MAX_RESPONSE_BYTES = 1 << 20  # a partial-success answer is tiny; do not buffer a huge body
_PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True, slots=True)
class PartialSuccess:
    """What the server said it rejected of an accepted request (0 when all was accepted)."""

    rejected: int = 0
    message: str = ""


class Transport(Protocol):
    """One OTLP client: `start`, then `send` any number of times, then `close`."""

    async def start(self) -> None: ...

    async def send(self, request: ExportRequest, timeout: float) -> PartialSuccess: ...

    async def close(self) -> None: ...


def make_transport(target: Target, config: EmitConfig) -> Transport:
    """The transport for `config.protocol`."""
    if config.protocol == "grpc":
        return GrpcTransport(target, config)
    return HttpTransport(target, config)


class GrpcTransport:
    """OTLP/gRPC over one `grpc.aio` channel, with gzip and optional TLS.

    The channel's reconnect backoff follows the retry settings, so a downstream that comes back
    is reconnected to about as fast as the emitter retries.
    """

    def __init__(self, target: Target, config: EmitConfig) -> None:
        self._target = target
        self._config = config
        self._channel: grpc.aio.Channel | None = None
        self._logs: logs_service_pb2_grpc.LogsServiceStub | None = None
        self._traces: trace_service_pb2_grpc.TraceServiceStub | None = None
        self._metrics: metrics_service_pb2_grpc.MetricsServiceStub | None = None
        self._metadata = tuple((k.lower(), v) for k, v in config.headers.items())

    async def start(self) -> None:
        """Open the channel (lazily connected: a downstream that is down does not fail start)."""
        if self._channel is not None:
            return
        retry = self._config.retry
        options = [
            ("grpc.primary_user_agent", USER_AGENT),
            ("grpc.initial_reconnect_backoff_ms", max(1, int(retry.initial_interval * 1000))),
            ("grpc.min_reconnect_backoff_ms", max(1, int(retry.initial_interval * 1000))),
            ("grpc.max_reconnect_backoff_ms", max(1, int(retry.max_interval * 1000))),
        ]
        compression = grpc.Compression.Gzip if self._config.compression == "gzip" else None
        authority = self._target.authority
        if self._target.secure:
            creds = _grpc_credentials(self._config.tls)
            channel = grpc.aio.secure_channel(authority, creds, options, compression)
        else:
            channel = grpc.aio.insecure_channel(authority, options, compression)
        self._channel = channel
        self._logs = logs_service_pb2_grpc.LogsServiceStub(channel)
        self._traces = trace_service_pb2_grpc.TraceServiceStub(channel)
        self._metrics = metrics_service_pb2_grpc.MetricsServiceStub(channel)

    async def send(self, request: ExportRequest, timeout: float) -> PartialSuccess:
        """One Export call; raises `ExportError` classified by the OTLP/gRPC rules."""
        if self._logs is None or self._traces is None:
            raise ExportError("gRPC transport is not started", retryable=False)
        try:
            if isinstance(request, ExportLogsServiceRequest):
                logs_response = await self._logs.Export(
                    request, timeout=timeout, metadata=self._metadata
                )
                return _logs_partial(logs_response)
            if isinstance(request, ExportMetricsServiceRequest):
                assert self._metrics is not None
                metrics_response = await self._metrics.Export(
                    request, timeout=timeout, metadata=self._metadata
                )
                ps = metrics_response.partial_success
                return PartialSuccess(int(ps.rejected_data_points), ps.error_message)
            trace_response = await self._traces.Export(
                request, timeout=timeout, metadata=self._metadata
            )
            return _trace_partial(trace_response)
        except grpc.aio.AioRpcError as exc:
            metadata = exc.trailing_metadata() or ()
            details = _tls_hint(exc.details() or "", self._config.endpoint, self._target.secure)
            raise classify_grpc(exc.code(), details, metadata) from None

    async def close(self) -> None:
        """Close the channel; idempotent."""
        channel, self._channel = self._channel, None
        self._logs = self._traces = self._metrics = None
        if channel is not None:
            await channel.close(grace=None)


class HttpTransport:
    """OTLP/HTTP (binary protobuf, optional gzip) with one pooled `aiohttp` session."""

    def __init__(self, target: Target, config: EmitConfig) -> None:
        self._target = target
        self._config = config
        self._session: aiohttp.ClientSession | None = None
        headers = dict(config.headers)
        headers.update({"Content-Type": _PROTOBUF, "User-Agent": USER_AGENT})
        if config.compression == "gzip":
            headers["Content-Encoding"] = "gzip"
        self._headers = headers

    async def start(self) -> None:
        """Create the session (no connection is made until the first send)."""
        if self._session is not None:
            return
        ssl_arg: ssl.SSLContext | bool = (
            _ssl_context(self._config.tls) if self._target.secure else False
        )
        connector = aiohttp.TCPConnector(limit=4, ssl=ssl_arg)
        self._session = aiohttp.ClientSession(connector=connector)

    async def send(self, request: ExportRequest, timeout: float) -> PartialSuccess:
        """One POST to ``/v1/logs``, ``/v1/traces`` or ``/v1/metrics``; raises `ExportError` by the OTLP/HTTP rules."""
        if self._session is None:
            raise ExportError("HTTP transport is not started", retryable=False)
        path, response_type = _HTTP_PATHS[type(request)]
        url = f"{self._target.base_url}{path}"
        body = request.SerializeToString()
        if self._config.compression == "gzip":
            body = gzip.compress(body, compresslevel=6)
        try:
            async with self._session.post(
                url,
                data=body,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                payload = await _read_bounded(response)
                if 200 <= response.status < 300:
                    return _parse_success(payload, response_type)
                message = _error_message(payload, response)
                raise classify_http(response.status, response.headers.get("Retry-After"), message)
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = f"HTTP POST {url} failed: {type(exc).__name__}: {exc}"
            raise ExportError(
                _tls_hint(message, self._config.endpoint, self._target.secure), retryable=True
            ) from None

    async def close(self) -> None:
        """Close the session; idempotent."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


_TLS_FAILURE_WORDS = ("ssl", "handshake", "tls", "wrong_version_number", "certificate")


def _tls_hint(message: str, endpoint: str, secure: bool) -> str:
    """`message`, plus what to change when TLS failed against an endpoint given without a scheme
    (TLS by the Collector's rules, while the receiver may speak plaintext)."""
    if secure and "://" not in endpoint and any(w in message.lower() for w in _TLS_FAILURE_WORDS):
        return (
            f"{message} (emit.endpoint {endpoint!r} has no scheme, so TLS is used; for a "
            "plaintext receiver write http://HOST:PORT or set emit.tls.insecure: true)"
        )
    return message


def _logs_partial(response: ExportLogsServiceResponse) -> PartialSuccess:
    ps = response.partial_success
    return PartialSuccess(int(ps.rejected_log_records), ps.error_message)


def _trace_partial(response: ExportTraceServiceResponse) -> PartialSuccess:
    ps = response.partial_success
    return PartialSuccess(int(ps.rejected_spans), ps.error_message)


def _parse_success(payload: bytes, response_type: type[Message]) -> PartialSuccess:
    """Partial success from a 2xx body; an empty or non-protobuf body means all was accepted."""
    response = response_type()
    try:
        response.ParseFromString(payload)
    except DecodeError:
        return PartialSuccess()
    if isinstance(response, ExportLogsServiceResponse):
        return _logs_partial(response)
    if isinstance(response, ExportMetricsServiceResponse):
        ps = response.partial_success
        return PartialSuccess(int(ps.rejected_data_points), ps.error_message)
    assert isinstance(response, ExportTraceServiceResponse)
    return _trace_partial(response)


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    if response.content_length is not None and response.content_length > _MAX_RESPONSE_BYTES:
        return b""
    chunks: list[bytes] = []
    total = 0
    while total < _MAX_RESPONSE_BYTES:
        chunk = await response.content.read(_MAX_RESPONSE_BYTES - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _error_message(payload: bytes, response: aiohttp.ClientResponse) -> str:
    """The server's reason: `google.rpc.Status.message` when the body is protobuf, else text."""
    if response.content_type == _PROTOBUF:
        status = status_pb2.Status()
        try:
            status.ParseFromString(payload)
            if status.message:
                return status.message
        except DecodeError:
            pass
    text = payload[:300].decode("utf-8", "replace").strip()
    return text or (response.reason or "")


def _read_file(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise StartupError(
            f"cannot read emit.tls.{what} {path!r}: {exc.strerror}",
            hint="fix the path or set emit.tls.insecure",
        ) from exc


def _grpc_credentials(tls: TlsConfig) -> grpc.ChannelCredentials:
    root = _read_file(tls.ca_file, "ca_file") if tls.ca_file else None
    key = _read_file(tls.key_file, "key_file") if tls.key_file else None
    chain = _read_file(tls.cert_file, "cert_file") if tls.cert_file else None
    return grpc.ssl_channel_credentials(root, key, chain)


def _ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=tls.ca_file or None)
        if tls.cert_file:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(
            f"cannot load the TLS files of emit.tls: {exc}", hint="fix the paths or the files"
        ) from exc
    return context
