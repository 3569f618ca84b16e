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

Every way a client can hold resources is bounded: the inflated body size and the NDJSON line
count (413), the time to send the headers (`connlimit`), a stalled body (408, and its
connection closed with it), the time aiohttp reads on after an early answer, the number of
open connections (503), and a handler's work once its client has gone (abandoned). Blank NDJSON
lines cost no Python step each (`LineSplitter`), so a gzip of millions of them costs no more
than inflating it.

What can be refused on the headers alone (401, 503 shutting down, 415, 413 by Content-Length)
is decided by one screen a route: its handler runs it first, and a request that says
`Expect: 100-continue` gets the refusal instead of `100 Continue`, so that no one uploads a body
we then refuse (`expect_handler`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import functools
import json
import logging
import math
import socket
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_urldispatcher import _default_expect_handler  # 100 Continue, or 417
from google.rpc import code_pb2

from via_otlp.endpoints import is_loopback, split_endpoint
from via_otlp.errors import InputError, StartupError
from via_otlp.ratelog import RateLimitedLog
from via_otlp.receive.config import HttpConfig, ReceiveConfig
from via_otlp.receive.connlimit import ConnectionGuard, GuardedSite, effective_limit
from via_otlp.receive.http_ndjson import MAX_NDJSON_LINE, NdjsonParser, ParserUnavailable
from via_otlp.receive.intake import IntakeFront, Outcome, QueueFullError, Transport
from via_otlp.receive.ndjson import LineSplitter
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

SHUTDOWN_TIMEOUT = 5.0  # requests still running when the server stops get this long
LINGERING_TIME = 10.0  # aiohttp's default; see `lingering_time`
NDJSON_MAX_ERRORS_SHOWN = 10
NDJSON_ROOM_TIMEOUT = 30.0
NDJSON_PARSE_BYTES = 256 * 1024  # body bytes sent to the parser process at once
_ENCODINGS = {e.value: e for e in Encoding}
_TCP_INFO = getattr(socket, "TCP_INFO", 11)
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
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
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class BodyTooLarge(Exception):
    """The body (inflated) passed a configured limit; the message says which."""


class BodyTimeout(Exception):
    """The body stopped arriving for longer than `body_read_timeout`."""


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
        raise BodyTooLarge(f"request body exceeds max_request_body_size {limit} once inflated")
    if not d.eof:
        raise InputError(f"body is not valid {content_encoding}: stream is truncated")
    return out


def _declared_too_large(request: web.Request, limit: int) -> str:
    """Why a body whose Content-Length already says it is too large is refused ("" if not)."""
    if request.content_length is not None and request.content_length > limit:
        return (
            f"request body of {request.content_length} bytes exceeds max_request_body_size {limit}"
        )
    return ""


async def _received(stream: Any, timeout: float) -> AsyncIterator[bytes]:
    """The body as it arrives; `BodyTimeout` when nothing comes for `timeout` seconds."""
    while True:
        try:
            chunk: bytes = await asyncio.wait_for(stream.readany(), timeout)
        except TimeoutError:
            raise BodyTimeout from None
        if not chunk:
            return
        yield chunk


async def read_body(request: web.Request, limit: int, timeout: float) -> bytes:
    """The whole (still encoded) body, at most `limit` bytes, without stalling longer than `timeout`."""
    parts: list[bytes] = []
    size = 0
    async for chunk in _received(request.content, timeout):
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body exceeds max_request_body_size {limit}")
        parts.append(chunk)
    return b"".join(parts)


async def _inflated_pieces(
    stream: Any, content_encoding: str, timeout: float
) -> AsyncIterator[bytes]:
    """The body inflated piece by piece: never more than 64 KiB at once, whatever the ratio.

    Each piece is a turn of the event loop: a small upload that inflates to a lot must not hold
    it (the data is all there already, so reading it would not yield by itself).
    """
    d = (
        zlib.decompressobj(_WBITS[content_encoding])
        if content_encoding not in ("", "identity")
        else None
    )
    async for chunk in _received(stream, timeout):
        if d is None:
            yield chunk
            await asyncio.sleep(0)
            continue
        data = chunk
        while data:
            try:
                out = d.decompress(data, _PIECE)
            except zlib.error as exc:
                raise InputError(f"body is not valid {content_encoding}: {exc}") from None
            if out:
                yield out
                await asyncio.sleep(0)
            data = d.unconsumed_tail
    if d is not None and not d.eof:
        raise InputError(f"body is not valid {content_encoding}: stream is truncated")


def lingering_time(config: HttpConfig) -> float:
    """How long aiohttp reads on after answering a request whose body it has not read (413 by
    Content-Length, 401, 415): long enough that a client still sending reads the answer rather
    than a reset, never longer than a stalled body is allowed (`body_read_timeout`); the same for a
    request that expected 100-continue, refused on its headers (`expect_handler`)."""
    return min(LINGERING_TIME, config.body_read_timeout)


_Answer = TypeVar("_Answer", bound=web.StreamResponse)


async def answer_and_close(request: web.Request, response: _Answer) -> _Answer:
    """Send `response` now and close the connection once it is written.

    Otherwise aiohttp lingers: it reads the rest of an unread body for up to `lingering_time`
    before closing, whatever the response says (`force_close()` does not stop it,
    aiohttp#1800), then keeps the connection if the rest came. After a stalled body there is
    nothing to wait for, and the stalled client would hold its connection that long.
    """
    response.force_close()  # `Connection: close`, and no keep-alive
    with contextlib.suppress(ConnectionError):  # gone already: nobody to answer (counted)
        await response.prepare(request)
        await response.write_eof()
    request.protocol.force_close()  # the transport closes once the answer is flushed
    return response


ExpectHandler = Callable[[web.Request], Awaitable[web.StreamResponse | None]]
_PASSED = web.Response(status=100)  # a marker through the middlewares: the headers refuse nothing


def expect_handler(
    screen: Callable[[web.Request], object], middlewares: Iterable[Middleware]
) -> ExpectHandler:
    """`Expect: 100-continue` answered as the route would answer the headers alone.

    aiohttp calls an expect handler before the app's middlewares, and its default one sends
    `100 Continue` at once: a client that waits for it was told to upload a body that auth or
    the route then refused. This one runs `middlewares` (auth) around `screen` (the route's
    header checks, which return a response to refuse) first, and answers a refusal instead,
    with `Connection: close`. The connection is not cut at once: a client may send its body
    without waiting (RFC 9110 10.1.1; Python's http.client does, curl after 1 s), and would read
    a reset (retryable, to an exporter) instead of the refusal; aiohttp reads such a body for
    `lingering_time` at most, and a client that waited closes on the refusal.
    """

    async def passed(request: web.Request) -> web.StreamResponse:
        refusal = screen(request)
        return refusal if isinstance(refusal, web.StreamResponse) else _PASSED

    checked: Handler = passed
    for middleware in reversed(list(middlewares)):
        checked = functools.partial(middleware, handler=checked)

    async def expect(request: web.Request) -> web.StreamResponse | None:
        answer = await checked(request)
        if answer is _PASSED:
            await _default_expect_handler(request)
            return None
        answer.force_close()
        return answer

    return expect


class ClientGone(Exception):
    """The client closed or reset its connection: the rest of its request is work for no one."""


class ShuttingDown(Exception):
    """The intake stopped serving while a body streamed in: the rest is for the next instance."""


_TCP_ESTABLISHED = 1  # the first byte of Linux's struct tcp_info is the connection state


def client_gone(request: web.Request) -> bool:
    """Whether the client has closed or reset the connection, even while its data is still
    buffered in the kernel: asyncio only learns of the close after reading all of it, so a
    small upload that costs much work would be worked through for no one (CLOSE-WAIT)."""
    transport = request.transport
    if transport is None or transport.is_closing():
        return True
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        state = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)[0]
    except OSError:
        return False
    return bool(state != _TCP_ESTABLISHED)


