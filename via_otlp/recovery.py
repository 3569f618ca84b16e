"""Crash safety: at start, what the registry knows is reconciled with the state just restored.

A snapshot is taken every `state.snapshot_interval`; a process killed between two loses what it
learnt since, but the registry has already recorded the episodes of that time. Without this,
those episodes stayed OPEN forever, and templates seen again opened a second novelty episode
for what was already reported. At start, before intake opens (`reconcile`):

1. The episodes this instance left open in the registry (`Registry.open_episodes`) are handed
   to the engines: an engine that holds the episode carries on; one that has a profile for its
   rhythm hash but not the episode *adopts* it (same id, start and score), so it is neither
   opened twice nor left open — it resolves like any other.
2. Episodes an engine restored as open but the registry has as resolved (they ended after the
   snapshot) are discarded without a second resolution.
3. The templates of this instance's episodes since the oldest restored event time
   (`Registry.known_templates`) are taught again to the source models that lost them, with
   their ids, and their rhythm hashes are remembered by the engines, so they are not novel.
4. Every episode left is resolved in the registry (and emitted, unless muted), saying why:
   the restored state did not include it.
5. The registry's write-behind buffer is flushed (bounded), so what step 4 wrote is in the
   registry before intake opens: a reader right after the start sees no episode left open.

Shards: the work runs in each shard for the sources it owns (`handle`, through the shard's
QUERY message: ``recovery_info`` and ``recover``); in process, on the one `Pipeline`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from via_otlp.model import AnomalyEvent, EpisodeState
from via_otlp.registry.records import KnownTemplate, event_from_json, event_to_json

if TYPE_CHECKING:
    from via_otlp.pipeline import Pipeline
    from via_otlp.registry import Registry

log = logging.getLogger("via_otlp.recovery")

# Templates are recovered from episodes this long before the oldest restored event time.
TEMPLATE_LOOKBACK_NS = 3600 * 10**9
RESOLVED_REASON = (
    "via-otlp restarted without this episode's state (it began after the last snapshot)"
)

Ask = Callable[..., Awaitable[list[Any]]]
"""`ask(what, **args)`: the answers of every part of the work (each shard, or the pipeline)."""


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """What one start reconciled (logged, and returned for tests)."""

    open_in_registry: int
    held: int  # open in the registry and in a restored engine
    adopted: int
    resolved: int
    discarded: int
    templates_recovered: int
    rhythms_remembered: int


# -- in the process that holds the state (a shard, or the in-process pipeline) ----------------


def handle(pipeline: Pipeline, what: str, args: dict[str, Any], owns: Callable[[str], bool]) -> Any:
    """Answer `recovery_info` or `recover` for the sources this part of the work owns."""
    engine = pipeline.engine
    if what == "recovery_info":
        return {
            "open": [ep_id for ep_id, _, _ in engine.open_episodes()],
            "max_event_ns": engine.stats().max_event_ns,
        }
    if what == "recover":
        adopted = []
        for doc in args.get("episodes", []):
            event = event_from_json(doc)
            if owns(event.source.key) and engine.adopt_episode(event):
                adopted.append(event.episode_id)
        discarded = engine.discard_episodes(args.get("discard", []))
        templates = remembered = 0
        for source_key, template_id, text, rhythm in args.get("templates", []):
            if not owns(source_key):
                continue
            templates += pipeline.patterns.recover_template(source_key, template_id, text)
            remembered += engine.remember(rhythm, source_key)
        return {
            "adopted": adopted,
            "discarded": discarded,
            "templates": templates,
            "remembered": remembered,
        }
    raise ValueError(f"unknown recovery question {what!r}")


def ask_pipeline(pipeline: Pipeline) -> Ask:
    """`Ask` for the in-process pipeline: it owns every source."""

    async def ask(what: str, **args: Any) -> list[Any]:
        return [handle(pipeline, what, args, owns=lambda _key: True)]

    return ask


# -- in the serving process ----------------------------------------------------------------


class _Gate(Protocol):
    def __call__(self, events: list[AnomalyEvent]) -> None: ...


async def reconcile(
    ask: Ask,
    registry: Registry,
    gate: _Gate,
    now_ns: int | None = None,
    flush_timeout: float = 10.0,
) -> ReconcileReport:
    """Reconcile the registry's open episodes and recent templates with the restored state
    (see the module docstring). Raises `UpstreamError` when the registry cannot be read."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    rows = await registry.open_episodes()
    infos = await ask("recovery_info")
    held = {ep_id for info in infos for ep_id in info["open"]}
    restored_times = [info["max_event_ns"] for info in infos if info.get("max_event_ns")]
    states = await registry.episode_states(sorted(held))
    discard = sorted(i for i, st in states.items() if st is EpisodeState.RESOLVED)
    templates: list[KnownTemplate] = []
    if restored_times:
        templates = await registry.known_templates(min(restored_times) - TEMPLATE_LOOKBACK_NS)
    unknown = [r for r in rows if r.episode_id not in held and r.events]
    answers = await ask(
        "recover",
        episodes=[event_to_json(r.events[-1]) for r in unknown],
        discard=discard,
        templates=[(t.source_key, t.template_id, t.template, t.rhythm_hash) for t in templates],
    )
    adopted = {ep_id for a in answers for ep_id in a["adopted"]}
    resolved = [r for r in unknown if r.episode_id not in adopted]
    for record in resolved:
        event = resolution(record.events[-1], now_ns)
        if record.muted:
            registry.record_anomaly(event, muted=True)
        else:
            gate([event])
    if resolved and not await registry.flush(flush_timeout):
        log.warning("%d resolutions of episodes not yet written to the registry after %.0fs; "
                    "they stay buffered and are written when it answers", len(resolved),
                    flush_timeout)  # fmt: skip
    report = ReconcileReport(
        open_in_registry=len(rows),
        held=len(rows) - len(unknown),
        adopted=len(adopted),
        resolved=len(resolved),
        discarded=sum(a["discarded"] for a in answers),
        templates_recovered=sum(a["templates"] for a in answers),
        rhythms_remembered=sum(a["remembered"] for a in answers),
    )
    if report.open_in_registry or report.discarded or report.templates_recovered:
        log.info(
            "reconciled with the registry: %d episodes open there (%d held by the restored "
            "state, %d adopted, %d resolved), %d discarded; %d templates and %d rhythm hashes "
            "recovered", report.open_in_registry, report.held, report.adopted, report.resolved,
            report.discarded, report.templates_recovered, report.rhythms_remembered,
        )  # fmt: skip
    return report


def resolution(last: AnomalyEvent, now_ns: int) -> AnomalyEvent:
    """The resolving event of an episode no restored engine knows, from its latest event."""
    return replace(
        last,
        state=EpisodeState.RESOLVED,
        time_ns=max(now_ns, last.time_ns),
        ended_ns=max(last.time_ns, last.started_ns),
        explanation=f"{last.explanation.split(' — ')[0]} — resolved: {RESOLVED_REASON}",
    )
