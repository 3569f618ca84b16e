"""OTLP/HTTP intake (`POST /v1/logs`), NDJSON intake (`POST /v1/ingest`), `/healthz`, `/status`,
`/metrics`.

Answers follow OTLP/HTTP: the response body is in the request's encoding; a malformed body is
400 with a google.rpc.Status saying what was wrong; 415 for a content type or encoding we do not
speak; 413 over the size limit; 503 with Retry-After when the queue is full (the Collector and
the SDK exporters retry those).

Security is set up at the listener: `receive.http.tls` (an `ssl.SSLContext` that serves rotated
certificate files without a restart; mutual TLS with `client_ca_file`) and `receive.auth` (one
middleware: 401 without a good bearer token, counted, before any body is read; `/healthz`
stays open).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from google.rpc import code_pb2

from via_otlp.config import HttpConfig, ReceiveConfig
from via_otlp.endpoints import is_loopback, split_endpoint
from via_otlp.errors import InputError, StartupError
from via_otlp.receive.intake import IntakeFront, Outcome, QueueFullError, Transport
from via_otlp.receive.ndjson import TextRecord, parse_ndjson_line, records_to_request
from via_otlp.receive.otlp_codec import (
    Encoding,
    encode_message,
    export_response,
    status_message,
)
from via_otlp.security.auth import DENIED_MESSAGE, BearerTokens, http_bearer_auth
from via_otlp.security.config import BearerAuthConfig
from via_otlp.security.tls import CertificateFiles, ssl_server_context

log = logging.getLogger(__name__)

MAX_NDJSON_LINE = 1024 * 1024
SHUTDOWN_TIMEOUT = 5.0  # requests still running when the server stops get this long
NDJSON_MAX_ERRORS_SHOWN = 10
NDJSON_ROOM_TIMEOUT = 30.0
_ENCODINGS = {e.value: e for e in Encoding}
OPEN_PATHS = frozenset({"/healthz"})  # reachable without a token (load balancers, HEALTHCHECK)


def _status_response(
    code: int, rpc_code: int, message: str, encoding: Encoding, **headers: str
) -> web.Response:
    body = encode_message(status_message(rpc_code, message), encoding)
    return web.Response(status=code, body=body, content_type=encoding.value, headers=headers)


def _unauthenticated(request: web.Request) -> web.Response:
    """401 in the form the endpoint answers errors: a google.rpc.Status for OTLP, JSON else."""
    if request.path == "/v1/logs":
        encoding = _ENCODINGS.get(request.content_type.lower(), Encoding.JSON)
        return _status_response(401, code_pb2.UNAUTHENTICATED, DENIED_MESSAGE, encoding)
    return web.json_response({"error": DENIED_MESSAGE}, status=401)


_PIECE = 64 * 1024
_YIELD_EVERY_LINES = 1000  # a stream of tiny lines must not hold the event loop
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class BodyTooLarge(Exception):
    """The inflated body passed the configured limit."""


def inflate(body: bytes, content_encoding: str, limit: int) -> bytes:
    """Decompress a whole body, refusing to inflate past `limit` bytes (gzip bombs)."""
    if content_encoding in ("", "identity"):
        return body
    d = zlib.decompressobj(_WBITS[content_encoding])
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InputError(f"body is not valid {content_encoding}: {exc}") from None
    if len(out) > limit:
        raise BodyTooLarge
    if not d.eof:
        raise InputError(f"body is not valid {content_encoding}: stream is truncated")
    return out


async def _inflated_chunks(stream: Any, content_encoding: str) -> AsyncIterator[bytes]:
    """The body inflated piece by piece: never more than 64 KiB at once, whatever the ratio."""
    d = (
        zlib.decompressobj(_WBITS[content_encoding])
        if content_encoding not in ("", "identity")
        else None
    )
    async for chunk in stream.iter_chunked(_PIECE):
        if d is None:
            yield chunk
            continue
        data = chunk
        while data:
            try:
                out = d.decompress(data, _PIECE)
            except zlib.error as exc:
                raise InputError(f"body is not valid {content_encoding}: {exc}") from None
            if out:
                yield out
            data = d.unconsumed_tail
    if d is not None and not d.eof:
        raise InputError(f"body is not valid {content_encoding}: stream is truncated")


def _content_encoding(request: web.Request) -> str | None:
    """The request's Content-Encoding if we can decode it, else None."""
    value = request.headers.get("Content-Encoding", "identity").strip().lower()
    return value if value in ("", "identity", *_WBITS) else None


