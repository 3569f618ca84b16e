"""OTLP/gRPC intake: `LogsService/Export`, the standard health service and server reflection.

The Export handler takes the raw request bytes (no generated deserializer): the event loop
only passes them on, and a shard process decodes them. Decoding tells a malformed message
(INVALID_ARGUMENT, not retryable) from invalid UTF-8 inside a valid one (repaired and
accepted); a full service is answered UNAVAILABLE plus RetryInfo, which the Collector and the
SDK exporters honour.

gRPC's own per-message decompression is off: grpc-core inflated each gzip request on the event
loop's thread into slices that were then copied into the bytes the handler gets. The handler
inflates the bytes itself (the first MiB on the loop, about a millisecond, the rest in a thread)
with the request size limit applied to what it inflates; the other services' messages are
inflated in their deserializer (`InflateRequests`).

Security is set up here, at the listener, and stays out of the handler: `receive.grpc.tls`
(server credentials that reload rotated certificate files, mutual TLS with `client_ca_file`) and
`receive.auth` (one interceptor: UNAUTHENTICATED without a good bearer token, counted; health and
reflection stay open).
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from via_otlp.endpoints import is_loopback, split_endpoint
from via_otlp.errors import InputError, StartupError
from via_otlp.receive.config import GrpcConfig
from via_otlp.receive.connlimit import effective_limit
from via_otlp.receive.intake import IntakeFront, Outcome, QueueFullError, Transport
from via_otlp.receive.otlp_codec import Encoding, export_response
from via_otlp.security.auth import BearerTokens, GrpcBearerAuth
from via_otlp.security.config import BearerAuthConfig
from via_otlp.security.tls import CertificateFiles, grpc_server_credentials

log = logging.getLogger(__name__)

LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"
# Methods a client may call without a token: health checks and server reflection.
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
# grpc-core rejects messages above its own limit (on their size as they arrive, compressed or
# not) before our handler sees them, uncounted; we set it above ours so that most oversize
# requests are counted and answered by the handler.
_CORE_LIMIT_FACTOR = 2
# Bytes of a request inflated on the event loop (about a millisecond); the rest in a thread.
_INLINE_INFLATE = 1 << 20
# The Export answer without partial success never changes.
_ACCEPTED = export_response().SerializeToString()


class MessageTooLarge(Exception):
    """A compressed message inflates past the limit."""


def _wbits(message: bytes) -> int:
    """zlib's `wbits` for a message that is gzip (31) or may be zlib/deflate (15); 0: neither.

    A protobuf message never starts with gzip's magic (wire type 7 does not exist), so gzip is
    certain; a zlib header is also a possible protobuf start, so an inflate that fails there
    means the message was not compressed."""
    if message[:2] == b"\x1f\x8b":
        return 31
    if len(message) >= 2 and message[0] & 0x8F == 0x08 and int.from_bytes(message[:2]) % 31 == 0:
        return 15
    return 0


def _finish(d: Any, out: bytes, limit: int) -> bytes:
    if len(out) > limit:
        raise MessageTooLarge(f"request exceeds max_recv_msg_size {limit} once inflated")
    if not d.eof:
        raise zlib.error("stream is truncated")
    return out


async def inflate_message(message: bytes, limit: int) -> bytes:
    """The message as sent before gRPC compression (the bytes themselves if not compressed).

    Raises `InputError` for broken gzip, `MessageTooLarge` past `limit` inflated bytes."""
    wbits = _wbits(message)
    if not wbits:
        return message
    d = zlib.decompressobj(wbits)
    try:
        budget = min(limit + 1, _INLINE_INFLATE)
        out = d.decompress(message, budget)
        if not d.eof and len(out) == budget <= limit:  # stopped by the budget: on in a thread
            out += await asyncio.to_thread(d.decompress, d.unconsumed_tail, limit + 1 - len(out))
        return _finish(d, out, limit)
    except zlib.error as exc:
        if wbits == 15:
            return message  # a protobuf that starts like a zlib header
        raise InputError(f"request is not valid gzip: {exc}") from None


def inflate_small(message: bytes, limit: int) -> bytes:
    """`inflate_message` for the small messages of the other services, on the loop."""
    wbits = _wbits(message)
    if not wbits:
        return message
    d = zlib.decompressobj(wbits)
    try:
        return _finish(d, d.decompress(message, limit + 1), limit)
    except zlib.error:
        if wbits == 15:
            return message
        raise


class InflateRequests(grpc.aio.ServerInterceptor):
    """Inflates the messages of every method that deserialises them (health, reflection...):
    gRPC's own decompression is off for the sake of `LogsService/Export`, which takes its bytes
    raw and inflates them itself."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        parse = getattr(handler, "request_deserializer", None)
        if parse is None:
            return handler
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            limit = self._limit

            def inflating(message: bytes) -> Any:
                return parse(inflate_small(message, limit))

            wrapped = handler._replace(request_deserializer=inflating)
            self._wrapped[method] = wrapped
        return wrapped


