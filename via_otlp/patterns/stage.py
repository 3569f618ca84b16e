"""The patterns stage: fill a LogBatch's template columns and rhythm hashes.

Each source identity (`Source.key`) has its own `SourceMiner`; the masking rules (and their
token cache) are shared. A record that carries `log.record.template` (set by the Collector's
drain processor) keeps that template, with an id derived from its text. The rhythm hash is
`rhythm_hash(source key, severity, template id)`: it names the template by id, never by text,
so a template that generalises keeps its rhythm hash.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import xxhash

from via_otlp.model import LogBatch
from via_otlp.patterns.config import PatternsConfig
from via_otlp.patterns.masking import Masker
from via_otlp.patterns.miner import SourceMiner
from via_otlp.patterns.rhythm import rhythm_hash

SNAPSHOT_KIND = "via-otlp.patterns"
SNAPSHOT_VERSION = 1
_HASH_CACHE_SIZE = 65_536
_HINT_CACHE_SIZE = 16_384
_MAX_CACHED_HINT = 1024


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


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    """A read-only view of one template kept by a source model (for the control API)."""

    source_key: str
    template_id: str
    template: str
    count: int


class SnapshotError(ValueError):
    """A snapshot that this version cannot restore (wrong kind or version, or malformed)."""


class PatternStage:
    """Assigns template ids, templates and rhythm hashes to every record of a batch."""

    def __init__(self, config: PatternsConfig | None = None) -> None:
        self.config = config or PatternsConfig()
        self.masker = Masker.from_rules(self.config.masking)
        self._miners: OrderedDict[str, SourceMiner] = OrderedDict()
        self._hashes: dict[tuple[str, str, str], str] = {}
        self._hints: dict[str, str] = {}
        self._hinted = 0
        self._source_evictions = 0
        self._retired = _Totals()

    def miner(self, source_key: str) -> SourceMiner:
        """The model of one source, created on first use (least recently used evicted)."""
        miner = self._miners.get(source_key)
        if miner is None:
            miner = self._miners[source_key] = SourceMiner(self.config, self.masker)
            if len(self._miners) > self.config.max_sources:
                _, old = self._miners.popitem(last=False)
                self._retired.add(old)
                self._source_evictions += 1
        else:
            self._miners.move_to_end(source_key)
        return miner

    def apply(self, batch: LogBatch) -> None:
        """Fill `template_id`, `template` and `rhythm_hash` for every record."""
        keys = [s.key for s in batch.sources]
        adds = [self.miner(k).add for k in keys]
        use_hints = self.config.use_template_hint
        hints = batch.template_hint or [""] * len(batch.body)
        ids: list[str] = []
        templates: list[str] = []
        hashes: list[str] = []
        hash_cache = self._hashes
        for src, sev, body, hint in zip(
            batch.source_index, batch.severity, batch.body, hints, strict=True
        ):
            if hint and use_hints:
                tid, text = self._hint_id(hint), hint
            else:
                template = adds[src](body)
                tid, text = template.id, template.text
            key = (keys[src], sev, tid)
            h = hash_cache.get(key)
            if h is None:
                if len(hash_cache) >= _HASH_CACHE_SIZE:
                    hash_cache.clear()
                h = hash_cache[key] = rhythm_hash(*key)
            ids.append(tid)
            templates.append(text)
            hashes.append(h)
        batch.template_id, batch.template, batch.rhythm_hash = ids, templates, hashes

    def _hint_id(self, hint: str) -> str:
        """A short id for a Collector-provided template: ``h`` + a hash of its text."""
        self._hinted += 1
        tid = self._hints.get(hint)
        if tid is None:
            tid = "h" + xxhash.xxh64_hexdigest(hint.encode())[:9]
            if len(hint) <= _MAX_CACHED_HINT:  # the cache is bounded in bytes, not only entries
                if len(self._hints) >= _HINT_CACHE_SIZE:
                    self._hints.clear()
                self._hints[hint] = tid
        return tid

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
        )

    def templates(self) -> list[TemplateInfo]:
        """Every template the source models keep now, by source (read-only; nothing is created)."""
        return [
            TemplateInfo(key, t.id, t.text, t.count)
            for key, miner in self._miners.items()
            for t in miner.templates.values()
        ]

    def flooding_sources(self) -> list[str]:
        """The sources currently reported as flooding (mostly unique lines)."""
        return [key for key, miner in self._miners.items() if miner.stats.flooding]

    def snapshot(self) -> dict[str, Any]:
        """Versioned, JSON-serialisable state: every source's templates (ids included)."""
        return {
            "kind": SNAPSHOT_KIND,
            "version": SNAPSHOT_VERSION,
            "sources": {key: miner.to_state() for key, miner in self._miners.items()},
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Replace the models by those of a `snapshot` (ids and templates are kept)."""
        if state.get("kind") != SNAPSHOT_KIND or state.get("version") != SNAPSHOT_VERSION:
            raise SnapshotError(
                f"cannot restore a patterns snapshot of kind {state.get('kind')!r} "
                f"version {state.get('version')!r} (expected {SNAPSHOT_KIND!r} v{SNAPSHOT_VERSION})"
            )
        sources = state.get("sources")
        if not isinstance(sources, dict):
            raise SnapshotError("patterns snapshot: 'sources' must be an object")
        self._miners.clear()
        self._hashes.clear()
        for key, source_state in sources.items():
            try:
                self.miner(str(key)).load_state(source_state)
            except (TypeError, ValueError, KeyError) as exc:
                raise SnapshotError(f"patterns snapshot: source {key!r}: {exc}") from None


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
