"""The vector store: one Qdrant collection per embedding space, holding every episode.

A Qdrant server by URL, or Qdrant's local on-disk mode (in-process, no server) under the data
directory. qdrant-client is blocking, so every call runs on one dedicated worker thread (one
thread also keeps local mode's SQLite happy) and the event loop never waits on it.

Writes are write-behind, like the registry's: `upsert` and `set_incident` only append to a
bounded queue (full → dropped, counted, logged once) and never wait; one task writes batches.
When a Qdrant server is away, writes wait in the queue and are retried with jittered backoff;
an error no retry can fix is counted and the batch dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import xxhash

from via_otlp.backoff import Backoff
from via_otlp.correlate.config import QdrantConfig
from via_otlp.correlate.embeddings import EmbeddingSpace
from via_otlp.correlate.model import SimilarEpisode
from via_otlp.errors import StartupError, UpstreamError
from via_otlp.model import AnomalyEvent
from via_otlp.redact import redact_url
from via_otlp.writebehind import WriteBehind

log = logging.getLogger(__name__)

T = TypeVar("T")


class StoreState(enum.StrEnum):
    NEW = "new"
    OK = "ok"
    DEGRADED = "degraded"  # Qdrant unreachable: writes wait in the queue
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class VectorStoreStats:
    state: StoreState
    collection: str
    mode: str  # "local" or the server URL
    queued: int
    upserted: int
    dropped: int
    failed: int
    last_error: str


@dataclass(frozen=True, slots=True)
class EpisodePoint:
    """One episode's vector and payload, as stored."""

    episode_id: str
    vector: np.ndarray
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _SetPayload:
    episode_ids: tuple[str, ...]
    payload: dict[str, Any]


_Op = EpisodePoint | _SetPayload


def point_id(episode_id: str) -> str:
    """The Qdrant point id of an episode: a UUID made from a hash of the episode id."""
    return str(uuid.UUID(bytes=xxhash.xxh3_128_digest(episode_id.encode())))


def episode_payload(event: AnomalyEvent, incident_id: str) -> dict[str, Any]:
    """What is stored beside an episode's vector (filterable, and shown by SearchSimilar)."""
    return {
        "episode_id": event.episode_id,
        "incident_id": incident_id,
        "source": event.source.key,
        "service": event.source.service_name,
        "kind": event.kind.value,
        "state": event.state.value,
        "template": event.template,
        "template_id": event.template_id,
        "rhythm_hash": event.rhythm_hash,
        "severity": event.severity,
        "started_ns": event.started_ns,
        "ended_ns": event.ended_ns,
        "time_ns": event.time_ns,
        "score": float(event.score),
    }


def _is_retryable(exc: BaseException) -> bool:
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(exc, UnexpectedResponse):
        code = exc.status_code or 0
        return code in (408, 429) or code >= 500
    if isinstance(exc, ResponseHandlingException | OSError | TimeoutError | ConnectionError):
        return True
    name = type(exc).__name__
    return name in ("ConnectError", "ReadTimeout", "ConnectTimeout", "RemoteProtocolError") or (
        type(exc).__module__.startswith("grpc")
    )


