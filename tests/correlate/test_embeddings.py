"""Embeddings: the hashing provider (pure), and the openai provider against a small
OpenAI-compatible HTTP server started here. (An LM Studio server cannot run in this
environment; the server below speaks the same `/v1/embeddings` protocol.)"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import pytest
from aiohttp import web

from tests.conftest import CLIENT_TIMEOUT
from tests.correlate.conftest import ev, src
from via_otlp.correlate.config import CorrelateConfig, EmbeddingsConfig, EmbeddingsRetryConfig
from via_otlp.correlate.embeddings import EmbeddingSpace, HashingEmbedder, OpenAIEmbedder
from via_otlp.correlate.service import Correlation, ProviderState
from via_otlp.errors import UpstreamError

DIM = 16


def test_hashing_is_deterministic_unit_and_sane() -> None:
    e = HashingEmbedder(128)
    texts = [
        "connection pool exhausted on primary after <*> waiters",
        "connection pool exhausted on replica after <*> waiters",
        "user <*> logged in from <*>",
        "",
    ]
    a, b = e.embed_sync(texts), HashingEmbedder(128).embed_sync(texts)
    assert np.array_equal(a, b)
    assert np.allclose(np.linalg.norm(a[:3], axis=1), 1.0) and not a[3].any()
    assert a[0] @ a[1] > 0.7 and abs(a[0] @ a[2]) < 0.3
    assert e.embed_one("Disk FULL on 10.0.0.1") @ e.embed_one("disk full on <*>") > 0.99


def test_spaces_name_distinct_collections() -> None:
    a = EmbeddingSpace("hashing", "fh1", 256).collection("via")
    assert a == EmbeddingSpace("hashing", "fh1", 256).collection("via")
    assert a != EmbeddingSpace("hashing", "fh1", 128).collection("via")
    assert a != EmbeddingSpace("openai", "fh1", 256).collection("via")
    assert EmbeddingSpace("openai", "a/b", 8).collection("p") != EmbeddingSpace(
        "openai", "a-b", 8
    ).collection("p")


@dataclass
class FakeServer:
    """An OpenAI-compatible /v1/embeddings: hashing vectors, with scripted failures."""

    url: str = ""
    fail_next: list[int] = field(default_factory=list)  # statuses to answer before succeeding
    down: bool = False
    delay: float = 0.0
    batches: list[int] = field(default_factory=list)
    dim: int = DIM

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            return web.json_response({"error": "loading model"}, status=503)
        if self.fail_next:
            return web.json_response(
                {"error": "busy"}, status=self.fail_next.pop(0), headers={"Retry-After": "0"}
            )
        assert request.headers.get("Authorization") == "Bearer sk-test"
        inputs = body["input"]
        self.batches.append(len(inputs))
        vecs = HashingEmbedder(max(8, self.dim)).embed_sync(inputs)[:, : self.dim] * 3.0
        data = [
            {"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vecs)
        ]
        return web.json_response({"object": "list", "data": data[::-1], "model": body["model"]})


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    fake = FakeServer()
    app = web.Application()
    app.router.add_post("/v1/embeddings", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}/v1"
    yield fake
    await runner.cleanup()


def openai_config(url: str, **kw: object) -> EmbeddingsConfig:
    values: dict[str, object] = {
        "provider": "openai", "url": url, "model": "nomic-embed-text", "api_key": "sk-test",
        "dimension": DIM, "timeout": 2.0, "batch_size": 3, "retry_interval": 0.05,
        "retry": EmbeddingsRetryConfig(max_attempts=3, initial_backoff=0.01, max_backoff=0.05),
    }  # fmt: skip
    values.update(kw)
    return EmbeddingsConfig(**values)  # type: ignore[arg-type]


async def test_openai_batches_orders_and_normalises(server: FakeServer) -> None:
    emb = OpenAIEmbedder(openai_config(server.url))
    try:
        texts = [f"error number {w} happened" for w in "abcdefg"]
        out = await emb.embed(texts)
    finally:
        await emb.close()
    assert server.batches == [3, 3, 1]
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0)
    expected = HashingEmbedder(DIM).embed_sync(texts)
    assert np.allclose(out, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5)
    assert emb.space.key == f"openai/nomic-embed-text/{DIM}"


async def test_openai_retries_503_and_429(server: FakeServer) -> None:
    server.fail_next = [503, 429]
    emb = OpenAIEmbedder(openai_config(server.url))
    try:
        out = await emb.embed(["x y z"])
    finally:
        await emb.close()
    assert out.shape == (1, DIM) and emb.retries == 2


async def test_openai_gives_up_and_classifies(server: FakeServer) -> None:
    server.down = True
    emb = OpenAIEmbedder(openai_config(server.url))
    with pytest.raises(UpstreamError) as info:
        await emb.embed(["a"])
    assert info.value.retryable and emb.requests == 3
    server.down = False
    server.fail_next = [400]
    with pytest.raises(UpstreamError) as info:
        await emb.embed(["a"])
    assert not info.value.retryable
    server.dim = DIM + 4  # wrong dimension: a configuration error, not retried
    with pytest.raises(UpstreamError, match="dimension"):
        await emb.embed(["a"])
    await emb.close()


async def test_openai_timeout(server: FakeServer) -> None:
    server.delay = 1.0
    emb = OpenAIEmbedder(
        openai_config(server.url, timeout=0.2, retry=EmbeddingsRetryConfig(max_attempts=1))
    )
    with pytest.raises(UpstreamError, match="unreachable") as info:
        await emb.embed(["a"])  # the server would answer after 1 s: the 0.2 s timeout fired
    assert info.value.retryable
    await emb.close()


async def test_provider_down_delays_embedding_without_blocking(
    server: FakeServer, tmp_path
) -> None:
    server.down = True
    config = CorrelateConfig(enabled=True, embeddings=openai_config(server.url), resolve_cooldown=0)
    corr = Correlation(config, tmp_path, use_store=False)
    await corr.start()
    try:
        assert not inspect.iscoroutinefunction(corr.submit)  # submit never waits: it queues
        corr.submit([ev("a", src("db"), template="pool exhausted")])
        assert await corr.flush(CLIENT_TIMEOUT)
        corr.submit([ev("b", src("db"), t=5, template="pool exhausted again")])
        assert await corr.flush(CLIENT_TIMEOUT)
        s = corr.stats()
        assert s.provider is ProviderState.DOWN and s.embed_delayed == 2 and s.embed_pending == 2
        assert s.correlator.episodes_seen == 2 and s.correlator.open_incidents == 1  # went on
        server.down = False
        for _ in range(100):
            if corr.stats().embed_pending == 0:
                break
            await asyncio.sleep(0.05)
        s = corr.stats()
        assert s.provider is ProviderState.OK and s.embed_recovered == 2 and s.embed_pending == 0
    finally:
        await corr.shutdown()
