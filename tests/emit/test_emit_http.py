"""End to end: the Emitter against a real OTLP/HTTP server (aiohttp) on loopback."""

from __future__ import annotations

from via_otlp.emit import VIA_EVENT_NAME, VIA_SCOPE_NAME, Emitter, EmitterState
from via_otlp.model import EpisodeState

from .conftest import HttpServer, fast_config, make_event, wait_until


async def test_protobuf_and_gzip_to_v1_logs_and_traces(http_server: HttpServer) -> None:
    config = fast_config(
        http_server.endpoint, protocol="http", signals="both", headers={"Authorization": "Bearer t"}
    )
    emitter = Emitter(config)
    await emitter.start()
    emitter.submit([make_event("ep-1"), make_event("ep-1", state=EpisodeState.RESOLVED)])
    await emitter.shutdown()

    rec = http_server.rec
    assert set(http_server.content_encodings) == {"gzip"}
    assert all(h["Content-Type"] == "application/x-protobuf" for h in rec.headers)
    assert all(h["Authorization"] == "Bearer t" for h in rec.headers)
    assert [r.event_name for r in rec.log_records] == [VIA_EVENT_NAME] * 2
    assert rec.logs[0].resource_logs[0].scope_logs[0].scope.name == VIA_SCOPE_NAME
    assert len(rec.spans) == 1
    assert emitter.stats().sent == 3


async def test_uncompressed_when_configured(http_server: HttpServer) -> None:
    emitter = Emitter(fast_config(http_server.endpoint, protocol="http", compression="none"))
    await emitter.start()
    emitter.submit([make_event()])
    await emitter.shutdown()
    assert http_server.content_encodings == [""]
    assert len(http_server.rec.log_records) == 1


async def test_503_with_retry_after_is_retried_after_the_delay(http_server: HttpServer) -> None:
    http_server.rec.fail_next(http_status=503, retry_delay=1)
    emitter = Emitter(fast_config(http_server.endpoint, protocol="http"))
    await emitter.start()
    emitter.submit([make_event()])
    await wait_until(lambda: len(http_server.rec.log_records) == 1)
    await emitter.shutdown()
    first, second = http_server.rec.attempts
    assert second - first >= 0.95
    stats = emitter.stats()
    assert (stats.retries, stats.sent, stats.state) == (1, 1, EmitterState.CLOSED)


async def test_429_and_502_are_retried_with_backoff(http_server: HttpServer) -> None:
    http_server.rec.fail_next(http_status=429)
    http_server.rec.fail_next(http_status=502)
    emitter = Emitter(fast_config(http_server.endpoint, protocol="http"))
    await emitter.start()
    emitter.submit([make_event()])
    await wait_until(lambda: len(http_server.rec.log_records) == 1)
    await emitter.shutdown()
    assert emitter.stats().retries == 2


async def test_400_is_permanent(http_server: HttpServer) -> None:
    http_server.rec.fail_next(http_status=400)
    emitter = Emitter(fast_config(http_server.endpoint, protocol="http"))
    await emitter.start()
    emitter.submit([make_event()])
    await emitter.shutdown()
    stats = emitter.stats()
    assert len(http_server.rec.attempts) == 1
    assert (stats.failed_permanent, stats.retries) == (1, 0)
    assert "HTTP 400" in stats.last_error


async def test_connection_refused_is_retryable() -> None:
    from .conftest import free_port

    emitter = Emitter(fast_config(f"http://127.0.0.1:{free_port()}", protocol="http"))
    await emitter.start()
    emitter.submit([make_event()])
    await wait_until(lambda: emitter.stats().retries >= 1)
    await emitter.shutdown(timeout=0.2)
    stats = emitter.stats()
    assert stats.sent == 0
    assert stats.failed_retries_exhausted + stats.dropped_shutdown == 1
