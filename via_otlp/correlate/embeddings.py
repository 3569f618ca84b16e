"""Templates → vectors: deterministic feature hashing (default), or an OpenAI-compatible server.

The vector space is tied to the provider, the model and the dimension (`EmbeddingSpace`); it
names the Qdrant collection, so vectors of different spaces are never compared.

`HashingEmbedder` needs no network: word unigrams, word bigrams and character trigrams of the
template (variables such as ``<*>`` and bare numbers dropped) are hashed with a sign into a
fixed-dimension vector, then L2-normalised. Templates that share words land close together.

>>> e = HashingEmbedder(64)
>>> v = e.embed_sync(["connection refused to <*>", "connection refused to <*>:<*>", "user logged in"])
>>> round(float(v[0] @ v[1]), 3), bool(v[0] @ v[2] < 0.5)
(1.0, True)

`OpenAIEmbedder` posts batches to ``{url}/embeddings`` (LM Studio, vLLM, Ollama, OpenAI...)
with a timeout per request and jittered retries of what can pass (429, 5xx, timeouts, refused
connections), honouring Retry-After.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import numpy as np
import xxhash

from via_otlp.backoff import Backoff, backoff_delay, parse_retry_after
from via_otlp.correlate.config import EmbeddingsConfig
from via_otlp.errors import UpstreamError
from via_otlp.redact import redact_url

HASHING_MODEL = "fh1"
"""The version of the hashing features; change it when `_features` changes (new space)."""

_MASK_RE = re.compile(r"<[^<>\s]{0,24}>")
_TOKEN_RE = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True, slots=True)
class EmbeddingSpace:
    """Provider + model + dimension: vectors are comparable only within one space."""

    provider: str
    model: str
    dimension: int

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.model}/{self.dimension}"

    def collection(self, prefix: str) -> str:
        """The Qdrant collection of this space, e.g. ``via_episodes_hashing-fh1-256_1a2b3c4d``."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.key.lower()).strip("-")[:48]
        return f"{prefix}_{slug}_{xxhash.xxh32_hexdigest(self.key.encode())}"


class Embedder(Protocol):
    """Turns texts into unit vectors of one `space`."""

    @property
    def space(self) -> EmbeddingSpace: ...

    @property
    def local(self) -> bool:
        """True when embedding is pure computation that cannot fail (no I/O)."""
        ...

    async def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    async def close(self) -> None: ...


def normalise_rows(m: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)


def _features(text: str) -> list[tuple[bytes, float]]:
    words = _TOKEN_RE.findall(_MASK_RE.sub(" ", text.lower()))
    feats: list[tuple[bytes, float]] = [(b"w:" + w.encode(), 1.0) for w in words]
    feats += [(f"b:{a} {b}".encode(), 0.7) for a, b in itertools.pairwise(words)]
    for w in words:
        if len(w) < 4:
            continue
        padded = f"#{w}#"
        grams = [padded[i : i + 3] for i in range(len(padded) - 2)]
        weight = 0.6 / len(grams) ** 0.5
        feats += [(b"c:" + g.encode(), weight) for g in grams]
    return feats


