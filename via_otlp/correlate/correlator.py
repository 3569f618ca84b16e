"""The correlator: anomaly episodes → incidents. Pure: no I/O, no clock, no randomness.

`observe(event, vector)` takes each anomaly event (an episode opening or resolving) with the
embedding of its template (or None when the embeddings provider is away), and returns what
happened to incidents. A new episode is compared with the members of every open incident:

- **temporal**: the two episodes began at most `window` apart, or one began at most `window`
  after the other ended (`onset_gap`); confidence = relatedness(sources) × (0.5 + 0.5 ×
  (1 − gap / window)). Mere overlap is not enough: an episode that stays open for hours (a slow
  drift) would otherwise pull in everything related that starts meanwhile. Sources are related
  when they are the same (1.0), a configured dependency pair (0.9), have shared a trace before
  (0.8, learned), share a namespace (0.6), or else (0.2) — so two simultaneous anomalies in
  unrelated services do not link;
- **trace**: their sample trace ids intersect; confidence `trace_confidence`;
- **semantic**: cosine of their template vectors ≥ `semantic_threshold`; confidence = cosine.

Links below `min_link_confidence` are ignored. The episode joins the incident it links to most
strongly, or opens a new one. If it links to several incidents at `merge_confidence` or more,
they are merged into the oldest (the others end with a MERGED event). Sample trace ids that
arrive with a resolution can merge incidents too. An incident resolves when all its episodes
have and `resolve_cooldown` of event time has passed without a new member.

Time is event time: the largest `time_ns` seen (the watermark); `advance(now_ns)` lets a live
service move it with the wall clock. Ids are deterministic: an incident's id is a hash of its
root episode id, so a replay gives the same incidents.

>>> from via_otlp.correlate.config import CorrelateConfig
>>> c = Correlator(CorrelateConfig(resolve_cooldown=0))
>>> c.stats().open_incidents
0
"""

from __future__ import annotations

import base64
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xxhash

from via_otlp.correlate.config import CorrelateConfig, parse_dependency
from via_otlp.errors import ConfigError
from via_otlp.model import (
    AnomalyEvent,
    AnomalyKind,
    EpisodeState,
    Incident,
    IncidentEvent,
    IncidentEventKind,
    IncidentLink,
    IncidentMember,
    IncidentState,
    LinkType,
    Source,
)

SNAPSHOT_VERSION = 1
MAX_TRACE_IDS_PER_MEMBER = 32
TITLE_TEMPLATE_CHARS = 120


def incident_id(root_episode_id: str) -> str:
    """Deterministic incident id: xxh64 of the root episode id, 16 hex digits.

    >>> incident_id("55db5abaf08779a5")
    '5f8d04b3216a2aa4'
    """
    return xxhash.xxh64_hexdigest(b"incident\x1f" + root_episode_id.encode())


@dataclass(frozen=True, slots=True)
class CorrelatorStats:
    """Counters of one correlator (`open_incidents` is a gauge)."""

    open_incidents: int
    episodes_seen: int
    incidents_opened: int
    incidents_resolved: int
    incidents_merged: int
    incidents_evicted: int
    links_temporal: int
    links_trace: int
    links_semantic: int
    episodes_without_vector: int
    late_events: int
    members_overflow: int


@dataclass(slots=True)
class _Member:
    episode_id: str
    kind: AnomalyKind
    state: EpisodeState
    source: Source
    rhythm_hash: str
    template_id: str
    template: str
    severity: str
    started_ns: int
    ended_ns: int
    score: float
    trace_ids: list[str]
    vector: np.ndarray | None = None

    @classmethod
    def from_event(cls, e: AnomalyEvent, vector: np.ndarray | None) -> _Member:
        return cls(
            e.episode_id, e.kind, e.state, e.source, e.rhythm_hash, e.template_id, e.template,
            e.severity, e.started_ns, e.ended_ns, float(e.score),
            list(dict.fromkeys(t for t in e.sample_trace_ids if t))[:MAX_TRACE_IDS_PER_MEMBER],
            _unit(vector),
        )  # fmt: skip

    @classmethod
    def from_frozen(cls, m: IncidentMember, vector: np.ndarray | None) -> _Member:
        return cls(
            m.episode_id, m.kind, m.state, m.source, m.rhythm_hash, m.template_id, m.template,
            m.severity, m.started_ns, m.ended_ns, m.score, list(m.trace_ids), vector,
        )  # fmt: skip

    def freeze(self) -> IncidentMember:
        return IncidentMember(
            self.episode_id, self.kind, self.state, self.source, self.rhythm_hash,
            self.template_id, self.template, self.severity, self.started_ns, self.ended_ns,
            self.score, tuple(self.trace_ids),
        )  # fmt: skip


