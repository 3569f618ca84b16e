"""Hard limits of the HTTP intake, against a real server: size, lines, slow and idle clients,
clients that leave, and too many connections under a real 1024 open-file limit.

No assertion here is on elapsed time: waits are generous deadlines for something that must
happen (a connection closed, a counter moved), and what is bounded is work and bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import resource
import signal
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerProcess, free_port, http_post, start_server
from tests.shard.test_route import until
from tests.sockets import HALF_HTTP2_PREFACE, open_idle_connections, read_until_closed
from via_otlp.app import App
from via_otlp.config import parse_config
from via_otlp.model import LogBatch
from via_otlp.receive import http_server
from via_otlp.receive.connlimit import HEALTH_SLOTS
from via_otlp.receive.intake import RecordQueue

pytestmark = pytest.mark.slow

MAX_BODY = 1024 * 1024
MAX_LINES = 5000
SHORT = 1.0  # seconds: the `short` server's header, body and idle timeouts
SMALL_BODY = 1024  # the `guarded` server's size limit
TOKEN = "expect-s3cret"


def lean_server(
    tmp_path_factory: pytest.TempPathFactory, name: str, receive: dict[str, object]
) -> Iterator[ServerProcess]:
    """A server with these `receive` settings, without registry or correlation (no embedded
    PostgreSQL: the limits are all at the intake), stopped cleanly at the end."""
    server = start_server(
        tmp_path_factory.mktemp(name),
        {"receive": receive, "registry": {"enabled": False}, "correlate": {"enabled": False}},
    )
    yield server
    assert server.stop() == 0, server.log()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Size and line limits; the default (generous) timeouts, so that a client descheduled on a
    busy machine never turns an expected 413 into a 408."""
    limits = {"max_request_body_size": MAX_BODY, "max_ndjson_lines": MAX_LINES}
    yield from lean_server(tmp_path_factory, "limits", {"http": limits})


