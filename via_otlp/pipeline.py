"""The pipeline without sockets: intake → queue → consume → engine → dispatch → sink.

`Pipeline` is what a shard runs (`via_otlp.shard.worker`), and what `replay` and the in-process
mode run; `app.py` wires it (or the shards) to the servers. It lives apart from `app.py` so
that a shard process starts without importing the servers, the emitter or the correlator.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from via_otlp.config import Config
from via_otlp.detect.engine import Engine, EngineStats
from via_otlp.detect.profile import ProfileSummary, RecentBucket
from via_otlp.model import AnomalyEvent, LogBatch, Source
from via_otlp.patterns import PatternStage
from via_otlp.patterns.stage import PatternStats, TemplateInfo
from via_otlp.receive.intake import BatchFilter, Intake, IntakeStats, RecordQueue
from via_otlp.receive.normalise import HexIds, NormaliseOptions, Normaliser
from via_otlp.registry.schemas import SchemaTracker
from via_otlp.telemetry.timing import Stage, StageTimings

if TYPE_CHECKING:
    from via_otlp.registry import Registry

MAX_RHYTHMS_SHOWN = 10_000
# Buckets the wall-clock tick closes at most per call, so that catching up after a long silence
# does not hold the event loop (an hour of 10 s buckets; ticks come every second or faster).
MAX_BUCKETS_PER_TICK = 360


def build_normaliser(config: Config) -> Normaliser:
    return Normaliser(NormaliseOptions.from_config(config.receive))


EventSink = Callable[[list[AnomalyEvent]], None]


class EventGate:
    """Events on their way out: recorded in the registry, whose MUTE and THRESHOLD patches
    decide which are emitted (where events are admitted: the serving process), then `sink`."""

    def __init__(self, registry: Registry | None, sink: EventSink | None) -> None:
        self.registry = registry
        self.sink = sink
        self.emitted = 0
        self.suppressed = 0
        # Emitted events by (kind, state), for the self-metrics.
        self.by_kind: Counter[tuple[str, str]] = Counter()
        self.timings = StageTimings()

    def __call__(self, events: list[AnomalyEvent]) -> None:
        if not events:
            return
        with self.timings.time(Stage.DISPATCH):
            if self.registry is not None:
                admitted = [e for e in events if self.registry.admit_anomaly(e)]
            else:
                admitted = events
            self.suppressed += len(events) - len(admitted)
            self.emitted += len(admitted)
            self.by_kind.update((e.kind.value, e.state.value) for e in admitted)
            if admitted and self.sink is not None:
                self.sink(admitted)


class Pipeline:
    """Everything from a decoded request to anomaly events, without sockets.

    A shard runs one (`via_otlp.shard`), and so do `replay` and the in-process mode: intake
    (normalise, template, DROP patches), then on each batch taken off the queue schema sampling
    and the detection engine; events go through the registry (recorded; MUTE and THRESHOLD
    patches decide whether they are emitted) to `sink`. Schema inference (`schemas`) is pure;
    its windows close on the engine's watermark: event time in a replay, the wall clock too in
    `serve`. A shard is told the watermark (`consume(batch, watermark_ns)`, `advance`): the
    coordinator computes it from every batch, so any number of shards gives the same anomalies.
    """

    def __init__(
        self,
        config: Config,
        registry: Registry | None = None,
        sink: EventSink | None = None,
        drop_filter: BatchFilter | None = None,
        block_filter: BatchFilter | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.dispatch = EventGate(registry, sink)
        self.patterns = PatternStage(config.patterns)
        self.engine = Engine(config.detect)
        self.patterns.known_hash = self.engine.rhythm_string
        self.schemas = SchemaTracker(config.registry.schema)
        if registry is not None:
            registry.schema_tracker = self.schemas
            drop_filter = registry.filter_batch
            block_filter = registry.block_batch
        self.stats = IntakeStats()
        self.dispatch.timings = self.stats.latency
        self.queue = RecordQueue(config.receive.queue_max_records, self.stats.latency)
        self.intake = Intake(
            build_normaliser(config),
            self.patterns,
            self.queue,
            self.stats,
            drop_filter=drop_filter,
            max_batch_records=config.pipeline.batch_max_records,
            block_filter=block_filter,
        )

    def consume(self, batch: LogBatch, watermark_ns: int | None = None) -> None:
        """Process one batch taken off the queue (the watermark moves to `watermark_ns` if given)."""
        self.consume_group([batch], watermark_ns)

    def consume_group(self, batches: list[LogBatch], watermark_ns: int | None = None) -> None:
        """Process templated batches as one (a shard's coalesced backlog): what consuming them
        in turn gives, when `absorbs` allowed each to join; the watermark moves once."""
        with self.stats.latency.time(Stage.DETECT):
            # Merges and splits the miner made (this batch's or, with a queue, later ones'): a
            # held new pattern that merged back into a known one, or that is a known one with a
            # word's new value, is not reported.
            self.engine.merged(self.patterns.take_merges())
            self.engine.split(self.patterns.take_splits())
            for batch in batches:
                self.stats.records_consumed += len(batch)
                self.schemas.observe(batch)  # per batch: it samples templates with a stride
            if len(batches) == 1:
                events = self.engine.observe(batches[0], watermark_ns=watermark_ns)
            else:
                joined, parts = join_batches(batches)
                events = self.engine.observe(joined, watermark_ns=watermark_ns, parts=parts)
            events += self._check_schemas()
        self.dispatch(events)

    def absorbs(self, watermark_ns: int, records: int) -> bool:
        """Whether a batch may be consumed together with the group before it (`consume_group`),
        which was consumed at `watermark_ns` and holds `records` with it: the watermark between
        them closes no bucket and no schema window (a batch without records for this shard
        only moves the watermark: it joins on the same terms)."""
        wm = max(watermark_ns, self.engine.watermark_ns or watermark_ns)
        return self.engine.absorbs(wm, records) and self.schemas.window_open_at(wm)

    def advance(self, watermark_ns: int) -> None:
        """No records for this shard in a batch, but the watermark moved."""
        self.dispatch(self.engine.advance(watermark_ns) + self._check_schemas())

    def tick(self, now_ns: int) -> None:
        """Wall clock: let silence close buckets, and judge schemas."""
        events = self.engine.tick(now_ns, max_buckets=MAX_BUCKETS_PER_TICK)
        self.dispatch(events + self._check_schemas())

    def _check_schemas(self) -> list[AnomalyEvent]:
        watermark = self.engine.watermark_ns
        return [] if watermark is None else self.schemas.check(watermark)

    def finish(self) -> None:
        """End of a replay: close the buckets the input reached."""
        self.dispatch(self.engine.flush())

    @property
    def events_emitted(self) -> int:
        return self.dispatch.emitted

    @property
    def events_suppressed(self) -> int:
        return self.dispatch.suppressed

    @property
    def events_by_kind(self) -> Counter[tuple[str, str]]:
        return self.dispatch.by_kind

    def rhythm_counts(self, limit: int = MAX_RHYTHMS_SHOWN) -> dict[str, int]:
        """Records seen per rhythm hash, most first: the engine's profiles, so bounded as they are."""
        totals = sorted(
            ((p.total_count, p.rhythm_hash) for p in self.engine.profiles()), reverse=True
        )
        return {h: n for n, h in totals[:limit]}

    @property
    def rhythm_hashes(self) -> int:
        """Rhythm hashes with a profile now."""
        return self.engine.stats().profiles

    # The questions `/status` and the control API ask, as `ShardPool` answers them too.

    @property
    def queue_depth(self) -> int:
        return self.queue.depth

    @property
    def queue_capacity(self) -> int:
        return self.queue.max_records

    @property
    def body_bytes(self) -> int:
        return self.queue.body_bytes

    def engine_stats(self) -> EngineStats:
        return self.engine.stats()

    def latency(self) -> dict[str, Any]:
        return self.stats.latency.snapshot()

    def pattern_stats(self) -> PatternStats:
        return self.patterns.stats()

    async def profiles(self) -> list[ProfileSummary]:
        return list(self.engine.profiles())

    async def profile(self, rhythm_hash: str) -> tuple[ProfileSummary | None, list[RecentBucket]]:
        return self.engine.profile(rhythm_hash), self.engine.recent_buckets(rhythm_hash) or []

    async def templates(self) -> list[TemplateInfo]:
        return self.patterns.templates()

    async def top_rhythms(self, limit: int = MAX_RHYTHMS_SHOWN) -> dict[str, int]:
        return self.rhythm_counts(limit)

    def snapshot(self) -> dict[str, Any]:
        """Versioned state of every learning part (patterns, engine, schemas)."""
        return {
            "patterns": self.patterns.snapshot(),
            "engine": self.engine.snapshot(),
            "schemas": self.schemas.snapshot(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        share_strings(state)
        if "patterns" in state:
            self.patterns.restore(state["patterns"])
        if "engine" in state:
            self.engine.restore(state["engine"])
        if "schemas" in state:
            self.schemas.restore(state["schemas"])


def share_strings(tree: Any) -> None:
    """Make the equal strings in the lists of `tree` (a snapshot as parsed) one object each, in
    place. A parser makes a string per value: restored apart, the profile table held its own
    severity word per profile and its own copy of the id and text the patterns stage keeps for
    a sender-named template (~180 B a profile more than before the restart).

    >>> tree = {"a": ["INFO", "T1"], "b": [["T1", 3]]}
    >>> tree["b"][0][0] = "".join(["T", "1"])  # equal, another object
    >>> share_strings(tree)
    >>> tree["b"][0][0] is tree["a"][1]
    True
    """
    memo: dict[str, str] = {}
    share = memo.setdefault
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            todo += [v for v in node.values() if isinstance(v, list | dict)]
        elif isinstance(node, list) and node:
            first = node[0]
            if type(first) is str and type(node[-1]) is str:  # (strings)
                node[:] = [share(v, v) if type(v) is str else v for v in node]
            elif type(first) is str:  # a row that starts with one
                for i, v in enumerate(node):
                    if type(v) is str:
                        node[i] = share(v, v)
                    elif isinstance(v, list | dict):
                        todo.append(v)
            elif isinstance(first, list | dict):
                todo += node
            # (a list that starts with a number holds numbers: not walked)


_JOINED = ("severity", "body", "time_ns", "template_id", "template", "rhythm_hash")


def join_batches(batches: list[LogBatch]) -> tuple[LogBatch, np.ndarray]:
    """Templated batches as one, with each record's batch number: the columns the engine reads
    (schemas observe each batch on its own; attribute samples are not carried)."""
    sources: list[Source] = []
    where: dict[str, int] = {}
    source_index: list[int] = []
    for b in batches:
        remap = [where.setdefault(s.key, len(where)) for s in b.sources]
        if len(where) > len(sources):
            sources += [s for s in b.sources if where[s.key] >= len(sources)]
        if remap == list(range(len(remap))):
            source_index += b.source_index
        else:
            source_index += [remap[i] for i in b.source_index]
    joined = LogBatch(sources=sources, source_index=source_index)
    for name in _JOINED:
        col: list[Any] = []
        for b in batches:
            col += getattr(b, name)
        setattr(joined, name, col)
    if any(b.unique_id for b in batches):  # a batch without ids counts as ids all absent ("")
        joined.unique_id = [u for b in batches for u in (b.unique_id or [""] * len(b))]
    joined.trace_id = _join_ids([b.trace_id for b in batches])
    sizes = [len(b) for b in batches]
    return joined, np.repeat(np.arange(len(batches), dtype=np.int64), sizes)


def _join_ids(ids: list[list[str]]) -> list[str]:
    """Trace id columns as one: packed ids of one width stay one blob."""
    if not all(isinstance(t, HexIds) for t in ids):
        return [x for t in ids for x in t]
    hex_ids = cast(list[HexIds], ids)
    blobs = [t.blob() for t in hex_ids]
    widths = {b[1] for b in blobs if b is not None}
    if all(b is not None for b in blobs) and len(widths) == 1:
        blob = b"".join(b[0] for b in blobs if b is not None)
        return cast(list[str], HexIds.packed(blob, widths.pop(), sum(map(len, hex_ids))))
    return cast(list[str], HexIds([r for t in hex_ids for r in t.raw]))
