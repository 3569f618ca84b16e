"""A client that asks for a large answer and stops reading it is cut off after `write_timeout`
(aiohttp has no write timeout: its handler, the answer's bytes and a connection slot were held
for ever). Real aiohttp and real loopback sockets; what is bounded is bytes, not time."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from aiohttp import web

from via_otlp.receive.connlimit import ConnectionGuard, GuardedSite

BODY = 32 * 1024 * 1024  # more than the kernel's socket buffers can hold on both sides
BIG = 8 * 1024 * 1024  # the slow reader's answer
STEP = 64 * 1024  # what it reads between pauses: ~1.2 MB/s; megabytes of send buffer drain slowly


async def serve_bytes(
    size: int, write_timeout: float, sndbuf: int = 0
) -> tuple[web.AppRunner, ConnectionGuard, int]:
    """A real aiohttp server behind a `ConnectionGuard` whose `GET /big` answers `size` bytes
    (`sndbuf`: its connections' fixed kernel send buffer; 0: the kernel's autotuning)."""

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * size)

    app = web.Application()
    app.router.add_get("/big", big)
    runner = web.AppRunner(app)
    await runner.setup()
    guard = ConnectionGuard(limit=10, header_timeout=10.0, write_timeout=write_timeout)
    site = GuardedSite(runner, "127.0.0.1", 0, guard)
    await site.start()
    listener = site.sockets[0]
    if sndbuf:  # (accepted connections inherit it)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    return runner, guard, listener.getsockname()[1]


@pytest.mark.parametrize(
    ("size", "sndbuf"),
    [
        (BODY, 0),
        # The kernel takes ~30 KB; the rest, under asyncio's 64 KiB high-water mark, stays in
        # its buffer: writing never paused, and aiohttp's close waited for it for ever.
        (60 * 1024, 16 * 1024),
    ],
)
async def test_a_client_that_stops_reading_is_cut_off(size: int, sndbuf: int) -> None:
    runner, guard, port = await serve_bytes(size, write_timeout=0.3, sndbuf=sndbuf)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never read
    try:
        client.connect(("127.0.0.1", port))
        client.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(600):  # a generous deadline for something that must happen
            # (the abort frees the slot a loop iteration later, in `connection_lost`: on a
            # loaded machine this wake-up can fall between the two)
            if guard.stats.write_timeouts and not guard.stats.active:
                break
            await asyncio.sleep(0.05)
        assert guard.stats.write_timeouts == 1
        assert guard.stats.active == 0  # its slot is free again

        def read_all() -> int:
            got = 0
            client.settimeout(30)
            try:
                while chunk := client.recv(1 << 20):
                    got += len(chunk)
            except ConnectionResetError:
                pass
            return got

        got = await asyncio.to_thread(read_all)
        assert got < size  # the rest was never sent
    finally:
        client.close()
        await runner.cleanup()


async def test_a_slow_reader_that_keeps_reading_gets_everything() -> None:
    """Only a stall is cut off: a client that keeps reading, in small steps, gets the whole
    answer though the kernel's send buffer (megabytes) drains so slowly that asyncio is not told
    the socket is writable again within the timeout (a timer from pause to resume cut it off)."""

    runner, guard, port = await serve_bytes(BIG, write_timeout=1.0)
    pauses = 0

    def fetch() -> bytes:
        nonlocal pauses
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.settimeout(30)
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = bytearray()
            while chunk := sock.recv(STEP):
                data += chunk
                if len(data) // STEP > pauses:  # about every STEP bytes, a short pause
                    pauses += 1
                    time.sleep(0.05)
            return bytes(data)

    try:
        data = await asyncio.to_thread(fetch)
    finally:
        await runner.cleanup()
    assert len(data.partition(b"\r\n\r\n")[2]) == BIG
    assert guard.stats.write_timeouts == 0