@dataclass(slots=True)
class _Incident:
    id: str
    root: str
    members: dict[str, _Member] = field(default_factory=dict)
    links: list[IncidentLink] = field(default_factory=list)
    link_keys: set[tuple[str, str, LinkType]] = field(default_factory=set)
    extra_open: set[str] = field(default_factory=set)  # members beyond max_members, still open
    time_ns: int = 0
    all_resolved_ns: int = 0  # event time when the last member resolved; 0 while any is open
    resolved: bool = False
    merged_into: str = ""


class Correlator:
    """Groups anomaly episodes into incidents (see the module docstring for the rules)."""

    def __init__(self, config: CorrelateConfig) -> None:
        for part, obj in (("", config), ("relatedness.", config.relatedness)):
            try:
                obj.check()
            except ConfigError as exc:
                raise ConfigError(
                    f"correlate.{part}{exc.path}", exc.message.split(": ", 1)[-1]
                ) from None
        self.config = config
        self._window_ns = max(1, round(config.window * 1e9))
        self._cooldown_ns = round(config.resolve_cooldown * 1e9)
        self._deps = {frozenset(parse_dependency(d)) for d in config.relatedness.dependencies}
        self._open: dict[str, _Incident] = {}
        self._episodes: OrderedDict[str, str] = OrderedDict()
        self._merged: OrderedDict[str, str] = OrderedDict()
        self._learned: OrderedDict[frozenset[str], None] = OrderedDict()
        self._watermark = 0
        self._c: Counter[str] = Counter()

    # -- public ---------------------------------------------------------------------------------

    def observe(self, event: AnomalyEvent, vector: np.ndarray | None = None) -> list[IncidentEvent]:
        """Take one anomaly event (and its template's unit vector); return incident changes."""
        out = self._advance(max(self._watermark, event.time_ns))
        known = self._incident_id_of(event.episode_id)
        if known is not None:
            inc = self._open.get(known)
            if inc is None:
                self._c["late_events"] += 1
                return out
            out += self._update(inc, event, vector)
        else:
            out += self._join(_Member.from_event(event, vector), event.time_ns)
        return out + self._advance(self._watermark)

    def advance(self, now_ns: int) -> list[IncidentEvent]:
        """Move event time to `now_ns` (never back): resolve incidents whose cool-down passed."""
        return self._advance(max(self._watermark, int(now_ns)))

    def flush(self) -> list[IncidentEvent]:
        """End of input: resolve every incident whose episodes all resolved, cool-down or not."""
        out: list[IncidentEvent] = []
        for inc in list(self._open.values()):
            if inc.all_resolved_ns:
                out.append(self._resolve(inc, max(self._watermark, inc.all_resolved_ns)))
        return out

    def attach_vector(self, episode_id: str, vector: np.ndarray) -> bool:
        """Give a member of an open incident its vector late (the provider was away); True if used.

        Later episodes can then link to it semantically; links already decided are not revisited.
        """
        inc = self._open.get(self._incident_id_of(episode_id) or "")
        m = inc.members.get(episode_id) if inc is not None else None
        if m is None or m.vector is not None:
            return False
        m.vector = _unit(vector)
        return m.vector is not None

    def incident_of(self, episode_id: str) -> str | None:
        """The id of the incident `episode_id` belongs to now (following merges), if remembered."""
        return self._incident_id_of(episode_id)

    def get(self, incident_id: str) -> Incident | None:
        """An open incident as it is now (None once resolved: ask the registry)."""
        inc = self._open.get(self._follow(incident_id))
        return self._freeze(inc) if inc is not None else None

    def open_incidents(self) -> list[Incident]:
        return [self._freeze(i) for i in self._open.values()]

    @property
    def watermark(self) -> int:
        return self._watermark

    def relatedness(self, a: Source, b: Source) -> float:
        """How related two sources are, 0..1 (see `RelatednessConfig`)."""
        r = self.config.relatedness
        if a.key == b.key:
            return r.same_source
        best = r.other
        if frozenset((a.service_name, b.service_name)) in self._deps or (
            frozenset((a.key, b.key)) in self._deps
        ):
            best = max(best, r.dependency)
        if frozenset((a.key, b.key)) in self._learned:
            best = max(best, r.learned)
        ns_a, ns_b = _attr(a, r.namespace_attribute), _attr(b, r.namespace_attribute)
        if ns_a and ns_a == ns_b:
            best = max(best, r.same_namespace)
        return best

    def stats(self) -> CorrelatorStats:
        c = self._c
        return CorrelatorStats(
            open_incidents=len(self._open),
            episodes_seen=c["episodes_seen"],
            incidents_opened=c["incidents_opened"],
            incidents_resolved=c["incidents_resolved"],
            incidents_merged=c["incidents_merged"],
            incidents_evicted=c["incidents_evicted"],
            links_temporal=c["links_temporal"],
            links_trace=c["links_trace"],
            links_semantic=c["links_semantic"],
            episodes_without_vector=c["episodes_without_vector"],
            late_events=c["late_events"],
            members_overflow=c["members_overflow"],
        )

    # -- joining ---------------------------------------------------------------------------------

    def _join(self, member: _Member, time_ns: int) -> list[IncidentEvent]:
        self._c["episodes_seen"] += 1
        if member.vector is None:
            self._c["episodes_without_vector"] += 1
        scored: list[tuple[float, _Incident, list[IncidentLink]]] = []
        for inc in self._open.values():
            links = self._links(member, inc, time_ns, all_types=True)
            if links:
                scored.append((links[0].confidence, inc, links))
        out: list[IncidentEvent] = []
        if not scored:
            out += self._make_room(time_ns)
            inc = _Incident(incident_id(member.episode_id), member.episode_id, time_ns=time_ns)
            self._open[inc.id] = inc
            self._add_member(inc, member)
            self._c["incidents_opened"] += 1
            out.append(IncidentEvent(IncidentEventKind.OPENED, self._freeze(inc), time_ns))
            return out
        scored.sort(key=lambda s: (-s[0], _age_key(s[1])))
        target = scored[0][1]
        group = [s for s in scored if s[0] >= self.config.merge_confidence]
        if len(group) >= 2:
            target = min((s[1] for s in group), key=_age_key)
            for _, other, _ in group:
                if other is not target:
                    out.append(self._absorb(other, target, time_ns))
        links = [link for s in (group if len(group) >= 2 else scored[:1]) for link in s[2]]
        self._add_member(target, member)
        self._add_links(target, self._strongest(links))
        target.time_ns = max(target.time_ns, time_ns)
        out.append(IncidentEvent(IncidentEventKind.UPDATED, self._freeze(target), time_ns))
        return out

    def _update(
        self, inc: _Incident, event: AnomalyEvent, vector: np.ndarray | None
    ) -> list[IncidentEvent]:
        out: list[IncidentEvent] = []
        m = inc.members.get(event.episode_id)
        time_ns = event.time_ns
        if m is None:  # an overflow member: only its open/resolved state is tracked
            if event.state is EpisodeState.RESOLVED:
                inc.extra_open.discard(event.episode_id)
        else:
            if event.state is EpisodeState.RESOLVED:
                m.state = EpisodeState.RESOLVED
                m.ended_ns = max(m.ended_ns, event.ended_ns or event.time_ns)
            m.score = max(m.score, float(event.score))
            if m.vector is None and vector is not None:
                m.vector = _unit(vector)
            new = [t for t in event.sample_trace_ids if t and t not in m.trace_ids]
            room = MAX_TRACE_IDS_PER_MEMBER - len(m.trace_ids)
            m.trace_ids.extend(new[: max(0, room)])
            if new:
                own = self._links(m, inc, time_ns, all_types=False)
                self._add_links(inc, self._strongest(own))
                for other in [o for o in self._open.values() if o is not inc]:
                    links = self._links(m, other, time_ns, all_types=False)
                    if links and links[0].confidence >= self.config.merge_confidence:
                        keep, gone = sorted((inc, other), key=_age_key)
                        out.append(self._absorb(gone, keep, time_ns))
                        self._add_links(keep, self._strongest(links))
                        inc = keep
        inc.time_ns = max(inc.time_ns, time_ns)
        self._refresh_resolution(inc, time_ns)
        out.append(IncidentEvent(IncidentEventKind.UPDATED, self._freeze(inc), time_ns))
        return out

    def _links(
        self, e: _Member, inc: _Incident, time_ns: int, *, all_types: bool
    ) -> list[IncidentLink]:
        """Links from `e` to the members of `inc` at or above `min_link_confidence`, strongest first."""
        cfg = self.config
        out: list[IncidentLink] = []
        traces = set(e.trace_ids)
        for m in inc.members.values():
            if m.episode_id == e.episode_id:
                continue
            shared = traces.intersection(m.trace_ids) if traces else ()
            if shared:
                conf = min(1.0, cfg.trace_confidence + 0.01 * (len(shared) - 1))
                out.append(IncidentLink(e.episode_id, m.episode_id, LinkType.TRACE, conf, time_ns))
            if not all_types:
                continue
            gap = onset_gap(e, m)
            if gap <= self._window_ns:
                rel = self.relatedness(e.source, m.source)
                conf = rel * (0.5 + 0.5 * (1.0 - gap / self._window_ns))
                if conf >= cfg.min_link_confidence:
                    out.append(
                        IncidentLink(e.episode_id, m.episode_id, LinkType.TEMPORAL, conf, time_ns)
                    )
            if e.vector is not None and m.vector is not None:
                cos = float(np.dot(e.vector, m.vector))
                if cos >= cfg.semantic_threshold:
                    out.append(
                        IncidentLink(
                            e.episode_id, m.episode_id, LinkType.SEMANTIC, min(1.0, cos), time_ns
                        )
                    )
        out = [link for link in out if link.confidence >= cfg.min_link_confidence]
        out.sort(key=lambda x: (-x.confidence, x.linked_episode_id, x.type.value))
        return out

    def _strongest(self, links: Iterable[IncidentLink]) -> list[IncidentLink]:
        ordered = sorted(links, key=lambda x: (-x.confidence, x.linked_episode_id, x.type.value))
        return ordered[: self.config.max_links_per_episode]

    def _add_member(self, inc: _Incident, m: _Member) -> None:
        self._remember(m.episode_id, inc.id)
        if len(inc.members) >= self.config.max_members:
            self._c["members_overflow"] += 1
            if m.state is not EpisodeState.RESOLVED:
                inc.extra_open.add(m.episode_id)
        else:
            inc.members[m.episode_id] = m
        inc.all_resolved_ns = 0 if m.state is not EpisodeState.RESOLVED else inc.all_resolved_ns
        self._refresh_resolution(inc, max(self._watermark, m.ended_ns))

    def _add_links(self, inc: _Incident, links: Iterable[IncidentLink]) -> None:
        for link in links:
            key = (link.episode_id, link.linked_episode_id, link.type)
            rkey = (link.linked_episode_id, link.episode_id, link.type)
            if key in inc.link_keys or rkey in inc.link_keys:
                continue
            inc.link_keys.add(key)
            inc.links.append(link)
            self._c[f"links_{link.type.value}"] += 1
            if link.type is LinkType.TRACE:
                a = inc.members.get(link.episode_id)
                b = inc.members.get(link.linked_episode_id)
                if a is not None and b is not None and a.source.key != b.source.key:
                    self._learn(frozenset((a.source.key, b.source.key)))

    def _absorb(self, gone: _Incident, keep: _Incident, time_ns: int) -> IncidentEvent:
        """Merge `gone` into `keep`; `gone`'s last event (MERGED)."""
        for m in gone.members.values():
            self._add_member(keep, m)
        keep.extra_open |= gone.extra_open
        for eid in gone.extra_open:
            self._remember(eid, keep.id)
        self._add_links(keep, gone.links)
        keep.time_ns = max(keep.time_ns, gone.time_ns, time_ns)
        self._refresh_resolution(keep, time_ns)
        del self._open[gone.id]
        gone.resolved = True
        gone.merged_into = keep.id
        gone.time_ns = time_ns
        self._merged[gone.id] = keep.id
        while len(self._merged) > self.config.max_episodes_remembered:
            self._merged.popitem(last=False)
        self._c["incidents_merged"] += 1
        return IncidentEvent(IncidentEventKind.MERGED, self._freeze(gone), time_ns)

    # -- resolution ------------------------------------------------------------------------------

    def _refresh_resolution(self, inc: _Incident, time_ns: int) -> None:
        open_members = inc.extra_open or any(
            m.state is not EpisodeState.RESOLVED for m in inc.members.values()
        )
        if open_members:
            inc.all_resolved_ns = 0
        elif not inc.all_resolved_ns:
            inc.all_resolved_ns = max(time_ns, *(m.ended_ns for m in inc.members.values()))

    def _advance(self, now_ns: int) -> list[IncidentEvent]:
        self._watermark = now_ns
        out: list[IncidentEvent] = []
        for inc in list(self._open.values()):
            if inc.all_resolved_ns and now_ns >= inc.all_resolved_ns + self._cooldown_ns:
                out.append(self._resolve(inc, max(now_ns, inc.all_resolved_ns)))
        return out

    def _resolve(self, inc: _Incident, time_ns: int) -> IncidentEvent:
        del self._open[inc.id]
        inc.resolved = True
        inc.time_ns = max(inc.time_ns, time_ns)
        self._c["incidents_resolved"] += 1
        return IncidentEvent(IncidentEventKind.RESOLVED, self._freeze(inc), time_ns)

    def _make_room(self, time_ns: int) -> list[IncidentEvent]:
        out: list[IncidentEvent] = []
        while len(self._open) >= self.config.max_open_incidents:
            oldest = min(self._open.values(), key=lambda i: (i.time_ns, i.id))
            self._c["incidents_evicted"] += 1
            out.append(self._resolve(oldest, time_ns))
        return out

    # -- memory ----------------------------------------------------------------------------------

    def _remember(self, episode_id: str, inc_id: str) -> None:
        self._episodes[episode_id] = inc_id
        self._episodes.move_to_end(episode_id)
        while len(self._episodes) > self.config.max_episodes_remembered:
            self._episodes.popitem(last=False)

    def _learn(self, pair: frozenset[str]) -> None:
        limit = self.config.relatedness.max_learned_pairs
        if not limit:
            return
        self._learned[pair] = None
        self._learned.move_to_end(pair)
        while len(self._learned) > limit:
            self._learned.popitem(last=False)

    def _follow(self, inc_id: str) -> str:
        seen = 0
        while inc_id in self._merged and seen < 64:
            inc_id = self._merged[inc_id]
            seen += 1
        return inc_id

    def _incident_id_of(self, episode_id: str) -> str | None:
        found = self._episodes.get(episode_id)
        return self._follow(found) if found is not None else None

    # -- views -----------------------------------------------------------------------------------

    def _freeze(self, inc: _Incident) -> Incident:
        members = sorted(inc.members.values(), key=lambda m: (m.started_ns, m.episode_id))
        sources = tuple(dict.fromkeys(m.source.key for m in members))
        strongest = max(members, key=lambda m: (m.score, -m.started_ns)) if members else None
        all_resolved = bool(inc.all_resolved_ns)
        return Incident(
            id=inc.id,
            title=_title(strongest) if strongest is not None else "",
            state=IncidentState.RESOLVED if inc.resolved else IncidentState.OPEN,
            started_ns=min((m.started_ns for m in members), default=0),
            ended_ns=max((m.ended_ns for m in members), default=0) if all_resolved else 0,
            time_ns=inc.time_ns,
            score=max((m.score for m in members), default=0.0),
            root_episode_id=inc.root,
            sources=sources,
            members=tuple(m.freeze() for m in members),
            links=tuple(inc.links),
            merged_into=inc.merged_into,
        )

    # -- state -----------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Versioned JSON of the open incidents (with member vectors) and what is remembered."""
        return {
            "v": SNAPSHOT_VERSION,
            "watermark": self._watermark,
            "open": [
                {
                    "incident": self._freeze(inc).to_json(),
                    "vectors": {
                        m.episode_id: _vec_to_text(m.vector)
                        for m in inc.members.values()
                        if m.vector is not None
                    },
                    "extra_open": sorted(inc.extra_open),
                    "all_resolved_ns": inc.all_resolved_ns,
                }
                for inc in self._open.values()
            ],
            "episodes": [[e, i] for e, i in self._episodes.items()],
            "merged": [[a, b] for a, b in self._merged.items()],
            "learned": [sorted(p) for p in self._learned],
            "counters": dict(self._c),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Replace the state with a `snapshot()`; a snapshot of another version is a ValueError."""
        if state.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported correlator snapshot version {state.get('v')!r}")
        self._open.clear()
        for item in state["open"]:
            frozen = Incident.from_json(item["incident"])
            vectors = item.get("vectors", {})
            inc = _Incident(
                frozen.id,
                frozen.root_episode_id,
                time_ns=frozen.time_ns,
                all_resolved_ns=int(item.get("all_resolved_ns", 0)),
                extra_open=set(item.get("extra_open", ())),
            )
            for m in frozen.members:
                v = vectors.get(m.episode_id)
                inc.members[m.episode_id] = _Member.from_frozen(m, _vec_from_text(v) if v else None)
            inc.links = list(frozen.links)
            inc.link_keys = {(x.episode_id, x.linked_episode_id, x.type) for x in frozen.links}
            self._open[inc.id] = inc
        self._episodes = OrderedDict((str(e), str(i)) for e, i in state.get("episodes", ()))
        self._merged = OrderedDict((str(a), str(b)) for a, b in state.get("merged", ()))
        self._learned = OrderedDict((frozenset(p), None) for p in state.get("learned", ()))
        self._watermark = int(state.get("watermark", 0))
        self._c = Counter({str(k): int(v) for k, v in state.get("counters", {}).items()})


def onset_gap(a: _Member | IncidentMember, b: _Member | IncidentMember) -> int:
    """How far apart two episodes began, or one began after the other ended (ns, the smaller).

    Failures with one cause begin together (a callee and its callers), or one follows the
    other's end (a drop, then the catch-up spike); an episode beginning hours into another
    one's long tail is not evidence of a common cause.
    """
    gap = abs(a.started_ns - b.started_ns)
    for first, then in ((a, b), (b, a)):
        if first.state is EpisodeState.RESOLVED and first.ended_ns:
            gap = min(gap, abs(then.started_ns - first.ended_ns))
    return gap


def _age_key(inc: _Incident) -> tuple[int, str]:
    started = min((m.started_ns for m in inc.members.values()), default=0)
    return started, inc.id


def _attr(source: Source, name: str) -> str:
    for k, v in source.attributes:
        if k == name:
            return v
    return ""


def _title(m: _Member) -> str:
    service = m.source.service_name
    where = m.source.key if service == "unknown_service" else service
    template = (
        m.template
        if len(m.template) <= TITLE_TEMPLATE_CHARS
        else m.template[: TITLE_TEMPLATE_CHARS - 1] + "…"
    )
    return f"{m.kind.value} in {where}: {template}"


def _unit(vector: np.ndarray | None) -> np.ndarray | None:
    if vector is None:
        return None
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else None


def _vec_to_text(v: np.ndarray) -> str:
    return base64.b64encode(v.astype("<f2").tobytes()).decode("ascii")


def _vec_from_text(text: str) -> np.ndarray | None:
    raw = np.frombuffer(base64.b64decode(text), dtype="<f2").astype(np.float32)
    return _unit(raw)