@pytest.fixture(scope="module")
def short(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Short header, body and idle timeouts, for the tests that wait for them to fire."""
    timeouts = {"read_header_timeout": SHORT, "body_read_timeout": SHORT, "idle_timeout": SHORT}
    yield from lean_server(tmp_path_factory, "timeouts", {"http": timeouts})


@pytest.fixture(scope="module")
def stalls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A short body timeout only: a kept connection is not closed for idleness while a client
    descheduled on a busy machine takes its time between two requests."""
    yield from lean_server(tmp_path_factory, "stalls", {"http": {"body_read_timeout": SHORT}})


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A bearer token and a small size limit, for the requests that expect 100-continue."""
    receive = {"http": {"max_request_body_size": SMALL_BODY}, "auth": {"bearer_token": TOKEN}}
    yield from lean_server(tmp_path_factory, "guarded", receive)


def post(
    srv: ServerProcess, path: str, body: bytes, content_type: str, **headers: str
) -> tuple[int, bytes]:
    return http_post(f"{srv.http_url}{path}", body, content_type, **headers)


def ingest(srv: ServerProcess, body: bytes, **headers: str) -> tuple[int, dict[str, object]]:
    code, out = post(srv, "/v1/ingest", body, "application/x-ndjson", **headers)
    return code, json.loads(out)


def connect(srv: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.http_port), timeout=60)


def connections(srv: ServerProcess) -> dict[str, int]:
    return srv.status()["http"]["connections"]  # type: ignore[no-any-return,unused-ignore]


def intake(srv: ServerProcess, token: str = "") -> dict[str, dict[str, dict[str, int]]]:
    """The server's intake counters (`token`: the bearer token its `/status` needs, if any)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"{srv.http_url}/status", headers=headers)
    with urllib.request.urlopen(request, timeout=60) as resp:
        return json.loads(resp.read())["intake"]


def outcomes(srv: ServerProcess, kind: str, outcome: str, token: str = "") -> int:
    """How many requests of `kind` ("http", "ndjson") the server has counted with `outcome`.

    Each test compares this before and after its own requests: under xdist's worksteal a module's
    tests may run on different workers, each with its own module-scoped server.
    """
    return int(intake(srv, token)["requests"].get(kind, {}).get(outcome, 0))


def accepted(srv: ServerProcess, kind: str, token: str = "") -> tuple[int, int]:
    """Requests of `kind` the server has accepted, and the records they carried."""
    counts = intake(srv, token)
    return (
        counts["requests"].get(kind, {}).get("accepted", 0),
        counts["records"].get(kind, {}).get("accepted", 0),
    )


def test_ndjson_over_the_line_limit_is_413_after_the_lines_before_it(srv: ServerProcess) -> None:
    lines = b"".join(
        b'{"body": "line %d", "service": "limits"}\n' % i for i in range(MAX_LINES + 10)
    )
    code, result = ingest(srv, lines)
    assert code == 413
    assert result["accepted"] == MAX_LINES and result["rejected"] == 0
    assert f"lines after {MAX_LINES} were not read" in str(result["error"])


def test_gzip_of_millions_of_blank_lines_is_413_without_reading_them_all(
    srv: ServerProcess,
) -> None:
    """16 KiB of gzip inflate to 16 Mi blank lines: refused at the line limit, nothing accepted."""
    bomb = gzip.compress(b"\n" * (16 * 1024 * 1024))
    assert len(bomb) < 64 * 1024
    before = outcomes(srv, "ndjson", "too_large")
    code, result = ingest(srv, bomb, **{"Content-Encoding": "gzip"})
    assert code == 413 and result["accepted"] == 0
    assert "max_ndjson_lines" in str(result["error"])
    assert outcomes(srv, "ndjson", "too_large") == before + 1


def test_ndjson_inflating_past_the_size_limit_is_413(srv: ServerProcess) -> None:
    line = b'{"body": "' + b"x" * 1000 + b'"}\n'
    big = line * (
        MAX_BODY // len(line) + 10
    )  # fewer lines than MAX_LINES, more bytes than MAX_BODY
    before = outcomes(srv, "ndjson", "too_large")
    code, result = ingest(srv, gzip.compress(big), **{"Content-Encoding": "gzip"})
    assert code == 413 and "max_request_body_size" in str(result["error"])
    assert 0 < int(result["accepted"]) < big.count(b"\n")  # type: ignore[call-overload]
    # declared too large: refused before reading anything
    code, result = ingest(srv, big)
    assert code == 413 and result["accepted"] == 0
    assert outcomes(srv, "ndjson", "too_large") == before + 2


def test_otlp_http_over_the_size_limit_is_413(srv: ServerProcess) -> None:
    before = outcomes(srv, "http", "too_large")
    code, _ = post(srv, "/v1/logs", b"\0" * (MAX_BODY + 1), "application/x-protobuf")
    assert code == 413
    assert outcomes(srv, "http", "too_large") == before + 1


def test_half_sent_headers_are_closed_and_counted(short: ServerProcess) -> None:
    before = connections(short)["header_timeouts"]
    with connect(short) as sock:
        sock.sendall(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408")
    with connect(short) as sock:  # says nothing at all
        assert read_until_closed(sock) == b""
    assert connections(short)["header_timeouts"] >= before + 2


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The head of the next response (an interim 100 Continue has no body), and what came after."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before the end of a response head: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def read_response(sock: socket.socket) -> bytes:
    """One response (head and a Content-Length body), leaving the connection open."""
    head, body = read_head(sock)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed before the end of a response body"
        body += chunk
    assert len(body) == length, "more than one response"
    return head + b"\r\n\r\n" + body


def rest_until_closed(sock: socket.socket) -> bytes:
    """What the server still sends on a connection it has closed (a reset counts as closed)."""
    try:
        return read_until_closed(sock)
    except ConnectionResetError:
        return b""


@pytest.mark.parametrize("path", ["/v1/logs", "/v1/ingest"])
def test_a_stalled_body_is_408_and_its_connection_closed(stalls: ServerProcess, path: str) -> None:
    """A good request keeps its connection; a stalled body after it is answered 408 and the
    connection closed with the answer: even if the rest of the body then comes, with a next
    request behind it, nothing more is read or answered. (aiohttp's lingering close used to read
    on for 10 s after the 408, then kept the connection for the next request.)"""
    kind = "http" if path == "/v1/logs" else "ndjson"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        "Content-Length: %d\r\n\r\n"
    )
    before = outcomes(stalls, kind, "timeout")
    with connect(stalls) as sock:
        sock.sendall((head % 0).encode())  # a good (empty) request: kept alive
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        sock.sendall((head % 1000).encode() + b"\n" * 10)  # and the rest never comes
        answer = read_response(sock)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"connection: close" in answer.lower()
        with contextlib.suppress(OSError):  # the rest, late; the server may reset instead
            sock.sendall(b"\n" * 990 + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert rest_until_closed(sock) == b""
    assert outcomes(stalls, kind, "timeout") == before + 1


EXPECT_HEAD = (
    "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
    "Content-Length: {length}\r\nExpect: 100-continue\r\n{extra}\r\n"
)
GOOD_JSON = (
    b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "hi"}}]}]}]}'
)
GOOD_NDJSON = b'{"body": "hi", "service": "expect"}\n'
BEARER = f"Authorization: Bearer {TOKEN}\r\n"