def _retry_metadata(code: int, message: str, retry_after: float) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata carrying a google.rpc.Status with RetryInfo, as OTLP clients expect."""
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(retry_after * 1e9))
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    status = status_pb2.Status(code=code, message=message, details=[detail])
    return (("grpc-status-details-bin", status.SerializeToString()),)


class LogsServiceHandler:
    """`LogsService/Export` over raw bytes."""

    def __init__(self, intake: IntakeFront, max_message_size: int) -> None:
        self.intake = intake
        self.max_message_size = max_message_size

    async def export(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        stats = self.intake.stats
        if len(request) > self.max_message_size:
            await self._too_large(
                context,
                f"request of {len(request)} bytes exceeds max_recv_msg_size {self.max_message_size}",
            )
        try:
            request = await inflate_message(request, self.max_message_size)
        except MessageTooLarge as exc:
            await self._too_large(context, str(exc))
        except InputError as exc:
            stats.count(Transport.GRPC, Outcome.INVALID)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            accepted = await self.intake.submit_payload(request, Encoding.PROTOBUF)
        except InputError as exc:
            stats.count(Transport.GRPC, Outcome.INVALID)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except QueueFullError as exc:
            stats.count(Transport.GRPC, Outcome.QUEUE_FULL, exc.records)
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                str(exc),
                trailing_metadata=_retry_metadata(code_pb2.UNAVAILABLE, str(exc), exc.retry_after),
            )
        stats.count(Transport.GRPC, Outcome.ACCEPTED, accepted)
        return _ACCEPTED

    async def _too_large(self, context: grpc.aio.ServicerContext, message: str) -> None:
        self.intake.stats.count(Transport.GRPC, Outcome.TOO_LARGE)
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message)

    def generic_handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            LOGS_SERVICE,
            {"Export": grpc.unary_unary_rpc_method_handler(self.export)},
        )


class GrpcServer:
    """The gRPC server of the intake: start, mark serving, drain, stop."""

    def __init__(
        self,
        config: GrpcConfig,
        intake: IntakeFront,
        extra_handlers: Sequence[grpc.GenericRpcHandler] = (),
        extra_service_names: Sequence[str] = (),
        auth: BearerAuthConfig | None = None,
    ) -> None:
        self.config = config
        self.auth = auth or BearerAuthConfig()
        self.intake = intake
        self.health = (
            health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        )
        self._handler = LogsServiceHandler(intake, config.max_recv_msg_size)
        self._extra_handlers = tuple(extra_handlers)
        self._extra_names = tuple(extra_service_names)
        self._server: grpc.aio.Server | None = None
        self.port = 0

    def _interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        inflate = InflateRequests(self.config.max_recv_msg_size)
        if not self.auth.enabled:
            return [inflate]
        stats = self.intake.stats
        return [  # a refused call goes no further than the first
            GrpcBearerAuth(
                BearerTokens(self.auth.tokens),
                open_prefixes=OPEN_METHOD_PREFIXES,
                on_denied=lambda _method: stats.count(Transport.GRPC, Outcome.UNAUTHENTICATED),
            ),
            inflate,
        ]

    def _bind(self, server: grpc.aio.Server) -> int:
        endpoint = self.config.endpoint
        if not self.config.tls.enabled:
            host = (split_endpoint(endpoint) or ("", 0))[0]
            if self.auth.enabled and not is_loopback(host):
                log.warning(
                    "OTLP/gRPC on %s takes bearer tokens over plaintext: anyone on the path can "
                    "read them (set receive.grpc.tls)", endpoint,
                )  # fmt: skip
            return server.add_insecure_port(endpoint)
        credentials = grpc_server_credentials(CertificateFiles(self.config.tls, "receive.grpc.tls"))
        return server.add_secure_port(endpoint, credentials)

    async def start(self) -> None:
        core_limit = self.config.max_recv_msg_size * _CORE_LIMIT_FACTOR
        server = grpc.aio.server(
            interceptors=self._interceptors(),
            options=[*self._options(), ("grpc.max_receive_message_length", core_limit)],
        )
        server.add_generic_rpc_handlers((self._handler.generic_handler(), *self._extra_handlers))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = (
            LOGS_SERVICE,
            *self._extra_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, server)
        try:
            self.port = self._bind(server)
        except RuntimeError as exc:
            raise StartupError(
                f"cannot listen for OTLP/gRPC on {self.config.endpoint}: {exc}"
            ) from None
        if self.port == 0:
            raise StartupError(
                f"cannot listen for OTLP/gRPC on {self.config.endpoint}: address in use or not available",
                hint="set receive.grpc.endpoint to a free HOST:PORT",
            )
        await server.start()
        self._server = server
        await self.set_serving(False)

    def _options(self) -> list[tuple[str, int]]:
        """Connection bounds (the HTTP side's are in `connlimit`): how many, how long a new one
        may take to say hello, how long one may stay idle."""
        c = self.config
        return [
            ("grpc.so_reuseport", 0),
            ("grpc.per_message_decompression", 0),  # see the module's docstring
            ("grpc.max_allowed_incoming_connections", effective_limit(c.max_connections)),
            ("grpc.server_handshake_timeout_ms", int(c.handshake_timeout * 1000)),
            ("grpc.max_connection_idle_ms", int(c.max_connection_idle * 1000)),
        ]

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", LOGS_SERVICE, *self._extra_names):
            result = self.health.set(name, status)
            if result is not None:
                await result

    async def stop(self, grace: float = 5.0) -> None:
        """Stop taking new calls and let calls in progress finish within `grace` seconds."""
        if self._server is None:
            return
        server, self._server = self._server, None
        await server.stop(grace)