async def _lines(
    chunks: AsyncIterator[bytes], max_line: int
) -> AsyncIterator[tuple[bytes | None, str]]:
    """Split a body stream into lines without reading it whole; an over-long line yields (None, error)."""
    buffer = bytearray()
    skipping = False
    async for chunk in chunks:
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                if not skipping:
                    buffer += chunk[start:]
                    if len(buffer) > max_line:
                        buffer.clear()
                        skipping = True
                        yield None, f"line longer than {max_line} bytes"
                break
            if skipping:
                skipping = False
            else:
                buffer += chunk[start:nl]
                yield bytes(buffer), ""
            buffer.clear()
            start = nl + 1
    if buffer and not skipping:
        yield bytes(buffer), ""


class HttpServer:
    """The aiohttp application and its site; `status` provides the JSON of `/status`."""

    def __init__(
        self,
        config: ReceiveConfig,
        intake: IntakeFront,
        status: Callable[[frozenset[str]], Awaitable[dict[str, Any]]],
        metrics: Callable[[], tuple[bytes, str]] | None = None,
    ) -> None:
        self.config: HttpConfig = config.http
        self.auth: BearerAuthConfig = config.auth
        self.batch_records = config.ndjson_batch_records
        self.intake = intake
        self.status = status
        self.metrics = metrics  # Prometheus text and its content type; None: no /metrics
        self.serving = False
        self.port = 0
        self._runner: web.AppRunner | None = None

    def _middlewares(self) -> list[Any]:
        if not self.auth.enabled:
            return []
        return [
            http_bearer_auth(
                BearerTokens(self.auth.tokens),
                open_paths=OPEN_PATHS,
                deny=_unauthenticated,
                on_denied=self._count_denied,
            )
        ]

    def _count_denied(self, request: web.Request) -> None:
        transport = Transport.NDJSON if request.path == "/v1/ingest" else Transport.HTTP
        self.intake.stats.count(transport, Outcome.UNAUTHENTICATED)

    def make_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.config.max_request_body_size, middlewares=self._middlewares()
        )
        app.router.add_post("/v1/logs", self.post_logs)
        app.router.add_post("/v1/ingest", self.post_ingest)
        app.router.add_get("/healthz", self.get_healthz)
        app.router.add_get("/status", self.get_status)
        if self.metrics is not None:
            app.router.add_get("/metrics", self.get_metrics)
        return app

    async def start(self) -> None:
        host, port = split_endpoint(self.config.endpoint) or ("", 0)  # validated by the config
        # We inflate bodies ourselves: to answer 415 for encodings we do not speak and to stop gzip bombs.
        runner = web.AppRunner(
            self.make_app(),
            access_log=None,
            handle_signals=False,
            auto_decompress=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
        )
        tls = self.config.tls
        ssl_context = (
            ssl_server_context(CertificateFiles(tls, "receive.http.tls")) if tls.enabled else None
        )
        if ssl_context is None and self.auth.enabled and not is_loopback(host):
            log.warning(
                "OTLP/HTTP on %s takes bearer tokens over plaintext: anyone on the path can "
                "read them (set receive.http.tls)", self.config.endpoint,
            )  # fmt: skip
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise StartupError(
                f"cannot listen for OTLP/HTTP on {self.config.endpoint}: {exc.strerror or exc}",
                hint="set receive.http.endpoint to a free HOST:PORT",
            ) from None
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        await runner.cleanup()

    # --- handlers -------------------------------------------------------------------------

    async def get_healthz(self, request: web.Request) -> web.Response:
        if self.serving:
            return web.json_response({"status": "SERVING"})
        return web.json_response({"status": "NOT_SERVING"}, status=503)

    async def get_status(self, request: web.Request) -> web.Response:
        """Counters as JSON; `?detail=rhythms` adds the record count of every rhythm hash."""
        detail = frozenset(request.query.getall("detail", []))
        return web.json_response(
            await self.status(detail), dumps=lambda d: json.dumps(d, indent=2, sort_keys=True)
        )

    async def get_metrics(self, request: web.Request) -> web.Response:
        """via-otlp's own metrics as Prometheus text (see via_otlp/telemetry)."""
        assert self.metrics is not None
        body, content_type = self.metrics()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def post_logs(self, request: web.Request) -> web.Response:
        """OTLP/HTTP export: protobuf or JSON, answered in the same encoding."""
        stats = self.intake.stats
        if not self.serving:
            stats.count(Transport.HTTP, Outcome.UNAVAILABLE)
            return _status_response(
                503,
                code_pb2.UNAVAILABLE,
                "via-otlp is shutting down",
                Encoding.JSON,
                **{"Retry-After": "1"},
            )
        content_type = request.content_type.lower()
        encoding = _ENCODINGS.get(content_type)
        if encoding is None:
            stats.count(Transport.HTTP, Outcome.UNSUPPORTED_MEDIA_TYPE)
            return _status_response(
                415, code_pb2.INVALID_ARGUMENT,
                f"unsupported content type {content_type!r}: use application/x-protobuf or application/json",
                Encoding.JSON,
            )  # fmt: skip
        content_encoding = _content_encoding(request)
        if content_encoding is None:
            stats.count(Transport.HTTP, Outcome.UNSUPPORTED_MEDIA_TYPE)
            return _status_response(
                415, code_pb2.INVALID_ARGUMENT,
                f"unsupported Content-Encoding {request.headers['Content-Encoding']!r}: use gzip, deflate or none",
                encoding,
            )  # fmt: skip
        limit = self.config.max_request_body_size
        try:
            body = inflate(await request.read(), content_encoding, limit)
        except (web.HTTPRequestEntityTooLarge, BodyTooLarge):
            stats.count(Transport.HTTP, Outcome.TOO_LARGE)
            return _status_response(
                413,
                code_pb2.RESOURCE_EXHAUSTED,
                f"request body exceeds max_request_body_size {limit}",
                encoding,
            )
        except InputError as exc:
            stats.count(Transport.HTTP, Outcome.INVALID)
            return _status_response(400, code_pb2.INVALID_ARGUMENT, str(exc), encoding)
        try:
            accepted = await self.intake.submit_payload(body, encoding)
        except InputError as exc:
            stats.count(Transport.HTTP, Outcome.INVALID)
            return _status_response(400, code_pb2.INVALID_ARGUMENT, str(exc), encoding)
        except QueueFullError as exc:
            stats.count(Transport.HTTP, Outcome.QUEUE_FULL, exc.records)
            return _status_response(
                503,
                code_pb2.UNAVAILABLE,
                str(exc),
                encoding,
                **{"Retry-After": str(math.ceil(exc.retry_after))},
            )
        stats.count(Transport.HTTP, Outcome.ACCEPTED, accepted)
        return web.Response(
            body=encode_message(export_response(), encoding), content_type=encoding.value
        )

    async def post_ingest(self, request: web.Request) -> web.Response:
        """NDJSON, streamed: bad lines are reported and skipped, good ones accepted."""
        stats = self.intake.stats
        default_service = request.query.get("service", "")
        accepted = rejected = 0
        errors: list[dict[str, Any]] = []
        pending: list[TextRecord] = []
        content_encoding = _content_encoding(request)
        if content_encoding is None:
            stats.count(Transport.NDJSON, Outcome.UNSUPPORTED_MEDIA_TYPE)
            return web.json_response(
                {"error": "unsupported Content-Encoding: use gzip, deflate or none"}, status=415
            )

        async def flush() -> None:
            nonlocal accepted
            if pending:
                payload = records_to_request(pending).SerializeToString()
                await asyncio.wait_for(
                    self.intake.submit_payload(payload, Encoding.PROTOBUF, wait=True),
                    NDJSON_ROOM_TIMEOUT,
                )
                accepted += len(pending)
                pending.clear()

        line_no = 0
        try:
            async for line, problem in _lines(
                _inflated_chunks(request.content, content_encoding), MAX_NDJSON_LINE
            ):
                line_no += 1
                if line_no % _YIELD_EVERY_LINES == 0:
                    await asyncio.sleep(0)  # let the loop serve others between lines
                    if not self.serving:
                        raise QueueFullError(1.0)  # shutting down: the sender retries later
                if line is not None and not line.strip():
                    continue
                try:
                    if line is None:
                        raise InputError(problem)
                    pending.append(parse_ndjson_line(line, default_service or "unknown_service"))
                except InputError as exc:
                    rejected += 1
                    if len(errors) < NDJSON_MAX_ERRORS_SHOWN:
                        errors.append({"line": line_no, "error": str(exc)})
                if len(pending) >= self.batch_records:
                    await flush()
            await flush()
        except InputError as exc:
            stats.count(Transport.NDJSON, Outcome.INVALID)
            stats.records[(Transport.NDJSON, Outcome.ACCEPTED)] += accepted
            return web.json_response(
                {"accepted": accepted, "rejected": rejected, "errors": errors, "error": str(exc)},
                status=400,
            )
        except (TimeoutError, QueueFullError):
            stats.count(Transport.NDJSON, Outcome.QUEUE_FULL)
            stats.records[(Transport.NDJSON, Outcome.ACCEPTED)] += accepted
            return web.json_response(
                {"accepted": accepted, "rejected": rejected, "errors": errors,
                 "error": f"intake queue stayed full; lines after {accepted + rejected} were not read"},
                status=503, headers={"Retry-After": "1"},
            )  # fmt: skip
        outcome = Outcome.ACCEPTED if accepted or not rejected else Outcome.INVALID
        stats.count(Transport.NDJSON, outcome, accepted)
        if rejected:
            stats.records[(Transport.NDJSON, Outcome.INVALID)] += rejected
        status = 200 if outcome is Outcome.ACCEPTED else 400
        return web.json_response(
            {"accepted": accepted, "rejected": rejected, "errors": errors}, status=status
        )