def refused_before_the_body(server: ServerProcess, head: str, status: int) -> bytes:
    """Send the head of a request that expects 100-continue, and wait: the first answer is the
    refusal `status` (not 100 Continue), saying the connection closes, and the client, which
    sends no body after it, goes."""
    with connect(server) as sock:
        sock.sendall(head.encode())
        answer = read_response(sock)
    first = answer.partition(b"\r\n\r\n")[0]
    assert first.startswith(b"HTTP/1.1 %d " % status), first
    assert b"connection: close" in first.lower(), first
    return answer


@pytest.mark.parametrize(("path", "kind"), [("/v1/logs", "http"), ("/v1/ingest", "ndjson")])
def test_expect_100_continue_is_refused_first_when_too_large(
    guarded: ServerProcess, path: str, kind: str
) -> None:
    """A Content-Length over the limit is answered 413 instead of 100 Continue (aiohttp's own
    expect handler sent 100 Continue first, then 413: the client began an upload we refused)."""
    before = outcomes(guarded, kind, "too_large", TOKEN)
    head = EXPECT_HEAD.format(
        path=path, content_type="application/json", length=999_999, extra=BEARER
    )
    answer = refused_before_the_body(guarded, head, 413)
    assert b"max_request_body_size" in answer
    assert outcomes(guarded, kind, "too_large", TOKEN) == before + 1


@pytest.mark.parametrize(("path", "kind"), [("/v1/logs", "http"), ("/v1/ingest", "ndjson")])
def test_expect_100_continue_is_refused_first_without_a_token(
    guarded: ServerProcess, path: str, kind: str
) -> None:
    before = outcomes(guarded, kind, "unauthenticated", TOKEN)
    head = EXPECT_HEAD.format(path=path, content_type="application/json", length=10, extra="")
    answer = refused_before_the_body(guarded, head, 401)
    assert b"www-authenticate: bearer" in answer.lower()
    assert outcomes(guarded, kind, "unauthenticated", TOKEN) == before + 1


@pytest.mark.parametrize(
    ("path", "kind", "extra"),
    [
        ("/v1/logs", "http", ""),  # a content type OTLP/HTTP does not speak
        ("/v1/ingest", "ndjson", "Content-Encoding: br\r\n"),  # an encoding we cannot inflate
    ],
)
def test_expect_100_continue_is_refused_first_for_an_unsupported_type(
    guarded: ServerProcess, path: str, kind: str, extra: str
) -> None:
    before = outcomes(guarded, kind, "unsupported_media_type", TOKEN)
    head = EXPECT_HEAD.format(path=path, content_type="text/plain", length=10, extra=BEARER + extra)
    refused_before_the_body(guarded, head, 415)
    assert outcomes(guarded, kind, "unsupported_media_type", TOKEN) == before + 1


