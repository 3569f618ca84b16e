"""Connection-level limits of the HTTP intake: how many, and how long to send the headers.

aiohttp bounds what a request may contain but not how many connections are open nor how long a
new one may take to send its request line and headers, so idle or half-sent connections
used to pile up until the process ran out of file descriptors (then every accept failed and
logged). `ConnectionGuard` wraps each connection's protocol:

- above `limit` open connections, a new one is answered `503` with `Retry-After` and closed
  (its descriptor is free again right away), counted and logged at most once a minute; but a
  health check still gets its answer: a few connections past the limit (`HEALTH_SLOTS`) are
  read up to the end of their request head and a `GET /healthz` among them is answered here,
  whatever holds the other connections. A liveness probe that failed at the connection limit
  would have the orchestrator restart a service that is only busy (and drop what it learnt
  since its last snapshot). The newest connections keep those slots (a probe sends its request
  at once; an idle one is closed with 503 when a newer one needs the slot), and none holds one
  longer than `HEALTH_SLOT_TIMEOUT`;
- a connection that has not sent a complete request head within `header_timeout` of opening
  is closed (`408` if it sent anything), counted;
- a connection whose client stops reading an answer (anything left that the kernel does not
  take, and no byte taken by the client) for `write_timeout` is aborted, counted: aiohttp has no write timeout, so a client
  asking for a large `/status` or `/metrics` and never reading held its handler, the answer's
  bytes and a connection slot for ever. A slow reader is not a stalled one: what counts is the
  bytes still unsent (asyncio's buffer and the kernel's send queue), not the time between the
  kernel's "writable" wake-ups, which with megabytes of send buffer draining slowly can be long.

Idle keep-alive connections are aiohttp's `keepalive_timeout`; stalled bodies are the
handlers' (`body_read_timeout`). The limit itself follows the process's file descriptor limit
(`effective_limit`), so it is reached before descriptors run out.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import resource
import struct
import termios
from collections import OrderedDict
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

HEALTH_PATH = b"/healthz"
HEALTH_SLOTS = 8  # connections past the limit that may still ask for /healthz (per listener)
HEALTH_SLOT_TIMEOUT = 2.0  # seconds such a connection has to send its request head
TLS_SHUTDOWN_TIMEOUT = 5.0  # seconds a TLS close waits for the client's close_notify (asyncio: 30)
_MAX_HEAD = 8192  # a longer request head in a health slot is not a health check


def health_response(serving: bool) -> bytes:
    """`/healthz`'s answer as raw HTTP, for a connection past the limit (closed after it)."""
    body = b'{"status": "SERVING"}' if serving else b'{"status": "NOT_SERVING"}'
    status = b"200 OK" if serving else b"503 Service Unavailable"
    return (
        b"HTTP/1.1 %s\r\nContent-Type: application/json; charset=utf-8\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)
    )


def is_health_check(head: bytes) -> bool:
    r"""Whether a request head asks `GET` or `HEAD /healthz` (a query string allowed).

    >>> is_health_check(b"GET /healthz?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"), is_health_check(b"POST /healthz HTTP/1.1")
    (True, False)
    """
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    return (
        len(parts) == 3
        and parts[0] in (b"GET", b"HEAD")
        and parts[1].split(b"?", 1)[0] == HEALTH_PATH
    )


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
    write_timeouts: int = 0  # aborted: the client stopped reading an answer
    handlers_cancelled: int = 0  # cancelled when their connection was lost
    health_answered_at_limit: int = 0  # /healthz answered in a health slot past the limit


class ConnectionGuard:
    """Shared state of every guarded connection of one listener."""

    def __init__(
        self,
        limit: int,
        header_timeout: float,
        serving: Callable[[], bool] = lambda: True,
        write_timeout: float = 30.0,
    ) -> None:
        self.stats = ConnectionStats(limit=limit)
        self.header_timeout = header_timeout
        self.write_timeout = write_timeout
        self.serving = serving  # what /healthz says, when it is answered past the limit
        self._refusal_log = RateLimitedLog(log)
        self._health_slots: OrderedDict[_GuardedConnection, None] = OrderedDict()

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

    def _take_health_slot(self, conn: _GuardedConnection) -> bool:
        """A health slot for a connection past the limit; the oldest holder gives its slot up
        (refused) when all are taken. False: no slots at all."""
        if HEALTH_SLOTS < 1:
            return False
        if len(self._health_slots) >= HEALTH_SLOTS:
            oldest, _ = self._health_slots.popitem(last=False)
            oldest._leave_health_slot(refuse=True)
        self._health_slots[conn] = None
        return True

    def _free_health_slot(self, conn: _GuardedConnection) -> None:
        self._health_slots.pop(conn, None)