class VectorStore:
    """Episode vectors of one embedding space in Qdrant (server or local on-disk mode)."""

    def __init__(self, config: QdrantConfig, data_dir: str | Path, space: EmbeddingSpace) -> None:
        self.config = config
        self.space = space
        self.collection = space.collection(config.collection_prefix)
        self.path = Path(data_dir) / config.path
        self._client: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._queue: WriteBehind[_Op] = WriteBehind(
            self._write,
            retryable=lambda exc: isinstance(exc, UpstreamError) and exc.retryable,
            capacity=config.queue_size,
            batch_size=config.batch_size,
            interval=0.2,
            backoff=Backoff.capped(0.1, config.retry_max_backoff),
            upstream="Qdrant",
            what="correlate: vector writes",
            task_name="via-qdrant-writer",
        )
        self._ready = False
        self._started = False
        self._upserted = 0

    @property
    def mode(self) -> str:
        """ "local", or the server's URL without credentials (it is shown in status and errors)."""
        return redact_url(self.config.url) if self.config.url else "local"

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the client and make sure the collection exists; a second call is a no-op.

        Local mode that cannot open its folder is a `StartupError`; an unreachable server only
        makes the store `degraded` (it keeps trying).
        """
        if self._executor is not None:
            return
        self._started = True
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="via-qdrant")
        try:
            self._client = await self._run(self._connect)
            await self._ensure()
        except UpstreamError as exc:
            if not exc.retryable:
                await self.shutdown()
                raise StartupError(
                    f"correlate: cannot use Qdrant ({self.mode}): {exc.message}",
                    hint="check correlate.qdrant, or set correlate.enabled to false",
                ) from exc
            self._queue.note_outage(exc)
        except BaseException as exc:
            await self.shutdown()
            raise StartupError(
                f"correlate: cannot open Qdrant ({self.mode}): {exc}",
                hint="another via-otlp may hold the local Qdrant folder; use a server URL to share",
            ) from exc
        self._queue.start()

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Write what is queued (within `timeout`), close; idempotent, safe without start."""
        if await self._queue.shutdown(timeout):
            self._queue.discard()  # counted as dropped: nothing will write them
        client, self._client = self._client, None
        executor, self._executor = self._executor, None
        if executor is not None:
            if client is not None:
                with contextlib.suppress(Exception):
                    await asyncio.get_running_loop().run_in_executor(executor, client.close)
            executor.shutdown(wait=False)

    def _connect(self) -> Any:
        from qdrant_client import QdrantClient

        if self.config.url:
            return QdrantClient(
                url=self.config.url,
                api_key=self.config.api_key or None,
                timeout=max(1, round(self.config.timeout)),
                check_compatibility=False,
            )
        self.path.mkdir(parents=True, exist_ok=True)
        return QdrantClient(path=str(self.path))

    async def _ensure(self) -> None:
        if self._client is None:  # Qdrant was away at start: connect now
            self._client = await self._run(self._connect)
        await self._run(self._ensure_sync)
        self._ready = True

    def _ensure_sync(self) -> None:
        from qdrant_client import models

        client = self._client
        if client.collection_exists(self.collection):
            info = client.get_collection(self.collection)
            size = getattr(info.config.params.vectors, "size", None)
            if size is not None and size != self.space.dimension:
                raise UpstreamError(
                    f"collection {self.collection} holds {size}-dimensional vectors, "
                    f"the embedding space {self.space.key} has {self.space.dimension}",
                    retryable=False,
                )
            return
        client.create_collection(
            self.collection,
            vectors_config=models.VectorParams(
                size=self.space.dimension, distance=models.Distance.COSINE
            ),
            metadata={"via.embedding_space": self.space.key},
        )
        if self.config.url:  # local mode has no payload indexes
            for name, schema in (
                ("episode_id", models.PayloadSchemaType.KEYWORD),
                ("incident_id", models.PayloadSchemaType.KEYWORD),
                ("source", models.PayloadSchemaType.KEYWORD),
                ("started_ns", models.PayloadSchemaType.INTEGER),
            ):
                client.create_payload_index(self.collection, name, field_schema=schema)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking qdrant-client call on the store's thread; errors become UpstreamError."""
        if self._executor is None:
            raise UpstreamError("the vector store is not running", retryable=False)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except UpstreamError:
            raise
        except Exception as exc:
            raise UpstreamError(
                f"Qdrant ({self.mode}): {type(exc).__name__}: {exc}",
                retryable=_is_retryable(exc),
                hint="Qdrant is unreachable; retry later" if _is_retryable(exc) else "",
            ) from exc

    # -- writes (never wait) -------------------------------------------------------------------

    def upsert(self, point: EpisodePoint) -> bool:
        """Queue an episode's vector and payload; False when the queue is full (counted)."""
        return self._queue.add(point)

    def set_payload(self, episode_ids: Sequence[str], payload: dict[str, Any]) -> bool:
        """Queue a payload change of stored episodes (their incident after a merge, their end)."""
        if not episode_ids:
            return True
        return self._queue.add(_SetPayload(tuple(episode_ids), dict(payload)))

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written (or dropped); False on timeout."""
        return await self._queue.flush(timeout)

    @property
    def state(self) -> StoreState:
        if self._executor is None:
            return StoreState.CLOSED if self._started else StoreState.NEW
        return StoreState.DEGRADED if self._queue.degraded else StoreState.OK

    def stats(self) -> VectorStoreStats:
        q = self._queue
        return VectorStoreStats(
            state=self.state,
            collection=self.collection,
            mode=self.mode,
            queued=q.buffered,
            upserted=self._upserted,
            dropped=q.dropped,
            failed=q.failed,
            last_error=q.last_error,
        )

    async def _write(self, batch: list[_Op]) -> None:
        """Write one batch (connecting and creating the collection first if that failed before)."""
        if not self._ready:
            await self._ensure()
        await self._run(self._write_sync, batch)
        self._upserted += sum(1 for op in batch if isinstance(op, EpisodePoint))

    def _write_sync(self, batch: list[_Op]) -> None:
        from qdrant_client import models

        points: dict[str, models.PointStruct] = {}

        def flush_points() -> None:
            if points:
                self._client.upsert(self.collection, points=list(points.values()), wait=True)
                points.clear()

        for op in batch:
            if isinstance(op, EpisodePoint):
                pid = point_id(op.episode_id)
                points.pop(pid, None)  # latest wins, in order
                points[pid] = models.PointStruct(
                    id=pid, vector=op.vector.astype(np.float32).tolist(), payload=op.payload
                )
            else:
                flush_points()
                self._client.set_payload(
                    self.collection,
                    payload=op.payload,
                    points=[point_id(e) for e in op.episode_ids],
                    wait=True,
                )
        flush_points()

    # -- reads -----------------------------------------------------------------------------------

    async def get_vector(self, episode_id: str) -> np.ndarray | None:
        """The stored vector of an episode, or None if it is not stored (yet)."""
        records = await self._run(self._retrieve_sync, episode_id)
        if not records or records[0].vector is None:
            return None
        vec = records[0].vector
        return np.asarray(vec, dtype=np.float32)

    def _retrieve_sync(self, episode_id: str) -> Any:
        return self._client.retrieve(self.collection, ids=[point_id(episode_id)], with_vectors=True)

    async def search(
        self,
        vector: np.ndarray,
        *,
        limit: int = 10,
        exclude_episode_ids: Sequence[str] = (),
        exclude_incident_id: str = "",
        before_ns: int | None = None,
    ) -> list[SimilarEpisode]:
        """The stored episodes nearest to `vector` (cosine), most similar first."""
        points = await self._run(
            self._query_sync,
            np.asarray(vector, dtype=np.float32).tolist(),
            max(1, limit),
            tuple(exclude_episode_ids),
            exclude_incident_id,
            before_ns,
        )
        out = []
        for p in points:
            pl = p.payload or {}
            out.append(
                SimilarEpisode(
                    episode_id=str(pl.get("episode_id", "")),
                    similarity=float(p.score),
                    incident_id=str(pl.get("incident_id", "")),
                    source=str(pl.get("source", "")),
                    kind=str(pl.get("kind", "")),
                    template=str(pl.get("template", "")),
                    started_ns=int(pl.get("started_ns", 0)),
                    score=float(pl.get("score", 0.0)),
                )
            )
        # Equal similarity (a recurring template): the earlier occurrence first.
        out.sort(key=lambda h: (-round(h.similarity, 6), h.started_ns, h.episode_id))
        return out

    def _query_sync(
        self,
        vector: list[float],
        limit: int,
        exclude: tuple[str, ...],
        exclude_incident: str,
        before_ns: int | None,
    ) -> Any:
        from qdrant_client import models

        must: list[Any] = []
        must_not: list[Any] = []
        if exclude:
            must_not.append(
                models.FieldCondition(key="episode_id", match=models.MatchAny(any=list(exclude)))
            )
        if exclude_incident:
            must_not.append(
                models.FieldCondition(
                    key="incident_id", match=models.MatchValue(value=exclude_incident)
                )
            )
        if before_ns is not None:
            must.append(models.FieldCondition(key="started_ns", range=models.Range(lt=before_ns)))
        flt = (
            models.Filter(must=must or None, must_not=must_not or None)
            if must or must_not
            else None
        )
        return self._client.query_points(
            self.collection, query=vector, query_filter=flt, limit=limit, with_payload=True
        ).points

    async def count(self) -> int:
        result = await self._run(lambda: self._client.count(self.collection, exact=True))
        return int(result.count)