@pytest.mark.parametrize(("path", "kind"), [("/v1/logs", "http"), ("/v1/ingest", "ndjson")])
@pytest.mark.parametrize("token", ["", TOKEN])
def test_a_refused_request_that_sends_its_body_without_waiting_reads_the_refusal(
    guarded: ServerProcess, path: str, kind: str, token: str
) -> None:
    """A client may send its body without waiting for 100 Continue (RFC 9110 10.1.1; Python's
    http.client does). It reads its 401 or 413, not a reset: the refusal is not retried as a
    broken connection would be. (Cutting the connection at once reset it mid-send.)"""
    outcome, status = ("too_large", 413) if token else ("unauthenticated", 401)
    before = outcomes(guarded, kind, outcome, TOKEN)
    body = b"x" * (4 * 1024 * 1024)  # more than the socket buffers hold: still sending
    extra = f"Authorization: Bearer {token}\r\n" if token else ""
    head = EXPECT_HEAD.format(path=path, content_type="application/json", length=len(body),
                              extra=extra)  # fmt: skip
    with connect(guarded) as sock:
        sock.sendall(head.encode() + body)
        answer = read_response(sock)
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:200]
    assert outcomes(guarded, kind, outcome, TOKEN) == before + 1


@pytest.mark.parametrize(
    ("path", "kind", "content_type", "body"),
    [
        ("/v1/logs", "http", "application/json", GOOD_JSON),
        ("/v1/ingest", "ndjson", "application/x-ndjson", GOOD_NDJSON),
    ],
)
def test_expect_100_continue_then_the_body_is_accepted(
    guarded: ServerProcess, path: str, kind: str, content_type: str, body: bytes
) -> None:
    """A request the headers do not refuse is told 100 Continue, sends its body, is answered 200
    with its record accepted, and keeps its connection."""
    before = accepted(guarded, kind, TOKEN)
    head = EXPECT_HEAD.format(path=path, content_type=content_type, length=len(body), extra=BEARER)
    with connect(guarded) as sock:
        sock.sendall(head.encode())
        first, rest = read_head(sock)
        assert first == b"HTTP/1.1 100 Continue" and rest == b""
        sock.sendall(body)
        answer = read_response(sock)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        assert b"connection: close" not in answer.lower()
    assert accepted(guarded, kind, TOKEN) == (before[0] + 1, before[1] + 1)


def test_an_idle_keep_alive_connection_is_closed(short: ServerProcess) -> None:
    with connect(short) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_until_closed(sock)  # the answer, then the close after idle_timeout
    assert answer.startswith(b"HTTP/1.1 200") and b"SERVING" in answer


def test_work_stops_when_the_sender_leaves(tmp_path: Path) -> None:
    """A body that is all there (small gzip, much work) is abandoned once its sender has gone."""
    lines = 4_000_000
    # 100 distinct lines, repeated: the block is built once (formatting 4 million lines one by
    # one cost 2 s of CPU for the same bytes)
    block = b"".join(b'{"body": "job %d done", "service": "leaver"}\n' % i for i in range(100))
    body = gzip.compress(block * (lines // 100))
    server = start_server(
        tmp_path,
        {
            "receive": {"http": {"max_ndjson_lines": lines, "max_request_body_size": 1 << 30}},
            "registry": {"enabled": False},
            "correlate": {"enabled": False},
        },
    )
    try:
        sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=300)

        def send() -> None:  # the server reads as it works: sending takes as long as the work
            with contextlib.suppress(OSError):
                sock.sendall(
                    b"POST /v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body) + body
                )

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        server.wait_for(lambda s: s["intake"]["records_accepted"] > 0, timeout=120, what="work")
        # gone, whatever it had not sent yet: shutdown wakes the sender, close sends a reset
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
        sender.join(60)
        sock.close()
        status = server.wait_for(
            # (no ndjson outcome is counted until the cancelled handler has ended)
            lambda s: s["intake"]["requests"].get("ndjson", {}).get("client_gone", 0) >= 1,
            timeout=120,
            what="the handler to be cancelled",
        )
        accepted = status["intake"]["records_accepted"]
        assert accepted < lines
        time.sleep(1.0)  # no more work comes from that request
        assert server.status()["intake"]["records_accepted"] == accepted
    finally:
        assert server.stop() == 0, server.log()


def _limit_fds(n: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))