def _content_encoding(request: web.Request) -> str | None:
    """The request's Content-Encoding if we can decode it, else None."""
    value = request.headers.get("Content-Encoding", "identity").strip().lower()
    return value if value in ("", "identity", *_WBITS) else None


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
        self.guard = ConnectionGuard(
            self.config.max_connections,
            self.config.read_header_timeout,
            lambda: self.serving,
            self.config.write_timeout,
        )
        self._runner: web.AppRunner | None = None
        self._error_log = RateLimitedLog(log)
        self._fd_log = RateLimitedLog(log)
        self._previous_handler: Any = None
        # NDJSON lines are split, parsed and encoded in a process of their own, not on the
        # event loop (a 100 MB stream kept it 91 % busy) nor in a thread (its GIL).
        self._ndjson = NdjsonParser()

    def _middlewares(self) -> list[Any]:
        if not self.auth.enabled:
            return [self._errors]
        return [
            self._errors,
            http_bearer_auth(
                BearerTokens(self.auth.tokens),
                open_paths=OPEN_PATHS,
                deny=_unauthenticated,
                on_denied=self._count_denied,
            ),
        ]

    def _count_denied(self, request: web.Request) -> None:
        transport = Transport.NDJSON if request.path == "/v1/ingest" else Transport.HTTP
        self.intake.stats.count(transport, Outcome.UNAUTHENTICATED)

    def make_app(self) -> web.Application:
        middlewares = self._middlewares()
        app = web.Application(
            client_max_size=self.config.max_request_body_size, middlewares=middlewares
        )
        app.router.add_post(
            "/v1/logs",
            self.post_logs,
            expect_handler=expect_handler(self._logs_screen, middlewares),
        )
        app.router.add_post(
            "/v1/ingest",
            self.post_ingest,
            expect_handler=expect_handler(self._ingest_screen, middlewares),
        )
        app.router.add_get("/healthz", self.get_healthz)
        app.router.add_get("/status", self.get_status)
        if self.metrics is not None:
            app.router.add_get("/metrics", self.get_metrics)
        return app

    async def start(self) -> None:
        host, port = split_endpoint(self.config.endpoint) or ("", 0)  # validated by the config
        self.guard.stats.limit = effective_limit(self.config.max_connections)
        # We inflate bodies ourselves: to answer 415 for encodings we do not speak and to stop
        # gzip bombs. A handler whose client has gone is cancelled: its work is for no one.
        runner = web.AppRunner(
            self.make_app(),
            access_log=None,
            handle_signals=False,
            auto_decompress=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            handler_cancellation=True,
            keepalive_timeout=self.config.idle_timeout,
            lingering_time=lingering_time(self.config),
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
        site = GuardedSite(runner, host, port, self.guard, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise StartupError(
                f"cannot listen for OTLP/HTTP on {self.config.endpoint}: {exc.strerror or exc}",
                hint="set receive.http.endpoint to a free HOST:PORT",
            ) from None
        self._runner = runner
        sockets = site.sockets
        self.port = sockets[0].getsockname()[1] if sockets else port
        loop = asyncio.get_running_loop()
        self._previous_handler = loop.get_exception_handler()
        loop.set_exception_handler(self._loop_exception)

    async def stop(self) -> None:
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        await runner.cleanup()
        self._ndjson.close()
        asyncio.get_running_loop().set_exception_handler(self._previous_handler)

    def stats(self) -> dict[str, int]:
        """Connection counters for `/status`."""
        return dataclasses.asdict(self.guard.stats)

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Out of file descriptors, asyncio retries accept() every second and logs each failure
        with a traceback; say it once a minute, in one line, instead."""
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _OUT_OF_RESOURCES:
            self._fd_log.error(
                "cannot accept connections: %s (the open-file limit is reached; "
                "retrying every second, connections wait in the listen backlog)",
                exc.strerror or exc,
            )
            return
        if self._previous_handler is not None:
            self._previous_handler(loop, context)
        else:
            loop.default_exception_handler(context)

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """An unexpected error is a 500 for that request and a rate-limited log line, so that
        no input can flood the log with tracebacks."""
        try:
            return await handler(request)
        except asyncio.CancelledError:
            self.guard.stats.handlers_cancelled += 1  # the client went away (or we stop)
            raise
        except (web.HTTPException, ConnectionError):
            raise
        except Exception:
            self._error_log.error(
                "unexpected error handling %s %s", request.method, request.path, exc_info=True
            )
            return web.json_response({"error": "internal error; see the via-otlp log"}, status=500)

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

    def _logs_screen(self, request: web.Request) -> tuple[Encoding, str] | web.Response:
        """What `/v1/logs` answers on the headers alone: 503 shutting down, 415 for a content
        type or encoding we do not speak, 413 by Content-Length (each counted); else the body's
        encoding and Content-Encoding."""
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
        if too_large := _declared_too_large(request, self.config.max_request_body_size):
            stats.count(Transport.HTTP, Outcome.TOO_LARGE)
            return _status_response(413, code_pb2.RESOURCE_EXHAUSTED, too_large, encoding)
        return encoding, content_encoding

    async def post_logs(self, request: web.Request) -> web.Response:
        """OTLP/HTTP export: protobuf or JSON, answered in the same encoding."""
        screened = self._logs_screen(request)
        if isinstance(screened, web.Response):
            return screened
        encoding, content_encoding = screened
        stats = self.intake.stats
        limit = self.config.max_request_body_size
        try:
            raw = await read_body(request, limit, self.config.body_read_timeout)
            body = inflate(raw, content_encoding, limit)
        except BodyTooLarge as exc:
            stats.count(Transport.HTTP, Outcome.TOO_LARGE)
            return _status_response(413, code_pb2.RESOURCE_EXHAUSTED, str(exc), encoding)
        except BodyTimeout:
            stats.count(Transport.HTTP, Outcome.TIMEOUT)
            return await answer_and_close(request, self._body_timeout(encoding))
        except InputError as exc:
            stats.count(Transport.HTTP, Outcome.INVALID)
            return _status_response(400, code_pb2.INVALID_ARGUMENT, str(exc), encoding)
        if client_gone(request):
            stats.count(Transport.HTTP, Outcome.CLIENT_GONE)
            return web.Response(status=499)  # no one reads it; the work is not done
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

    def _body_timeout(self, encoding: Encoding) -> web.Response:
        """408: the body stopped coming; the connection is closed (what is left is unread)."""
        return _status_response(
            408,
            code_pb2.DEADLINE_EXCEEDED,
            f"request body stalled for longer than body_read_timeout {self.config.body_read_timeout:g}s",
            encoding,
        )

    def _ingest_screen(self, request: web.Request) -> str | web.Response:
        """What `/v1/ingest` answers on the headers alone: 503 shutting down, 415 for an
        encoding we cannot inflate, 413 by Content-Length (each counted); else the
        Content-Encoding."""
        stats = self.intake.stats
        if not self.serving:
            stats.count(Transport.NDJSON, Outcome.UNAVAILABLE)
            gone = {
                "accepted": 0,
                "rejected": 0,
                "errors": [],
                "error": "via-otlp is shutting down",
            }
            return web.json_response(gone, status=503, headers={"Retry-After": "1"})
        content_encoding = _content_encoding(request)
        if content_encoding is None:
            stats.count(Transport.NDJSON, Outcome.UNSUPPORTED_MEDIA_TYPE)
            return web.json_response(
                {"error": "unsupported Content-Encoding: use gzip, deflate or none"}, status=415
            )
        if too_large := _declared_too_large(request, self.config.max_request_body_size):
            stats.count(Transport.NDJSON, Outcome.TOO_LARGE)
            body = {"accepted": 0, "rejected": 0, "errors": [], "error": too_large}  # nothing read
            return web.json_response(body, status=413)
        return content_encoding

    async def post_ingest(self, request: web.Request) -> web.Response:
        """NDJSON, streamed: bad lines are reported and skipped, good ones accepted.

        Limits (the inflated size, the line count) answer 413 when reached, after the lines
        before them were accepted: the answer says how many and where reading stopped.
        Every answer reports lines 1..`through` only, those handed on (or rejected) by the last
        flush that succeeded: lines parsed after it were not taken, and the sender resends them.
        """
        stats = self.intake.stats
        default_service = request.query.get("service", "") or "unknown_service"
        accepted = rejected = through = 0
        repaired = False
        errors: list[dict[str, Any]] = []
        # Parsed since the last flush: serialised requests (concatenated, they are one), their
        # records, and the bad lines among them (counted, and shown, once handed on).
        pending: list[bytes] = []
        pending_records = pending_rejected = 0
        pending_errors: list[dict[str, Any]] = []
        content_encoding = self._ingest_screen(request)
        if isinstance(content_encoding, web.Response):
            return content_encoding
        max_size = self.config.max_request_body_size
        max_lines = self.config.max_ndjson_lines
        splitter = LineSplitter(MAX_NDJSON_LINE)

        async def flush() -> None:
            """Hand on the lines parsed so far; only then do they count as taken (`through`)."""
            nonlocal accepted, rejected, through, pending_records, pending_rejected
            if pending:
                # Only the wait for room is bounded: records sent on are answered, else the
                # answer could say "not taken" of records that were (and would come twice).
                await self.intake.submit_payload(
                    b"".join(pending),
                    Encoding.PROTOBUF,
                    wait=True,
                    room_timeout=NDJSON_ROOM_TIMEOUT,
                )
                accepted += pending_records
                pending.clear()
                pending_records = 0
            rejected += pending_rejected
            pending_rejected = 0
            errors.extend(pending_errors)
            pending_errors.clear()
            through = min(splitter.complete, max_lines)

        unparsed: list[bytes] = []  # pieces read, parsed together (fewer trips to the parser)
        unparsed_size = 0

        async def parse(piece: bytes = b"", *, now: bool = False, end: bool = False) -> None:
            """Lines of the body parsed in the parser process once `NDJSON_PARSE_BYTES` have
            come (or `now`; `end`: the body has ended); full batches handed on."""
            nonlocal unparsed_size
            if piece:
                unparsed.append(piece)
                unparsed_size += len(piece)
            if unparsed_size < NDJSON_PARSE_BYTES and not (now or end):
                return
            if unparsed:
                data = b"".join(unparsed)
                unparsed.clear()
                unparsed_size = 0
                await parse_data(data)
            if end:
                await parse_data(None)

        async def parse_data(data: bytes | None) -> None:
            nonlocal splitter, pending_rejected, repaired, pending_records
            splitter, parsed = await self._ndjson.parse(
                splitter, data, default_service, max_lines, NDJSON_MAX_ERRORS_SHOWN
            )
            pending_rejected += parsed.rejected
            repaired = repaired or parsed.repaired
            room = NDJSON_MAX_ERRORS_SHOWN - len(errors) - len(pending_errors)
            for number, error in parsed.errors[: max(room, 0)]:
                pending_errors.append({"line": number, "error": error})
            if parsed.records:
                pending.append(parsed.payload)
                pending_records += parsed.records
            if splitter.lines > max_lines:
                await flush()
                raise BodyTooLarge(
                    f"body has more than max_ndjson_lines {max_lines} lines; "
                    f"lines after {through} were not read"
                )
            if pending_records >= self.batch_records or not pending:
                await flush()  # (nothing to hand on: the lines parsed are taken at once)

        def answer(outcome: Outcome, status: int, error: str = "", **headers: str) -> web.Response:
            """Count the request and its records, and say how far it got."""
            stats.count(Transport.NDJSON, outcome)
            stats.invalid_utf8_requests += repaired
            stats.records[(Transport.NDJSON, Outcome.ACCEPTED)] += accepted
            if rejected:
                stats.records[(Transport.NDJSON, Outcome.INVALID)] += rejected
            body: dict[str, Any] = {"accepted": accepted, "rejected": rejected, "errors": errors}
            if error:
                body["error"] = error
            return web.json_response(body, status=status, headers=headers or None)

        size = 0
        try:
            async for piece in _inflated_pieces(
                request.content, content_encoding, self.config.body_read_timeout
            ):
                size += len(piece)
                if size > max_size:
                    await parse(now=True)  # what came before the limit
                    await flush()
                    raise BodyTooLarge(
                        f"body exceeds max_request_body_size {max_size}; "
                        f"lines after {through} were not read"
                    )
                await parse(piece)
                if not self.serving:
                    await flush()  # the lines read are accepted, as the answer says
                    raise ShuttingDown  # the sender retries the rest later
                if client_gone(request):
                    raise ClientGone
            await parse(end=True)
            await flush()
        except InputError as exc:
            return answer(Outcome.INVALID, 400, str(exc))
        except BodyTooLarge as exc:
            return answer(Outcome.TOO_LARGE, 413, str(exc))
        except ClientGone:
            return answer(Outcome.CLIENT_GONE, 499, "client closed the connection")  # unread
        except ShuttingDown:
            return answer(
                Outcome.UNAVAILABLE,
                503,
                f"via-otlp is shutting down; lines after {through} were not read",
                **{"Retry-After": "1"},
            )
        except asyncio.CancelledError:  # its connection was lost while the parser worked
            answer(Outcome.CLIENT_GONE, 499)  # counted, with the records accepted before
            raise
        except BodyTimeout:
            return await answer_and_close(
                request,
                answer(
                    Outcome.TIMEOUT,
                    408,
                    f"body stalled for longer than body_read_timeout {self.config.body_read_timeout:g}s; "
                    f"lines after {through} were not accepted",
                ),
            )
        except (TimeoutError, QueueFullError, ParserUnavailable):
            if not self.serving:  # (the wait for room ended because the service is stopping)
                return answer(
                    Outcome.UNAVAILABLE,
                    503,
                    f"via-otlp is shutting down; lines after {through} were not accepted",
                    **{"Retry-After": "1"},
                )
            return answer(
                Outcome.QUEUE_FULL,
                503,
                f"intake queue stayed full; lines after {through} were not accepted",
                **{"Retry-After": "1"},
            )
        outcome = Outcome.ACCEPTED if accepted or not rejected else Outcome.INVALID
        return answer(outcome, 200 if outcome is Outcome.ACCEPTED else 400)
