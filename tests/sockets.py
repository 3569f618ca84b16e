"""Idle and half-sent connections, the way an attacker (or a broken client) holds a server's
descriptors: shared by tests/e2e/test_limits.py and benchmarks/hostile.py."""

from __future__ import annotations

import socket

HALF_HTTP_HEAD = b"POST /v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Le"
HALF_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n"


def open_idle_connections(
    port: int, count: int, half_sent: bytes = HALF_HTTP_HEAD, timeout: float = 120.0
) -> list[socket.socket]:
    """`count` connections to `port` on loopback: every other one sends `half_sent` (a request
    begun, never finished), the rest send nothing. Each socket reads with `timeout`."""
    socks = []
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if i % 2:
            sock.sendall(half_sent)
        socks.append(sock)
    return socks


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (deadline: the socket's)."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out