def test_more_connections_than_file_descriptors(tmp_path: Path) -> None:
    """1,100 idle and half-sent HTTP connections, and 600 to gRPC, against a process with a
    1024 open-file limit: past the limits new connections are refused at once, the rest time
    out; then the service answers /healthz again. The log says so in a line or two (it once
    wrote 83 MB of "Too many open files" in 40 s)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 2000, "the test needs 2,000 descriptors"
    server = start_server(
        tmp_path,
        {
            # long enough that the limit is reached before the first ones time out
            "receive": {
                "http": {"read_header_timeout": "15s"},
                "grpc": {"handshake_timeout": "15s"},
            },
            "registry": {"enabled": False},
            "correlate": {"enabled": False},
        },
        preexec_fn=lambda: _limit_fds(1024),
    )
    try:
        limit = connections(server)["limit"]
        assert 0 < limit < 1024
        socks = open_idle_connections(server.http_port, 1100)
        with urllib.request.urlopen(f"{server.http_url}/healthz", timeout=60) as resp:
            assert resp.status == 200  # at the limit: answered in a health slot
        socks += open_idle_connections(server.grpc_port, 600, HALF_HTTP2_PREFACE)
        answers = []
        for s in socks:  # every one is closed by the server: refused, or timed out
            try:
                answers.append(read_until_closed(s)[:12])
            except ConnectionResetError:
                answers.append(b"reset")  # refused while its half-sent request was unread
            s.close()
        assert set(answers[:1100]) <= {b"HTTP/1.1 503", b"HTTP/1.1 408", b"", b"reset"}
        stats = server.wait_for(
            lambda s: s["http"]["connections"]["active"] <= 1, what="no open connections"
        )["http"]["connections"]
        assert stats["refused"] >= 1100 - limit and stats["header_timeouts"] >= limit // 2
        assert stats["refused"] + stats["header_timeouts"] >= 1100
        assert stats["health_answered_at_limit"] >= 1
        with urllib.request.urlopen(f"{server.http_url}/healthz", timeout=60) as resp:
            assert resp.status == 200
        log = server.log()
        assert 1 <= log.count("connection limit reached") <= 2, log[-3000:]
        assert len(log) < 20_000 and "Traceback" not in log, log[-3000:]
    finally:
        assert server.stop() == 0, server.log()


def test_health_is_answered_at_the_connection_limit(tmp_path: Path) -> None:
    """With every connection slot held by idle and half-sent connections, `/healthz` is still
    answered 200 (a liveness probe must not restart a service that is only busy), while any
    other request past the limit is answered 503."""
    limit = 4
    server = start_server(
        tmp_path,
        {
            "receive": {"http": {"max_connections": limit}},
            "registry": {"enabled": False},
            "correlate": {"enabled": False},
        },
    )
    try:
        # the limit, every health slot, and as many again to push the oldest out of them
        socks = open_idle_connections(server.http_port, limit + 2 * HEALTH_SLOTS)
        for _ in range(3):
            with urllib.request.urlopen(f"{server.http_url}/healthz", timeout=60) as resp:
                assert resp.status == 200 and json.loads(resp.read()) == {"status": "SERVING"}
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{server.http_url}/status", timeout=60)
        assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "1"
        answers = []
        for s in socks:
            with contextlib.suppress(OSError):  # held ones: the header timeout (10 s) closes them
                answers.append(read_until_closed(s)[:12])
            s.close()
        assert answers.count(b"HTTP/1.1 503") >= HEALTH_SLOTS  # pushed out of the health slots
        stats = server.wait_for(
            lambda s: s["http"]["connections"]["active"] <= 1, what="no open connections"
        )["http"]["connections"]
        assert stats["health_answered_at_limit"] == 3 and stats["refused"] >= HEALTH_SLOTS + 1
    finally:
        assert server.stop() == 0, server.log()


def test_still_serving(srv: ServerProcess, short: ServerProcess, guarded: ServerProcess) -> None:
    """Whatever this worker's share of the tests above did to them, the servers still answer.
    (The counters each refusal must move are asserted by the test that made it.)"""
    for server in (srv, short, guarded):
        with urllib.request.urlopen(f"{server.http_url}/healthz", timeout=60) as resp:
            assert resp.status == 200


async def intake_app(
    tmp_path: Path,
    receive: str = "",
    http: str = "",
    consume_hook: Callable[[LogBatch], Awaitable[None]] | None = None,
) -> tuple[App, int]:
    """A started in-process App with only the HTTP intake (its port), for tests that put it in
    states a server process cannot be held in (shutdown begun, a consumer held); `receive` and
    `http`: more keys of those sections (JSON5)."""
    http_port = free_port()
    config = parse_config(
        f"""{{receive: {{grpc: {{enabled: false}}, http: {{endpoint: "127.0.0.1:{http_port}", {http}}}, {receive}}},
              state: {{data_dir: "{tmp_path}"}}, control: {{enabled: false}},
              registry: {{enabled: false}}, correlate: {{enabled: false}}}}"""
    )
    app = App(config, consume_hook=consume_hook)
    await app.start()
    return app, http_port


@pytest.mark.parametrize(
    ("path", "kind", "content_type"),
    [("/v1/logs", "http", "application/json"), ("/v1/ingest", "ndjson", "application/x-ndjson")],
)
async def test_a_request_while_shutting_down_is_503_before_its_body(
    tmp_path: Path, path: str, kind: str, content_type: str
) -> None:
    """Once the intake stops serving, a request that expects 100-continue is answered 503 with
    Retry-After at once, on its headers (it was told 100 Continue and uploaded its body to
    /v1/ingest first, only to be refused), and counted as unavailable."""
    app, http_port = await intake_app(tmp_path)
    try:
        app.http.serving = False  # what shutdown does first
        head = EXPECT_HEAD.format(path=path, content_type=content_type, length=10, extra="")

        def first_head() -> bytes:
            with socket.create_connection(("127.0.0.1", http_port), timeout=30) as sock:
                sock.sendall(head.encode())
                return read_head(sock)[0]

        first = (await asyncio.to_thread(first_head)).lower()
    finally:
        await app.shutdown()
    assert first.startswith(b"http/1.1 503 "), first
    assert b"retry-after: 1" in first and b"connection: close" in first
    counts = app.pipeline.stats.as_dict()["requests"][kind]  # type: ignore[index]
    assert counts.get("unavailable") == 1, counts


async def test_a_body_cut_short_by_shutdown_is_503_unavailable(tmp_path: Path) -> None:
    """NDJSON streaming in when shutdown begins: the lines before are accepted, the answer is
    503 + Retry-After saying where reading stopped, counted unavailable (not queue_full: the
    queue was not full, and an operator reading the counters would look for the wrong cause)."""
    app, http_port = await intake_app(tmp_path)
    body = GOOD_NDJSON * 3
    head = EXPECT_HEAD.format(
        path="/v1/ingest", content_type="application/x-ndjson", length=len(body), extra=""
    )
    try:
        with socket.create_connection(("127.0.0.1", http_port), timeout=30) as sock:
            await asyncio.to_thread(sock.sendall, head.encode())
            first, _ = await asyncio.to_thread(read_head, sock)
            assert first == b"HTTP/1.1 100 Continue"  # the headers passed
            app.http.serving = False  # shutdown begins while the body comes
            await asyncio.to_thread(sock.sendall, body)
            answer = await asyncio.to_thread(read_response, sock)
    finally:
        await app.shutdown()
    head_part, _, text = answer.partition(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in head_part.lower()
    assert json.loads(text)["error"].startswith("via-otlp is shutting down")
    counts = app.pipeline.stats.as_dict()["requests"]["ndjson"]  # type: ignore[index]
    assert counts.get("unavailable") == 1 and not counts.get("queue_full"), counts


async def test_lines_read_before_shutdown_are_accepted(tmp_path: Path) -> None:
    """Lines parsed before shutdown began are handed on, not dropped: the answer's `accepted` is
    the line it says reading stopped after. (They sat in a batch not yet full and were lost
    while the answer said they had been read.)"""
    app, http_port = await intake_app(tmp_path)
    parser = app.http._ndjson
    parse = parser.parse

    async def parse_then_shut(*args: Any) -> Any:
        out = await parse(*args)
        app.http.serving = False  # shutdown begins once the first lines are parsed
        return out

    parser.parse = parse_then_shut  # type: ignore[method-assign,assignment]
    line = b'{"body": "' + b"x" * 1000 + b'", "service": "cut"}\n'  # long: fewer than a batch
    body = line * 400  # more than one parse's worth (256 KiB)
    head = EXPECT_HEAD.format(
        path="/v1/ingest", content_type="application/x-ndjson", length=len(body), extra=""
    )
    try:
        with socket.create_connection(("127.0.0.1", http_port), timeout=30) as sock:
            await asyncio.to_thread(sock.sendall, head.encode())
            first, _ = await asyncio.to_thread(read_head, sock)
            assert first == b"HTTP/1.1 100 Continue"
            await asyncio.to_thread(sock.sendall, body)
            answer = await asyncio.to_thread(read_response, sock)
    finally:
        await app.shutdown()
    assert answer.startswith(b"HTTP/1.1 503 ")
    said = json.loads(answer.partition(b"\r\n\r\n")[2])
    read = int(said["error"].split("lines after ")[1].split()[0])
    assert 0 < read <= 400 and said["accepted"] == read, said
    assert app.pipeline.stats.records_consumed == read


async def post_to_a_held_queue(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    lines: list[bytes],
    started: Callable[[App], None] = lambda app: None,
) -> tuple[App, int, dict[str, Any]]:
    """POST `lines` (gzipped) to /v1/ingest of a real app whose queue holds 300 records, whose
    consumer is held on its first batch until the answer is in and whose flushes wait 0.5 s for
    room; `started` sees the app before the POST. Returns the app (shut down), code and answer."""
    monkeypatch.setattr(http_server, "NDJSON_ROOM_TIMEOUT", 0.5)  # how long a flush waits for room
    held = asyncio.Event()

    async def hold(batch: LogBatch) -> None:
        await held.wait()

    # A flush per parse (every 256 KiB inflated: gzip comes in 64 KiB pieces); the first goes
    # into the empty queue, the second finds no room for its lines while the first is held.
    app, http_port = await intake_app(
        tmp_path, "queue_max_records: 300, ndjson_batch_records: 100", consume_hook=hold
    )
    started(app)
    body = gzip.compress(b"\n".join(lines) + b"\n", 1)
    try:
        code, out = await asyncio.to_thread(
            http_post,
            f"http://127.0.0.1:{http_port}/v1/ingest",
            body,
            "application/x-ndjson",
            **{"Content-Encoding": "gzip"},
        )
    finally:
        held.set()
        await app.shutdown()
    return app, code, json.loads(out)


async def test_a_full_queue_answer_says_which_lines_were_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue fills (a real bound: `queue_max_records`, its consumer held on the first batch)
    between two flushes of one NDJSON body: the 503 says lines after the last flush that went
    through were not accepted, and `accepted` is exactly those lines. (It said reading stopped
    after every line parsed, the failed flush's too: a sender resuming there lost them.)"""
    lines = [b'{"body": "%s", "service": "full"}' % (b"x" * 1000) for _ in range(400)]
    lines[350] = b"not json"  # a bad line among those not taken is not reported either
    app, code, said = await post_to_a_held_queue(tmp_path, monkeypatch, lines)
    assert code == 503 and said["error"].startswith("intake queue stayed full"), said
    taken = int(said["error"].split("lines after ")[1].split()[0])
    assert 0 < taken < 350 and said["accepted"] == taken, said
    assert said["rejected"] == 0 and said["errors"] == [], said
    assert app.pipeline.stats.records_consumed == taken
    counts = app.pipeline.stats.as_dict()
    assert counts["records"]["ndjson"] == {"accepted": taken}, counts  # type: ignore[index]


