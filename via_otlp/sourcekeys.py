"""Moving learned state from the first source-key format to the current one (`source_key`).

Until state version 1 a source key joined the present identity values with ``/``, so two
identities could share a key (see `via_otlp.model.source_key`). Every place that stored a key
also stored the identity's attributes somewhere (profiles, first-seen sources, incident
members), so the new key of each old one can be computed exactly. Rhythm hashes hash the key,
so they are recomputed too; episode ids stay as they were (they are names, not derived on read).

Pure: a state document in, a state document out. The registry's rows are moved by
`via_otlp.registry.store` with the same `rekey` function.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from via_otlp.model import source_key
from via_otlp.patterns.rhythm import rhythm_hash

Attributes = list[tuple[str, str]]


def legacy_key(attributes: Sequence[tuple[str, str]]) -> str:
    """The key format of state version 1: present values joined by ``/``."""
    return "/".join(value for _, value in attributes)


def rekey(attributes: Sequence[Sequence[str]], order: Sequence[str]) -> str:
    """The current key of stored attributes (``[[name, value], ...]``)."""
    return source_key([(str(a), str(b)) for a, b in attributes], order)


class KeyMap:
    """Old key → new keys (several where old keys collided), learned from stored attributes."""

    def __init__(self, order: Sequence[str]) -> None:
        self.order = tuple(order)
        self.new_keys: dict[str, list[str]] = {}

    def learn(self, old_key: str, attributes: Sequence[Sequence[str]]) -> str:
        new = rekey(attributes, self.order)
        keys = self.new_keys.setdefault(old_key, [])
        if new not in keys:
            keys.append(new)
        return new

    def one(self, old_key: str) -> str:
        """The new key of an old one known to a single identity (else the old key itself)."""
        keys = self.new_keys.get(old_key, [])
        return keys[0] if len(keys) == 1 else old_key


def rekey_state(doc: dict[str, Any], order: Sequence[str]) -> dict[str, Any]:
    """A version-1 state document (engine, patterns, correlate parts) with current keys."""
    keys = KeyMap(order)
    hashes: dict[str, str] = {}
    engine = doc.get("engine")
    if isinstance(engine, dict):
        _rekey_engine(engine, keys, hashes)
    correlate = doc.get("correlate")
    if isinstance(correlate, dict):
        _rekey_correlate(correlate, keys, hashes)
    patterns = doc.get("patterns")
    if isinstance(patterns, dict) and isinstance(patterns.get("sources"), dict):
        moved: dict[str, Any] = {}
        for old, model in patterns["sources"].items():
            # An old key shared by two identities held one model for both: each keeps a copy.
            for new in keys.new_keys.get(old, [old]):
                moved[new] = model
        patterns["sources"] = moved
    return doc


def _rekey_engine(engine: dict[str, Any], keys: KeyMap, hashes: dict[str, str]) -> None:
    table = engine.get("table", {})
    sources = table.get("sources", [])
    for item in sources:
        item[0] = keys.learn(item[0], item[1])
    for profile in table.get("profiles", []):
        # [slot, rhythm hash, source index, template id, template, severity]
        new = rhythm_hash(sources[profile[2]][0], profile[5], profile[3])
        hashes[profile[1]] = new
        profile[1] = new
    for episode in engine.get("episodes", []):  # [episode id, rhythm hash, ...]
        episode[1] = hashes.get(episode[1], episode[1])
    for item in engine.get("sources", []):  # [key, attributes, first seen ns]
        item[0] = keys.learn(item[0], item[1])


def _rekey_correlate(state: dict[str, Any], keys: KeyMap, hashes: dict[str, str]) -> None:
    for item in state.get("open", []):
        incident = item.get("incident", {})
        for member in incident.get("members", []):
            src = member.get("source", {})
            src["key"] = keys.learn(src.get("key", ""), src.get("attributes", []))
            member["rhythm_hash"] = hashes.get(member.get("rhythm_hash"), member.get("rhythm_hash"))
    for item in state.get("open", []):
        incident = item.get("incident", {})
        incident["sources"] = [keys.one(k) for k in incident.get("sources", [])]
    state["learned"] = [[keys.one(k) for k in pair] for pair in state.get("learned", [])]
