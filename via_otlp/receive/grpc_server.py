"""OTLP/gRPC intake: `LogsService/Export`, the standard health service and server reflection.

The Export handler takes the raw request bytes (no generated deserializer): the event loop
only passes them on, and a shard process decodes them. Decoding tells a malformed message
(INVALID_ARGUMENT, not retryable) from invalid UTF-8 inside a valid one (repaired and
accepted); a full service is answered UNAVAILABLE plus RetryInfo, which the Collector and the
SDK exporters honour.

Security is set up here, at the listener, and stays out of the handler: `receive.grpc.tls`
(server credentials that reload rotated certificate files, mutual TLS with `client_ca_file`) and
`receive.auth` (one interceptor: UNAUTHENTICATED without a good bearer token, counted; health and
reflection stay open).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

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
# grpc-core rejects messages above its own limit before our handler sees them, uncounted; we set
# it above ours so that most oversize requests are counted and answered by the handler.
_CORE_LIMIT_FACTOR = 2


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
            stats.count(Transport.GRPC, Outcome.TOO_LARGE)
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"request of {len(request)} bytes exceeds max_recv_msg_size {self.max_message_size}",
            )
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
        return export_response().SerializeToString()

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
        if not self.auth.enabled:
            return []
        stats = self.intake.stats
        return [
            GrpcBearerAuth(
                BearerTokens(self.auth.tokens),
                open_prefixes=OPEN_METHOD_PREFIXES,
                on_denied=lambda _method: stats.count(Transport.GRPC, Outcome.UNAUTHENTICATED),
            )
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