class HashingEmbedder:
    """Deterministic feature hashing into `dimension` signed buckets, L2-normalised."""

    def __init__(self, dimension: int = 256) -> None:
        if dimension < 8:
            raise ValueError(f"dimension must be >= 8, got {dimension}")
        self.dimension = dimension
        self._space = EmbeddingSpace("hashing", HASHING_MODEL, dimension)

    @property
    def space(self) -> EmbeddingSpace:
        return self._space

    @property
    def local(self) -> bool:
        return True

    def embed_one(self, text: str) -> np.ndarray:
        vec = np.zeros(self.dimension, dtype=np.float32)
        feats = _features(text)
        if not feats:
            return vec
        hashes = np.fromiter(
            (xxhash.xxh3_64_intdigest(f) for f, _ in feats), dtype=np.uint64, count=len(feats)
        )
        weights = np.fromiter((w for _, w in feats), dtype=np.float32, count=len(feats))
        signs = np.where((hashes >> np.uint64(63)) == 1, -1.0, 1.0).astype(np.float32)
        np.add.at(vec, (hashes % np.uint64(self.dimension)).astype(np.int64), weights * signs)
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm > 0 else vec

    def embed_sync(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = self.embed_one(text)
        return out

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_sync(texts)

    async def close(self) -> None:
        return None


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/v1/embeddings`` endpoint, over aiohttp, batched and retried."""

    def __init__(self, config: EmbeddingsConfig, *, rng: random.Random | None = None) -> None:
        if not config.url or not config.model:
            raise ValueError("the openai embeddings provider needs a url and a model")
        self._config = config
        base = config.url.rstrip("/")
        self._endpoint = base if base.endswith("/embeddings") else base + "/embeddings"
        self._shown = redact_url(self._endpoint)  # for messages: no credentials
        self._space = EmbeddingSpace("openai", config.model, config.dimension)
        self._rng = rng or random.Random()
        self._backoff = Backoff.capped(config.retry.initial_backoff, config.retry.max_backoff)
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0
        self.retries = 0

    @property
    def space(self) -> EmbeddingSpace:
        return self._space

    @property
    def local(self) -> bool:
        return False

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors for `texts`, in order; `UpstreamError` when the server cannot give them."""
        out = np.zeros((len(texts), self._space.dimension), dtype=np.float32)
        size = self._config.batch_size
        for start in range(0, len(texts), size):
            batch = list(texts[start : start + size])
            out[start : start + len(batch)] = await self._with_retry(batch)
        return out

    async def _with_retry(self, batch: list[str]) -> np.ndarray:
        retry = self._config.retry
        attempt = 0
        while True:
            try:
                return await self._request(batch)
            except UpstreamError as exc:
                attempt += 1
                if not exc.retryable or attempt >= retry.max_attempts:
                    raise
                delay = getattr(exc, "retry_after", None)
                if delay is None:
                    delay = backoff_delay(attempt - 1, self._backoff, self._rng)
                self.retries += 1
                await asyncio.sleep(min(delay, retry.max_backoff))

    def _session_for_use(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._config.timeout)
            )
        return self._session

    async def _request(self, batch: list[str]) -> np.ndarray:
        headers = {"Content-Type": "application/json"}
        if self._config.api_key:
            headers["Authorization"] = f"Bearer {self._config.api_key}"
        body = {"model": self._config.model, "input": batch, "encoding_format": "float"}
        self.requests += 1
        try:
            async with self._session_for_use().post(
                self._endpoint, json=body, headers=headers
            ) as resp:
                if resp.status != 200:
                    text = (await resp.text())[:200]
                    raise _status_error(resp.status, text, resp.headers.get("Retry-After"))
                payload = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise UpstreamError(
                f"embeddings: {self._shown} unreachable: {type(exc).__name__}: {exc}",
                retryable=True,
                hint="is the embeddings server up? episodes wait and are embedded later",
            ) from exc
        return self._parse(payload, len(batch))

    def _parse(self, payload: Any, n: int) -> np.ndarray:
        try:
            items = sorted(payload["data"], key=lambda d: int(d.get("index", 0)))
            vectors = np.asarray([d["embedding"] for d in items], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise UpstreamError(
                f"embeddings: malformed response from {self._shown}: {exc!r}", retryable=False
            ) from None
        if vectors.ndim != 2 or vectors.shape[0] != n:
            raise UpstreamError(
                f"embeddings: asked for {n} vectors, got shape {vectors.shape}", retryable=False
            )
        if vectors.shape[1] != self._space.dimension:
            raise UpstreamError(
                f"embeddings: model {self._config.model!r} returns {vectors.shape[1]} dimensions, "
                f"correlate.embeddings.dimension is {self._space.dimension}",
                retryable=False,
                hint="set correlate.embeddings.dimension to the model's dimension",
            )
        return normalise_rows(vectors)


class _RetryableStatus(UpstreamError):
    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message, retryable=True)
        self.retry_after = retry_after


def _status_error(status: int, text: str, retry_after: str | None) -> UpstreamError:
    message = f"embeddings: HTTP {status}: {text}"
    if status in (408, 429) or status >= 500:
        return _RetryableStatus(message, parse_retry_after(retry_after))
    return UpstreamError(
        message, retryable=False, hint="check correlate.embeddings url, model and api_key"
    )


def make_embedder(config: EmbeddingsConfig) -> HashingEmbedder | OpenAIEmbedder:
    """The embedder the configuration asks for."""
    if config.provider == "openai":
        return OpenAIEmbedder(config)
    return HashingEmbedder(config.dimension)
