"""The patterns stage: fill a LogBatch's template columns and rhythm hashes.

Each source identity (`Source.key`) has its own `SourceMiner`; the masking rules (and their
token cache) are shared. A record that carries `log.record.template` (set by the Collector's
drain processor) keeps that template, with an id derived from its text; the source's model
keeps a bounded record of those too, so they are listed with the mined ones. The rhythm hash
is `rhythm_hash(source key, severity, template id)`: it names the template by id, never by
text, so a template that generalises keeps its rhythm hash.

When a template widens so far that it covers younger templates of its source, they merge into
the oldest (whose id stays); `take_merges` hands those merges to the detector with the rhythm
hashes they join, so a young template's novelty can be withdrawn.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from via_otlp.model import LogBatch
from via_otlp.patterns.config import PatternsConfig
from via_otlp.patterns.masking import Masker
from via_otlp.patterns.miner import Named, SourceMiner, Template
from via_otlp.patterns.rhythm import rhythm_hash

SNAPSHOT_KIND = "via-otlp.patterns"
SNAPSHOT_VERSION = 2  # v2: templates carry their age; hinted templates; v1 still restores
_READABLE_VERSIONS = (1, 2)
_HASH_CACHE_SIZE = 65_536
_MAX_MERGES = 10_000  # merges kept between two `take_merges` calls (older ones dropped, counted)


@dataclass(frozen=True, slots=True)
class PatternStats:
    """Counters for the status page, summed over every source model."""

    sources: int
    templates: int
    lines: int
    created: int
    merges: int
    evictions: int
    fast_path_hits: int
    hinted: int
    flooding_sources: int
    flooded_lines: int
    source_evictions: int
    cache_bytes: int = 0  # the fast-path caches of every source model, about
    cache_clears: int = 0  # source models whose caches were dropped to stay within the budget


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    """A read-only view of one template kept by a source model (for the control API)."""

    source_key: str
    template_id: str
    template: str
    count: int
    hinted: bool = False  # given by the sender (`log.record.template`), not mined


@dataclass(frozen=True, slots=True)
class TemplateMerge:
    """Template `old_id` of a source was merged into `new_id` (which keeps its own id).

    `rhythm` pairs each rhythm hash that `old_id` had (one per severity seen with it lately)
    with the rhythm hash that replaces it: a detector moves or forgets the old one's state.
    """

    source_key: str
    old_id: str
    new_id: str
    template: str
    rhythm: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class TemplateSplit:
    """Template `new_id` of a source differs from `sibling_id` in one plain word only: a word
    variable's new value, kept apart until the word has enough values to generalise."""

    source_key: str
    new_id: str
    sibling_id: str


class SnapshotError(ValueError):
    """A snapshot that this version cannot restore (wrong kind or version, or malformed)."""


