"""Moving sources' learned state between owners: shard counts that change, the old state.json,
and (through the registry) another instance.

Every part keeps its state per source: `Engine.export_sources(keys)` / `import_sources(tree)`
and `PatternStage.export_sources` / `import_sources` (INTERFACES.md), and the schema tracker's
snapshot lists its sources. A shard that starts without its own snapshot takes its sources out
of whatever older state there is.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path
from typing import Any

from via_otlp.config import Config
from via_otlp.shard.wire import shard_of
from via_otlp.state import STATE_FILE, decode_tree_meta, encode_tree, load_snapshot, load_state

log = logging.getLogger("via_otlp.shard")

# The source keys of a whole pipeline snapshot, and the part of it that belongs to some keys.


def can_split() -> bool:
    """Whether the engine can export single sources (the agreed seam; the miner's models are
    per source already)."""
    from via_otlp.detect.engine import Engine

    return hasattr(Engine, "export_sources")


def source_keys(pipeline: Any) -> list[str]:
    """Every source key a pipeline holds state for (engine, miner, schemas)."""
    keys: dict[str, None] = {}
    keys.update(dict.fromkeys(p.source_key for p in pipeline.engine.profiles()))
    keys.update(dict.fromkeys(t.source_key for t in pipeline.patterns.templates()))
    keys.update(dict.fromkeys(pipeline.schemas.sources()))
    return list(keys)


def tree_source_keys(tree: dict[str, Any]) -> list[str]:
    """The source keys a whole-pipeline snapshot tree holds (without restoring it)."""
    keys: dict[str, None] = {}
    keys.update(dict.fromkeys(str(row[0]) for row in tree.get("engine", {}).get("sources", [])))
    keys.update(dict.fromkeys(str(k) for k in tree.get("patterns", {}).get("sources", {})))
    for item in tree.get("schemas", {}).get("sources", []):
        keys[str(item["source"]["key"])] = None
    return list(keys)


def export_sources(pipeline: Any, keys: Collection[str]) -> dict[str, Any]:
    """The learned state of `keys` as one tree (engine, patterns, schemas)."""
    wanted = sorted(set(keys))
    schemas = (pipeline.schemas.export_source(k) for k in wanted)
    return {
        "engine": pipeline.engine.export_sources(wanted),
        "patterns": pipeline.patterns.export_sources(wanted),
        "schemas": [s for s in schemas if s is not None],
    }


def import_sources(pipeline: Any, tree: dict[str, Any]) -> None:
    """Add the state `export_sources` gave, replacing what `pipeline` had for those sources."""
    pipeline.engine.import_sources(tree["engine"])
    pipeline.patterns.import_sources(tree["patterns"])
    for item in tree.get("schemas", []):
        pipeline.schemas.restore_source(item)


def forget_sources(pipeline: Any, keys: Collection[str]) -> None:
    """Drop everything learnt of `keys` (they moved elsewhere): the engine's profiles,
    episodes and open buckets (an empty export of them, imported, replaces what it had), the
    miner models and the schemas."""
    tree = pipeline.engine.export_sources([])
    tree["sources"] = [[k, [], 0] for k in keys]
    pipeline.engine.import_sources(tree)
    pipeline.patterns.forget_sources(keys)
    pipeline.schemas.forget_sources(keys)


def _older_states(config: Config, shards: int) -> list[tuple[str, Any]]:
    """Whole-pipeline trees this shard may take sources from, and where each came from."""
    data_dir = Path(config.state.data_dir)
    found: list[tuple[str, Any]] = []
    for path in sorted((data_dir / "shards").glob("shard-*-of-*.snap")):
        if path.name.endswith(f"-of-{shards}.snap"):
            continue
        loaded = load_snapshot(path)
        if loaded is not None:
            found.append((path.name, loaded[0]))
    if not found:
        legacy = load_state(data_dir / STATE_FILE, config.receive.source_attributes)
        if legacy is not None:
            found.append((STATE_FILE, legacy))
    return found


def migrate(pipeline: Any, config: Config, index: int, shards: int) -> str:
    """Fill a shard that has no snapshot from older state; returns where it came from."""
    from via_otlp.pipeline import Pipeline

    older = _older_states(config, shards)
    if not older:
        return "none"
    if len(older) == 1 and shards == 1:
        pipeline.restore(older[0][1])
        return older[0][0]
    if not can_split():
        log.warning(
            "shard %d: older state (%s) cannot be split by source by this engine: starting fresh",
            index,
            ", ".join(name for name, _ in older),
        )
        return "none"
    for _name, tree in older:
        whole = Pipeline(config)
        whole.restore(tree)
        mine = [k for k in source_keys(whole) if shard_of(k, shards) == index]
        if mine:
            import_sources(pipeline, export_sources(whole, mine))
    return "+".join(name for name, _ in older)


SOURCE_STATE_KIND = "via-source-state"


def encode_source(pipeline: Any, key: str) -> bytes:
    """One source's learned state as a binary snapshot (what the registry stores)."""
    return encode_tree(export_sources(pipeline, [key]), {"kind": SOURCE_STATE_KIND, "source": key})


def decode_source(data: bytes | memoryview) -> tuple[str, dict[str, Any]]:
    """The source key and the tree of `encode_source`; raises ValueError if it is not one."""
    tree, meta = decode_tree_meta(data)
    if meta.get("kind") != SOURCE_STATE_KIND:
        raise ValueError(f"not a source state (kind {meta.get('kind')!r})")
    return str(meta["source"]), tree
