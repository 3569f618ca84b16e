"""`Correlation`: the async correlate stage the app feeds with every admitted anomaly event.

Life cycle: `Correlation(config, data_dir, registry=..., sink=...)` → `await start()` →
`submit(events)` any number of times → `await shutdown(timeout)`. `submit` never blocks and
never raises: it appends to a bounded queue (full → dropped, counted, logged once).

One worker takes batches off the queue: it embeds the templates of episodes it has not seen,
runs the pure `Correlator`, records incident changes in the registry, hands opened and resolved
incidents to the sink (the emitter), and queues the vectors for Qdrant (write-behind, see
`VectorStore`). When a remote embeddings provider fails, the episodes go on without a vector
(so without semantic links) into a bounded retry queue (counted); a retry task embeds them
later, stores them in Qdrant and gives the vector to the correlator for later comparisons.
Nothing waits on the provider except that task and the worker's first failed attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from via_otlp.correlate.config import CorrelateConfig
from via_otlp.correlate.correlator import Correlator, CorrelatorStats
from via_otlp.correlate.embeddings import Embedder, make_embedder
from via_otlp.correlate.model import SimilarIncident, SimilarResult
from via_otlp.correlate.store import EpisodePoint, VectorStore, VectorStoreStats, episode_payload
from via_otlp.errors import InputError, UpstreamError
from via_otlp.lifecycle import stop_tasks
from via_otlp.model import AnomalyEvent, EpisodeState, IncidentEvent, IncidentEventKind

log = logging.getLogger(__name__)

BATCH_MAX = 256
MAX_SEARCH_LIMIT = 100
_VECTOR_CACHE = 4096
_MAX_SHOWN_TRACKED = 10_000  # incidents whose last shown size is remembered


class EpisodeNotFound(InputError):
    """`search_similar` was asked about an episode that has no stored vector (yet)."""


class IncidentSink(Protocol):
    """Where opened and resolved incidents go out (the `Emitter`)."""

    def submit_incidents(self, events: Sequence[IncidentEvent]) -> None: ...


class IncidentRecorder(Protocol):
    """Where every incident change is stored (the `Registry`)."""

    def record_incident(self, event: IncidentEvent) -> bool: ...


class CorrelationState(enum.StrEnum):
    """Where the correlate stage is in its life (`state` of its status)."""

    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class ProviderState(enum.StrEnum):
    OK = "ok"
    DOWN = "down"  # the last embeddings request failed; episodes wait for the retry task


@dataclass(frozen=True, slots=True)
class CorrelationStats:
    """Counters of the correlate stage (`queued` and `embed_pending` are gauges)."""

    state: CorrelationState
    queued: int
    dropped_queue_full: int
    events_processed: int
    incident_events: int
    provider: ProviderState
    embed_delayed: int
    embed_pending: int
    embed_recovered: int
    embed_dropped: int
    embed_failed: int
    last_error: str
    correlator: CorrelatorStats
    store: VectorStoreStats | None
    events_by_kind: dict[str, int] | None = None  # incident events emitted, by kind


def episode_text(event: AnomalyEvent) -> str:
    """What is embedded for an episode: its template (the words that make a failure recognisable)."""
    return event.template or event.explanation


class Correlation:
    """Anomaly events in; incidents out to the registry, the emitter and Qdrant."""

    def __init__(
        self,
        config: CorrelateConfig,
        data_dir: str | Path,
        *,
        registry: IncidentRecorder | None = None,
        sink: IncidentSink | None = None,
        embedder: Embedder | None = None,
        use_store: bool = True,
        clock: Callable[[], int] | None = None,
        tick_interval: float = 1.0,
    ) -> None:
        self.config = config
        self.correlator = Correlator(config)
        self.embedder: Embedder = (
            embedder if embedder is not None else make_embedder(config.embeddings)
        )
        self.store = (
            VectorStore(config.qdrant, data_dir, self.embedder.space) if use_store else None
        )
        self._registry = registry
        self._sink = sink
        self._clock = clock
        self._tick_interval = tick_interval
        self._queue: deque[AnomalyEvent] = deque()
        self._pending: deque[AnomalyEvent] = deque()  # waiting for the embeddings provider
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._state = CorrelationState.NEW
        self._provider = ProviderState.OK
        self._overflow_logged = False
        self._c = {
            "dropped_queue_full": 0, "events_processed": 0, "incident_events": 0,
            "embed_delayed": 0, "embed_recovered": 0, "embed_dropped": 0, "embed_failed": 0,
        }  # fmt: skip
        self._last_error = ""
        # Members of each open incident when its last event went out: an update goes out when
        # the incident has grown since (a member joined, or another incident merged into it).
        self._shown_members: dict[str, int] = {}
        self._emitted: Counter[str] = Counter()

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the vector store and start the workers; a second call is a no-op.

        A start that fails half-way undoes what it started.
        """
        if self._state is not CorrelationState.NEW:
            return
        self._state = CorrelationState.STARTING
        try:
            if self.store is not None:
                await self.store.start()
            self._tasks.append(asyncio.create_task(self._run(), name="via-correlate"))
            if not self.embedder.local:
                self._tasks.append(asyncio.create_task(self._retry_loop(), name="via-embed-retry"))
            if self._clock is not None:
                self._tasks.append(
                    asyncio.create_task(self._tick_loop(), name="via-correlate-tick")
                )
        except BaseException:
            await self.shutdown()
            raise
        self._state = CorrelationState.RUNNING
        log.info(
            "correlate ready (embeddings %s, vectors %s)",
            self.embedder.space.key,
            f"{self.store.mode}: {self.store.collection}" if self.store is not None else "off",
        )

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Correlate what is queued (within `timeout`), stop; idempotent, safe without start."""
        if self._state is CorrelationState.STOPPED:
            return
        self._state = CorrelationState.STOPPING
        self._closing.set()
        self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._tasks:  # the worker drains the queue; the others only wait for work
            await stop_tasks(self._tasks[:1], max(0.0, deadline - loop.time()))
        await stop_tasks(self._tasks)
        self._tasks.clear()
        if self._queue:
            log.warning("correlate: %d anomaly events not correlated at shutdown", len(self._queue))
            self._queue.clear()
        if self.store is not None:
            await self.store.shutdown(max(0.5, deadline - loop.time()))
        with contextlib.suppress(Exception):
            await self.embedder.close()
        self._state = CorrelationState.STOPPED

    # -- intake (never waits) -------------------------------------------------------------------

    def submit(self, events: Sequence[AnomalyEvent]) -> None:
        """Queue admitted anomaly events; never blocks or raises. Overflow is counted, logged once."""
        if not events:
            return
        if self._closing.is_set():
            self._c["dropped_queue_full"] += len(events)
            return
        room = max(0, self.config.queue_size - len(self._queue))
        self._queue.extend(events[:room])
        if room < len(events):
            self._c["dropped_queue_full"] += len(events) - room
            if not self._overflow_logged:
                self._overflow_logged = True
                log.warning("correlate: queue full (%d events), dropping", self.config.queue_size)
        else:
            self._overflow_logged = False
        self._idle.clear()
        self._wake.set()

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is correlated (not yet stored in Qdrant)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def stats(self) -> CorrelationStats:
        c = self._c
        return CorrelationStats(
            state=self._state,
            queued=len(self._queue),
            dropped_queue_full=c["dropped_queue_full"],
            events_processed=c["events_processed"],
            incident_events=c["incident_events"],
            provider=self._provider,
            embed_delayed=c["embed_delayed"],
            embed_pending=len(self._pending),
            embed_recovered=c["embed_recovered"],
            embed_dropped=c["embed_dropped"],
            embed_failed=c["embed_failed"],
            last_error=self._last_error,
            correlator=self.correlator.stats(),
            store=self.store.stats() if self.store is not None else None,
            events_by_kind=dict(self._emitted),
        )

    def snapshot(self) -> dict[str, Any]:
        return self.correlator.snapshot()

    def restore(self, state: dict[str, Any]) -> None:
        self.correlator.restore(state)

    # -- the worker ------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                if self._closing.is_set():
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), BATCH_MAX))]
            try:
                await self._process(batch)
            except Exception as exc:  # a bug must not stop correlation: count it and go on
                log.exception("correlate: failed to process %d events", len(batch))
                self._last_error = f"internal error: {exc!r}"

    async def _process(self, batch: list[AnomalyEvent]) -> None:
        first_seen = [
            e
            for e in dict((e.episode_id, e) for e in batch).values()
            if self.correlator.incident_of(e.episode_id) is None
            and e.episode_id not in self._vectors
        ]
        vectors = await self._embed_now(first_seen)
        out: list[IncidentEvent] = []
        for event in batch:
            out += self.correlator.observe(event, vectors.get(event.episode_id))
            self._c["events_processed"] += 1
        self._handle(out)
        for event in batch:
            self._store_episode(event, vectors.get(event.episode_id))

    async def _embed_now(self, events: list[AnomalyEvent]) -> dict[str, np.ndarray]:
        if not events:
            return {}
        if self._provider is ProviderState.DOWN:
            self._delay(events)
            return {}
        try:
            matrix = await self.embedder.embed([episode_text(e) for e in events])
        except UpstreamError as exc:
            self._provider_failed(exc)
            if exc.retryable:
                self._delay(events)
            else:
                self._c["embed_failed"] += len(events)
            return {}
        return {e.episode_id: matrix[i] for i, e in enumerate(events)}

    def _delay(self, events: list[AnomalyEvent]) -> None:
        room = max(0, self.config.embeddings.queue_size - len(self._pending))
        self._pending.extend(events[:room])
        self._c["embed_delayed"] += min(room, len(events))
        self._c["embed_dropped"] += max(0, len(events) - room)

    def _provider_failed(self, exc: UpstreamError) -> None:
        if self._provider is ProviderState.OK:
            log.warning("correlate: embeddings provider failed, episodes wait: %s", exc.message)
        self._provider = ProviderState.DOWN
        self._last_error = exc.message

    def _handle(self, events: list[IncidentEvent]) -> None:
        if not events:
            return
        self._c["incident_events"] += len(events)
        if self._registry is not None:
            for ev in events:
                self._registry.record_incident(ev)
        shown = [e for e in events if self._worth_showing(e)]
        self._emitted.update(e.kind.value for e in shown)
        if shown and self._sink is not None:
            self._sink.submit_incidents(shown)
        if self.store is not None:
            for ev in events:
                if ev.kind is IncidentEventKind.MERGED:
                    target = (
                        self.correlator.incident_of(ev.incident.root_episode_id)
                        or ev.incident.merged_into
                    )
                    self.store.set_payload(list(ev.incident.episode_ids), {"incident_id": target})

    def _worth_showing(self, event: IncidentEvent) -> bool:
        """Opened and resolved always; updated when the incident has more members than when it
        last went out (not on every member's score change); merged never (the incident it went
        into shows the new members)."""
        inc = event.incident
        if event.kind in (IncidentEventKind.RESOLVED, IncidentEventKind.MERGED):
            self._shown_members.pop(inc.id, None)
            return event.kind is IncidentEventKind.RESOLVED
        members = len(inc.episode_ids)
        if event.kind is IncidentEventKind.UPDATED and members <= self._shown_members.get(
            inc.id, members
        ):
            return False
        if len(self._shown_members) >= _MAX_SHOWN_TRACKED and inc.id not in self._shown_members:
            self._shown_members.clear()  # bounded; an incident forgotten shows its next update
        self._shown_members[inc.id] = members
        return True

    def _store_episode(self, event: AnomalyEvent, vector: np.ndarray | None) -> None:
        if self.store is None:
            return
        incident = self.correlator.incident_of(event.episode_id) or ""
        if vector is not None:
            self._vectors[event.episode_id] = vector
            while len(self._vectors) > _VECTOR_CACHE:
                self._vectors.popitem(last=False)
            self.store.upsert(
                EpisodePoint(event.episode_id, vector, episode_payload(event, incident))
            )
        elif event.state is EpisodeState.RESOLVED:
            self.store.set_payload(
                [event.episode_id],
                {"state": event.state.value, "ended_ns": event.ended_ns, "time_ns": event.time_ns,
                 "incident_id": incident},
            )  # fmt: skip

    # -- delayed embeddings -----------------------------------------------------------------------

    async def _retry_loop(self) -> None:
        interval = self.config.embeddings.retry_interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), interval)
            if self._closing.is_set():
                return
            if self._pending:
                await self.retry_pending()

    async def retry_pending(self) -> int:
        """Try to embed the episodes that wait for the provider; returns how many were embedded."""
        done = 0
        size = self.config.embeddings.batch_size
        while self._pending:
            batch = [self._pending[i] for i in range(min(size, len(self._pending)))]
            try:
                matrix = await self.embedder.embed([episode_text(e) for e in batch])
            except UpstreamError as exc:
                self._provider_failed(exc)
                if exc.retryable:
                    return done
                for _ in batch:
                    self._pending.popleft()
                self._c["embed_failed"] += len(batch)
                continue
            if self._provider is ProviderState.DOWN:
                log.info("correlate: embeddings provider is back")
            self._provider = ProviderState.OK
            for i, event in enumerate(batch):
                self._pending.popleft()
                self.correlator.attach_vector(event.episode_id, matrix[i])
                self._store_episode(event, matrix[i])
            self._c["embed_recovered"] += len(batch)
            done += len(batch)
        return done

    async def _tick_loop(self) -> None:
        assert self._clock is not None
        while True:
            await asyncio.sleep(self._tick_interval)
            try:
                self._handle(self.correlator.advance(self._clock()))
            except Exception:
                log.exception("correlate: the clock tick failed")

    # -- search ----------------------------------------------------------------------------------

    async def search_similar(
        self,
        text: str = "",
        *,
        episode_id: str = "",
        limit: int = 10,
        exclude_same_incident: bool = True,
    ) -> SimilarResult:
        """The stored episodes and incidents nearest to free `text` or to a stored episode.

        For an episode, the episode itself (and, with `exclude_same_incident`, its own incident)
        is left out: the answer is "when did this happen before". `EpisodeNotFound` when the
        episode has no stored vector; `UpstreamError` when Qdrant or the provider is away.
        """
        if self.store is None:
            raise UpstreamError("correlate: the vector store is off", retryable=False)
        if bool(text) == bool(episode_id):
            raise InputError("search_similar: give either a text or an episode id")
        limit = max(1, min(limit, MAX_SEARCH_LIMIT))
        exclude: tuple[str, ...] = ()
        exclude_incident = ""
        if episode_id:
            vector = self._vectors.get(episode_id)
            if vector is None:
                vector = await self.store.get_vector(episode_id)
            if vector is None:
                raise EpisodeNotFound(f"episode {episode_id!r} has no stored vector")
            exclude = (episode_id,)
            if exclude_same_incident:
                exclude_incident = self.correlator.incident_of(episode_id) or ""
        else:
            vector = (await self.embedder.embed([text]))[0]
        hits = await self.store.search(
            vector,
            limit=min(4 * limit, 4 * MAX_SEARCH_LIMIT),
            exclude_episode_ids=exclude,
            exclude_incident_id=exclude_incident,
        )
        incidents: dict[str, SimilarIncident] = {}
        episodes = []
        for h in hits:
            inc = self.correlator.incident_of(h.episode_id) or h.incident_id
            if exclude_incident and inc == exclude_incident:
                continue  # stored before a merge brought it into the episode's own incident
            episodes.append(h if inc == h.incident_id else dataclasses.replace(h, incident_id=inc))
            if not inc or inc in incidents:
                continue
            current = self.correlator.get(inc)
            incidents[inc] = SimilarIncident(
                inc, h.similarity, h.episode_id, current.title if current else ""
            )
        return SimilarResult(tuple(episodes[:limit]), tuple(list(incidents.values())[:limit]))