class _GuardedConnection(asyncio.Protocol):
    """Forwards to the real protocol; enforces the limit and the header deadline."""

    __slots__ = (
        "_admitted",
        "_guard",
        "_head",
        "_inner",
        "_make_inner",
        "_seen",
        "_tail",
        "_timer",
        "_transport",
        "_unsent_mark",
        "_write_timer",
    )

    def __init__(self, guard: ConnectionGuard, make_inner: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._make_inner = make_inner
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None  # set while writing is paused
        self._unsent_mark = 0  # bytes unsent when that timer was set
        self._tail = b""
        self._seen = False
        self._admitted = False
        self._head: bytearray | None = None  # past the limit: the request head read so far

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self._guard
        if guard.stats.active >= guard.stats.limit:
            if not guard._take_health_slot(self):
                guard._refuse(transport)
                return
            self._transport = transport
            self._head = bytearray()
            self._timer = asyncio.get_running_loop().call_later(
                min(HEALTH_SLOT_TIMEOUT, guard.header_timeout), self._leave_health_slot
            )
            return
        guard.stats.active += 1
        self._admitted = True
        self._transport = transport
        if isinstance(transport, asyncio.WriteTransport):
            # Pause (and so watch, `write_timeout`) as soon as the kernel takes no more: with
            # asyncio's 64 KiB high-water mark a client that stopped reading with less than
            # that left in the buffer was never watched, and the close waited for it for ever.
            transport.set_write_buffer_limits(high=0)
        self._timer = asyncio.get_running_loop().call_later(
            guard.header_timeout, self._header_timed_out
        )
        self._inner = self._make_inner()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._head is not None:
            self._health_data(data)
            return
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
            if self._write_timer is None:
                self._watch_writing()
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._cancel_write_timer()
        if self._inner is not None:
            self._inner.resume_writing()

    def _cancel_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _watch_writing(self) -> None:
        self._unsent_mark = _unsent(self._transport)
        self._write_timer = asyncio.get_running_loop().call_later(
            self._guard.write_timeout, self._write_timed_out
        )

    def _write_timed_out(self) -> None:
        """`write_timeout` since writing paused or last moved: if the client took nothing in
        that time, abort (a close would wait to send what it does not read); else watch on."""
        self._write_timer = None
        transport = self._transport
        if not isinstance(transport, asyncio.WriteTransport) or not self._admitted:
            return
        if transport.is_closing():
            return
        if _unsent(transport) < self._unsent_mark:
            self._watch_writing()
            return
        self._guard.stats.write_timeouts += 1
        transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head is not None:
            self._leave_health_slot(refuse=False)
        if not self._admitted:
            return
        self._admitted = False
        self._guard.stats.active -= 1
        self._cancel_write_timer()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._inner is not None:
            self._inner.connection_lost(exc)
            self._inner = None

    def _health_data(self, data: bytes) -> None:
        """In a health slot: answer `/healthz` once the request head is complete, else 503."""
        assert self._head is not None
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0 and len(self._head) <= _MAX_HEAD:
            return
        health = end >= 0 and is_health_check(bytes(self._head[:end]))
        transport = self._transport
        self._leave_health_slot(refuse=not health)
        if health and isinstance(transport, asyncio.WriteTransport):
            self._guard.stats.health_answered_at_limit += 1
            transport.write(health_response(self._guard.serving()))
            transport.close()

    def _leave_health_slot(self, refuse: bool = True) -> None:
        """Give the health slot up; `refuse`: answer 503 and close (no health check came)."""
        if self._head is None:
            return
        self._head = None
        self._guard._free_health_slot(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self._transport
        if refuse and transport is not None and not transport.is_closing():
            self._guard._refuse(transport)

    def _header_timed_out(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._guard.stats.header_timeouts += 1
        if self._seen and isinstance(transport, asyncio.WriteTransport):
            transport.write(TIMEOUT_RESPONSE)
        transport.close()


def _unsent(transport: asyncio.BaseTransport | None) -> int:
    """Bytes written to `transport` that the peer has not yet taken: asyncio's buffer plus, on
    Linux, the socket's send queue (TIOCOUTQ; elsewhere the buffer alone)."""
    if not isinstance(transport, asyncio.WriteTransport):
        return 0
    unsent = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
            unsent += struct.unpack("i", queued)[0]
        except (OSError, ValueError):
            pass
    return unsent


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
        # A TLS close waits for the client's close_notify: 30 s by default, the connection's
        # slot held all that time after a 408 or an idle close; a client that has it sends it at once.
        self._server = await loop.create_server(
            self._guard.protocol_factory(server),
            self._host or None,
            self._port,
            ssl=self._ssl_context,
            reuse_address=True,
            backlog=self._backlog,
            ssl_shutdown_timeout=TLS_SHUTDOWN_TIMEOUT if self._ssl_context else None,
        )

    @property
    def sockets(self) -> list[Any]:
        server = self._server
        return list(getattr(server, "sockets", None) or [])