async def test_a_wait_for_room_ended_by_shutdown_is_answered_as_shutdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush waiting for room when shutdown begins: the 503 says the service is stopping and
    counts the request unavailable, not "queue stayed full" (an operator would look for a
    capacity problem that is not there); the lines it names as taken are still exact."""
    apps: list[App] = []
    wait_for_room = RecordQueue.wait_for_room

    async def stop_while_waiting(queue: RecordQueue, records: int) -> None:
        if not queue.has_room(records):
            apps[0].http.serving = False  # shutdown begins while this flush waits for room
        await wait_for_room(queue, records)

    monkeypatch.setattr(RecordQueue, "wait_for_room", stop_while_waiting)
    lines = [b'{"body": "%s", "service": "stopping"}' % (b"x" * 1000) for _ in range(400)]
    app, code, said = await post_to_a_held_queue(tmp_path, monkeypatch, lines, apps.append)
    assert code == 503 and said["error"].startswith("via-otlp is shutting down"), said
    taken = int(said["error"].split("lines after ")[1].split()[0])
    assert 0 < taken < 400 and said["accepted"] == taken, said
    counts = app.pipeline.stats.as_dict()["requests"]["ndjson"]  # type: ignore[index]
    assert counts.get("unavailable") == 1 and not counts.get("queue_full"), counts


async def test_a_stalled_body_answer_says_which_lines_were_taken(tmp_path: Path) -> None:
    """A body that stalls after lines parsed but not yet handed on (fewer than a batch): the 408
    says lines after the last flush were not accepted, not lines after the last parsed one."""
    app, http_port = await intake_app(tmp_path, http="body_read_timeout: 0.5")
    line = b'{"body": "' + b"x" * 1000 + b'", "service": "stalled"}\n'
    sent = line * 300  # more than one parse's worth (256 KiB), fewer than a batch of records
    head = (
        "POST /v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
        f"Content-Length: {len(sent) * 2}\r\n\r\n"
    )
    try:
        with socket.create_connection(("127.0.0.1", http_port), timeout=30) as sock:
            await asyncio.to_thread(sock.sendall, head.encode() + sent)  # and the rest never comes
            answer = await asyncio.to_thread(read_response, sock)
    finally:
        await app.shutdown()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    said = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert said["error"].endswith("lines after 0 were not accepted"), said
    assert said["accepted"] == 0 and app.pipeline.stats.records_consumed == 0


async def test_a_flush_sent_on_is_answered_however_long_the_shards_take(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush that found room is answered once the shards have its records, even when that
    takes longer than the wait for room may: the timeout covered the whole hand-over, so it
    answered 503 "not accepted" of records that went on, and a sender's retry sent them twice.
    (The shards are held still with SIGSTOP, never by timing.)"""
    monkeypatch.setattr(http_server, "NDJSON_ROOM_TIMEOUT", 0.2)
    app, http_port = await intake_app(tmp_path)
    pool = app.pool
    assert pool is not None
    pids = [s.pid for s in pool.status()]
    body = b'{"body": "sent on", "service": "held"}\n' * 5
    url = f"http://127.0.0.1:{http_port}/v1/ingest"
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            post = asyncio.ensure_future(
                asyncio.to_thread(http_post, url, body, "application/x-ndjson")
            )
            await until(lambda: pool.queued_bytes > 0)  # sent to a shard, which is held
            await asyncio.sleep(2 * http_server.NDJSON_ROOM_TIMEOUT)  # the old bound is past
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        code, out = await post
        await asyncio.wait_for(pool.wait_idle(), 60)
    finally:
        await app.shutdown()
    assert code == 200 and json.loads(out)["accepted"] == 5, out
    assert app.pipeline.stats.records_consumed == 5