class PatternStage:
    """Assigns template ids, templates and rhythm hashes to every record of a batch."""

    def __init__(self, config: PatternsConfig | None = None) -> None:
        self.config = config or PatternsConfig()
        self.masker = Masker.from_rules(self.config.masking)
        self._miners: OrderedDict[str, SourceMiner] = OrderedDict()
        self._hashes: dict[tuple[str, str, str], str] = {}
        # severities seen lately with each (source, template id): the rhythm hashes of a merge
        self._severities: dict[tuple[str, str], tuple[str, ...]] = {}
        self._merges: list[TemplateMerge] = []
        self._splits: list[TemplateSplit] = []
        self._merges_dropped = 0
        self._hinted = 0
        self._source_evictions = 0
        self._cache_bytes = 0  # sum of the source models' `cache_bytes`, kept as they change
        self._cache_clears = 0
        self._retired = _Totals()
        # The string a profile holds for a rhythm hash it equals (`Pipeline` gives the engine's):
        # a restored profile table holds its hashes as parsed, and a template's first line after
        # the restart worked out another string of each (65 B a profile, `serve` over 2 KB).
        self.known_hash: Callable[[str], str] = str

    def miner(self, source_key: str) -> SourceMiner:
        """The model of one source, created on first use (least recently used evicted)."""
        miner = self._miners.get(source_key)
        if miner is None:
            miner = self._new_miner(source_key)
            self._miners[source_key] = miner
            if len(self._miners) > self.config.max_sources:
                _, old = self._miners.popitem(last=False)
                self._retired.add(old)
                self._source_evictions += 1
                self._cache_bytes -= old.cache_bytes
        else:
            self._miners.move_to_end(source_key)
        return miner

    def _new_miner(self, source_key: str) -> SourceMiner:
        miner = SourceMiner(self.config, self.masker)
        miner.on_merge = lambda old_id, survivor: self._merged(source_key, old_id, survivor)
        miner.on_split = lambda new_id, sibling: self._split(source_key, new_id, sibling.id)
        return miner

    def _note_severity(self, source_key: str, template_id: str, severity: str) -> None:
        """Remember a severity a template was seen at: a merge renames its rhythm hashes. A
        tuple (a set per template cost 216 B; at 50,000 templates per shard, 11 MB)."""
        key = (source_key, template_id)
        seen = self._severities.get(key, ())
        if severity not in seen:
            self._severities[key] = (*seen, severity)

    def _merged(self, source_key: str, old_id: str, survivor: Template) -> None:
        """Record a merge made by a source model (see `take_merges`)."""
        severities = self._severities.pop((source_key, old_id), ())
        for sev in severities:
            self._note_severity(source_key, survivor.id, sev)
        rhythm = tuple(
            (rhythm_hash(source_key, sev, old_id), rhythm_hash(source_key, sev, survivor.id))
            for sev in sorted(severities)
        )
        if len(self._merges) >= _MAX_MERGES:
            del self._merges[: _MAX_MERGES // 2]
            self._merges_dropped += _MAX_MERGES // 2
        self._merges.append(TemplateMerge(source_key, old_id, survivor.id, survivor.text, rhythm))

    def _split(self, source_key: str, new_id: str, sibling_id: str) -> None:
        """Record a split made by a source model (see `take_splits`)."""
        if len(self._splits) >= _MAX_MERGES:
            del self._splits[: _MAX_MERGES // 2]
        self._splits.append(TemplateSplit(source_key, new_id, sibling_id))

    def take_splits(self) -> list[TemplateSplit]:
        """The templates made since the last call that differ from a known one in one word only
        (a word variable's new value), oldest first; the record is then emptied."""
        splits, self._splits = self._splits, []
        return splits

    def take_merges(self) -> list[TemplateMerge]:
        """The merges made since the last call, oldest first (the record is then emptied).

        Call it after `apply`: a template that `apply` reported may have merged into an older
        one during the same batch, and its records then carry the older id already.
        """
        merges, self._merges = self._merges, []
        return merges

    def apply(self, batch: LogBatch) -> None:
        """Fill `template_id`, `template` and `rhythm_hash` for every record."""
        keys = [s.key for s in batch.sources]
        miners = [self.miner(k) for k in keys]
        distinct = list({id(m): m for m in miners}.values())
        cached_before = sum(m.cache_bytes for m in distinct)
        adds = [m.add for m in miners]
        use_hints = self.config.use_template_hint
        hints = batch.template_hint or [""] * len(batch.body)
        ids: list[str] = []
        templates: list[str] = []
        hashes: list[str] = []
        add_id, add_template, add_hash = ids.append, templates.append, hashes.append
        cached = self._hashes
        template: Named
        for src, sev, body, hint in zip(
            batch.source_index, batch.severity, batch.body, hints, strict=True
        ):
            if hint and use_hints:
                template = miners[src].add_hint(hint)
                self._hinted += 1
            else:
                template = adds[src](body)
            add_id(template.id)
            add_template(template.text)
            if template.severity == sev:  # its source's model: the same source key
                add_hash(template.rhythm)
            elif (
                template.severity is not None
                and (h := cached.get((keys[src], sev, template.id))) is not None
            ):  # `_rhythm_of` when its cache has it (a template seen at several severities)
                template.severity, template.rhythm = sev, h
                add_hash(h)
            else:
                add_hash(self._rhythm_of(template, keys[src], sev, bool(hint) and use_hints))
        batch.template_id, batch.template, batch.rhythm_hash = ids, templates, hashes
        self._cache_bytes += sum(m.cache_bytes for m in distinct) - cached_before
        if self._cache_bytes > self.config.fast_path_bytes:
            self._shrink_caches()

    def _rhythm_of(self, template: Named, source_key: str, sev: str, hinted: bool) -> str:
        """The rhythm hash of `template` at `sev`, kept on the template; a template seen at
        another severity before keeps that one's hash, and further severities are cached."""
        first = template.severity is None
        key = (source_key, sev, template.id)
        h = None if first else self._hashes.get(key)
        if h is None:
            if len(self._hashes) >= _HASH_CACHE_SIZE or len(self._severities) >= _HASH_CACHE_SIZE:
                self._hashes.clear()
                self._severities.clear()
            h = self.known_hash(rhythm_hash(*key))
            if not first:
                self._hashes[key] = h
                self._hashes[(source_key, str(template.severity), template.id)] = template.rhythm
            if not hinted:  # only mined templates merge (`_merged`)
                self._note_severity(source_key, template.id, sev)
        template.severity, template.rhythm = sev, h
        return h

    def _shrink_caches(self) -> None:
        """Drop the fast-path caches of the least recently used sources until half the budget
        is free: each source's caches are bounded in entries, but ten thousand sources would
        hold gigabytes. Their models stay; their next lines take the slower path once."""
        target = self.config.fast_path_bytes // 2
        for miner in self._miners.values():  # least recently used first
            if self._cache_bytes <= target:
                break
            if miner.cache_bytes:
                self._cache_bytes -= miner.clear_caches()
                self._cache_clears += 1

    def stats(self) -> PatternStats:
        """Counters summed over the source models (plus those evicted, for the totals)."""
        live = _Totals()
        for miner in self._miners.values():
            live.add(miner)
        return PatternStats(
            sources=len(self._miners),
            templates=live.templates,
            lines=live.lines + self._retired.lines,
            created=live.created + self._retired.created,
            merges=live.merges + self._retired.merges,
            evictions=live.evictions + self._retired.evictions,
            fast_path_hits=live.fast_path_hits + self._retired.fast_path_hits,
            hinted=self._hinted,
            flooding_sources=live.flooding,
            flooded_lines=live.flooded_lines + self._retired.flooded_lines,
            source_evictions=self._source_evictions,
            cache_bytes=self._cache_bytes,
            cache_clears=self._cache_clears,
        )

    def templates(self) -> list[TemplateInfo]:
        """Every template the source models keep now, by source (read-only; nothing is created).

        Mined templates first, then those the senders named (`log.record.template`).
        """
        return [
            TemplateInfo(key, t.id, t.text, t.count, hinted)
            for key, miner in self._miners.items()
            for hinted, kept in ((False, miner.templates), (True, miner.hinted))
            for t in kept.values()
        ]

    def recover_template(self, source_key: str, template_id: str, text: str) -> bool:
        """Teach a source's model a template it lost in a crash (`SourceMiner.recover`), so its
        lines keep their id and rhythm hash. True if the model did not have it."""
        return self.miner(source_key).recover(template_id, text)

    def flooding_sources(self) -> list[str]:
        """The sources currently reported as flooding (mostly unique lines)."""
        return [key for key, miner in self._miners.items() if miner.stats.flooding]

    def snapshot(self) -> dict[str, Any]:
        """Versioned state, a tree of JSON values: every source's templates (ids included)."""
        return self.export_sources(self._miners)

    def restore(self, state: dict[str, Any]) -> None:
        """Replace the models by those of a `snapshot` (ids and templates are kept).

        Reads this version's snapshots and the previous one's (v1: without template ages or
        hinted templates).
        """
        sources = self._check(state)
        self._miners.clear()
        self._cache_bytes = 0
        self._hashes.clear()
        self._severities.clear()
        self._load(sources)

    def export_sources(self, keys: Iterable[str]) -> dict[str, Any]:
        """The models of the sources `keys` (those it has), as a tree of JSON values.

        Same shape as `snapshot`; `import_sources` on another instance takes it (a source that
        moves between instances keeps its template ids, so its rhythm hashes).
        """
        sources = {}
        for key in keys:
            miner = self._miners.get(key)
            if miner is not None:
                sources[key] = miner.to_state()
        return {"kind": SNAPSHOT_KIND, "version": SNAPSHOT_VERSION, "sources": sources}

    def import_sources(self, tree: dict[str, Any]) -> None:
        """Add the source models of an `export_sources` tree, replacing those of the same keys."""
        sources = self._check(tree)
        for key in sources:
            self._forget(str(key))
        self._load(sources)

    def forget_sources(self, keys: Iterable[str]) -> None:
        """Drop the models of `keys` (another instance owns those sources now)."""
        for key in keys:
            self._forget(key)

    def _check(self, tree: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(tree, dict):
            raise SnapshotError("patterns snapshot: must be an object")
        if tree.get("kind") != SNAPSHOT_KIND or tree.get("version") not in _READABLE_VERSIONS:
            raise SnapshotError(
                f"cannot restore a patterns snapshot of kind {tree.get('kind')!r} "
                f"version {tree.get('version')!r} (expected {SNAPSHOT_KIND!r} "
                f"v{'/'.join(map(str, _READABLE_VERSIONS))})"
            )
        sources = tree.get("sources")
        if not isinstance(sources, dict):
            raise SnapshotError("patterns snapshot: 'sources' must be an object")
        return sources

    def _load(self, sources: dict[str, Any]) -> None:
        for key, source_state in sources.items():
            miner = self._new_miner(str(key))
            try:
                miner.load_state(source_state)
            except (TypeError, ValueError, KeyError) as exc:
                raise SnapshotError(f"patterns snapshot: source {key!r}: {exc}") from None
            self._miners[str(key)] = miner
            self._miners.move_to_end(str(key))
            if len(self._miners) > self.config.max_sources:
                _, old = self._miners.popitem(last=False)
                self._retired.add(old)
                self._source_evictions += 1
                self._cache_bytes -= old.cache_bytes

    def _forget(self, key: str) -> None:
        """Drop a source's model (cached rhythm hashes stay right: they are pure functions)."""
        old = self._miners.pop(key, None)
        if old is not None:
            self._cache_bytes -= old.cache_bytes


class _Totals:
    """Running sums of `MinerStats` (live models, or models evicted so far)."""

    def __init__(self) -> None:
        self.templates = self.lines = self.created = self.merges = self.evictions = 0
        self.fast_path_hits = self.flooding = self.flooded_lines = 0

    def add(self, miner: SourceMiner) -> None:
        s = miner.stats
        self.templates += s.templates
        self.lines += s.lines
        self.created += s.created
        self.merges += s.merges
        self.evictions += s.evictions
        self.fast_path_hits += s.fast_path_hits
        self.flooding += int(s.flooding)
        self.flooded_lines += s.flooded_lines
