"""Connection-level limits of the HTTP intake: how many, and how long to send the headers.

aiohttp bounds what a request may contain but not how many connections are open nor how long a
new one may take to send its request line and headers, so idle or half-sent connections
used to pile up until the process ran out of file descriptors (then every accept failed and
logged). `ConnectionGuard` wraps each connection's protocol:

- above `limit` open connections, a new one is answered `503` with `Retry-After` and closed at
  once (its descriptor is free again right away), counted and logged at most once a minute;
- a connection that has not sent a complete request head within `header_timeout` of opening
  is closed (`408` if it sent anything), counted.

Idle keep-alive connections are aiohttp's `keepalive_timeout`; stalled bodies are the
handlers' (`body_read_timeout`). The limit itself follows the process's file descriptor limit
(`effective_limit`), so it is reached before descriptors run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from via_otlp.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

# Descriptors kept for everything but HTTP connections (gRPC, PostgreSQL, files, pipes).
FD_RESERVE_MIN = 64
FD_RESERVE_FRACTION = 8

_BUSY_BODY = b'{"error": "too many open connections; retry later"}'
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_BUSY_BODY), _BUSY_BODY)
)
TIMEOUT_RESPONSE = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft open-file limit to the hard one (as the Go runtime does); returns both."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft, hard


def effective_limit(configured: int, listeners: int = 2) -> int:
    """`configured`, lowered so that connections alone cannot use up the descriptors: each of
    `listeners` (HTTP and gRPC) gets an equal share of what the reserve leaves.

    >>> effective_limit(10) <= 10
    True
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    reserve = max(FD_RESERVE_MIN, soft // FD_RESERVE_FRACTION)
    return max(1, min(configured, (soft - reserve) // listeners))


@dataclass
class ConnectionStats:
    """Counters for `/status`."""

    limit: int = 0
    active: int = 0
    refused: int = 0
    header_timeouts: int = 0
    handlers_cancelled: int = 0  # cancelled when their connection was lost


class ConnectionGuard:
    """Shared state of every guarded connection of one listener."""

    def __init__(self, limit: int, header_timeout: float) -> None:
        self.stats = ConnectionStats(limit=limit)
        self.header_timeout = header_timeout
        self._refusal_log = RateLimitedLog(log)

    def protocol_factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], Any]:
        """A factory for `loop.create_server` that wraps each protocol `inner()` makes."""
        return lambda: _GuardedConnection(self, inner)

    def _refuse(self, transport: asyncio.BaseTransport) -> None:
        self.stats.refused += 1
        self._refusal_log.warning(
            "HTTP connection limit reached (%d open): new connections are answered 503 "
            "(receive.http.max_connections, and the open-file limit)",
            self.stats.limit,
        )
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(BUSY_RESPONSE)
        transport.close()


class _GuardedConnection(asyncio.Protocol):
    """Forwards to the real protocol; enforces the limit and the header deadline."""

    __slots__ = (
        "_admitted",
        "_guard",
        "_inner",
        "_make_inner",
        "_seen",
        "_tail",
        "_timer",
        "_transport",
    )

    def __init__(self, guard: ConnectionGuard, make_inner: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._make_inner = make_inner
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""
        self._seen = False
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self._guard
        if guard.stats.active >= guard.stats.limit:
            guard._refuse(transport)
            return
        guard.stats.active += 1
        self._admitted = True
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(
            guard.header_timeout, self._header_timed_out
        )
        self._inner = self._make_inner()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if self._timer is not None:
            self._seen = True
            window = self._tail + data
            if b"\r\n\r\n" in window or b"\n\n" in window:
                self._timer.cancel()
                self._timer = None
                self._tail = b""
            else:
                self._tail = window[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self._guard.stats.active -= 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._inner is not None:
            self._inner.connection_lost(exc)
            self._inner = None

    def _header_timed_out(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._guard.stats.header_timeouts += 1
        if self._seen and isinstance(transport, asyncio.WriteTransport):
            transport.write(TIMEOUT_RESPONSE)
        transport.close()


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a `ConnectionGuard` (cf. aiohttp's TCPSite)."""

    __slots__ = ("_guard", "_host", "_port", "_reuse_address")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: ConnectionGuard,
        *,
        ssl_context: Any = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._guard = guard

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host or '0.0.0.0'}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard.protocol_factory(server),
            self._host or None,
            self._port,
            ssl=self._ssl_context,
            reuse_address=True,
            backlog=self._backlog,
        )

    @property
    def sockets(self) -> list[Any]:
        server = self._server
        return list(getattr(server, "sockets", None) or [])
