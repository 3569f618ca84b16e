"""Patches: operator rules that steer the pipeline, and the pure matcher that applies them.

A patch selects records or anomaly events by rhythm hash (exact), source key (glob) and/or
template (glob, or a regular expression searched anywhere when written ``re:...``); every
field given must match. Its rule:

- `DROP`: matching records are ignored at intake and never enter baselines;
- `MUTE`: detection goes on and episodes are recorded, but not emitted;
- `THRESHOLD`: matching patterns use this score threshold (the largest one when several match);
- `BLOCK`: matching records are dropped before templating, so they never reach the miner
  either. There is no template nor rhythm hash yet: a BLOCK selects by source and/or body,
  its `template` glob being matched against the raw body;
- `ALLOW`: the seed plan's "always keep": matching records are never dropped or blocked and
  their anomalies never muted or held back by a threshold. ALLOW wins over every other rule.
  Against a BLOCK (before templating) its `template` glob is matched against the body, and a
  rhythm-hash-only ALLOW cannot protect from one (no hash yet).

A patch stops applying when it is inactive or its `expires_ns` has passed. `PatchSet` is
immutable: the store builds a new one on every change and swaps it in.

>>> p = Patch(PatchRule.DROP, source="shop/*", template="health check*", id="p1")
>>> PatchSet([p]).is_dropped("shop/cart", "ab12", "health check ok")
True
>>> PatchSet([p]).is_dropped("bank/ledger", "ab12", "health check ok")
False
"""

from __future__ import annotations

import enum
import fnmatch
import math
import operator
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import compress
from typing import Any

from via_otlp.errors import InputError
from via_otlp.model import AnomalyEvent, LogBatch

REGEX_PREFIX = "re:"
MAX_SELECTOR_LENGTH = 1000


class PatchRule(enum.StrEnum):
    """What a patch does to what it selects."""

    MUTE = "MUTE"
    DROP = "DROP"
    THRESHOLD = "THRESHOLD"
    ALLOW = "ALLOW"
    BLOCK = "BLOCK"


def new_patch_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Patch:
    """One operator rule. Times are Unix nanoseconds; `expires_ns == 0` means never."""

    rule: PatchRule
    rhythm_hash: str = ""
    source: str = ""
    template: str = ""
    threshold: float | None = None
    reason: str = ""
    author: str = ""
    id: str = field(default_factory=new_patch_id)
    created_ns: int = 0
    expires_ns: int = 0
    active: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.rule, PatchRule):
            raise InputError(f"patch rule must be one of {', '.join(PatchRule)}, got {self.rule!r}")
        if not (self.rhythm_hash or self.source or self.template):
            raise InputError(
                "a patch must select something", hint="set rhythm_hash, source and/or template"
            )
        for name in ("rhythm_hash", "source", "template"):
            if len(getattr(self, name)) > MAX_SELECTOR_LENGTH:
                raise InputError(f"patch {name} is longer than {MAX_SELECTOR_LENGTH} characters")
        self._check_threshold()
        if self.rule is PatchRule.BLOCK and self.rhythm_hash:
            raise InputError(
                "a BLOCK patch cannot select by rhythm hash: records are blocked before they "
                "have one",
                hint="select by source and/or template (a glob matched against the body)",
            )
        if self.expires_ns < 0 or self.created_ns < 0:
            raise InputError("patch times must be >= 0 (expires_ns 0 means never)")
        if not self.id:
            raise InputError("patch id must not be empty")
        _compile(self.template, "template")
        _compile(self.source, "source")

    def _check_threshold(self) -> None:
        if self.rule is PatchRule.THRESHOLD:
            if self.threshold is None or not math.isfinite(self.threshold) or self.threshold <= 0:
                raise InputError(f"a THRESHOLD patch needs a threshold > 0, got {self.threshold!r}")
        elif self.threshold is not None:
            raise InputError(f"only THRESHOLD patches take a threshold ({self.rule} given one)")

    def applies_at(self, now_ns: int) -> bool:
        """Active and not expired at `now_ns`."""
        return self.active and (self.expires_ns == 0 or now_ns < self.expires_ns)


def _compile(selector: str, name: str) -> re.Pattern[str] | None:
    """A glob as an anchored regex, ``re:...`` as a searched regex, "" as None (any)."""
    if not selector:
        return None
    if selector.startswith(REGEX_PREFIX):
        try:
            return re.compile(selector[len(REGEX_PREFIX) :])
        except re.error as exc:
            raise InputError(f"patch {name} is not a valid regular expression: {exc}") from None
    return re.compile(fnmatch.translate(selector))


class _Matcher:
    """A patch with its selectors compiled."""

    __slots__ = ("_source", "_template", "patch")

    def __init__(self, patch: Patch) -> None:
        self.patch = patch
        self._source = _compile(patch.source, "source")
        self._template = _compile(patch.template, "template")

    def matches(self, source_key: str, rhythm_hash: str, template: str) -> bool:
        p = self.patch
        if p.rhythm_hash and p.rhythm_hash != rhythm_hash:
            return False
        if self._source is not None and not _hit(self._source, source_key, p.source):
            return False
        return self._template is None or _hit(self._template, template, p.template)


def _hit(pattern: re.Pattern[str], text: str, selector: str) -> bool:
    if selector.startswith(REGEX_PREFIX):
        return pattern.search(text) is not None
    return pattern.match(text) is not None


class PatchSet:
    """An immutable set of patches and the questions the pipeline asks of it."""

    def __init__(self, patches: Iterable[Patch] = ()) -> None:
        self.patches: tuple[Patch, ...] = tuple(patches)
        by_rule: dict[PatchRule, list[_Matcher]] = {rule: [] for rule in PatchRule}
        for p in self.patches:
            if p.active:
                by_rule[p.rule].append(_Matcher(p))
        self._by_rule = by_rule

    def __len__(self) -> int:
        return len(self.patches)

    def active(self, now_ns: int | None = None) -> list[Patch]:
        """The patches that apply now."""
        now = time.time_ns() if now_ns is None else now_ns
        return [p for p in self.patches if p.applies_at(now)]

    def _matching(
        self, rule: PatchRule, source_key: str, rhythm_hash: str, template: str, now_ns: int | None
    ) -> list[Patch]:
        matchers = self._by_rule[rule]
        if not matchers:
            return []
        now = time.time_ns() if now_ns is None else now_ns
        return [
            m.patch
            for m in matchers
            if m.patch.applies_at(now) and m.matches(source_key, rhythm_hash, template)
        ]

    def is_allowed(
        self, source_key: str, rhythm_hash: str, template: str, now_ns: int | None = None
    ) -> bool:
        """Whether an ALLOW patch keeps this pattern whatever other patches say."""
        return bool(self._matching(PatchRule.ALLOW, source_key, rhythm_hash, template, now_ns))

    def is_dropped(
        self, source_key: str, rhythm_hash: str, template: str, now_ns: int | None = None
    ) -> bool:
        """Whether records of this pattern are dropped at intake (and no ALLOW keeps them)."""
        return bool(
            self._matching(PatchRule.DROP, source_key, rhythm_hash, template, now_ns)
        ) and not self.is_allowed(source_key, rhythm_hash, template, now_ns)

    def is_blocked(self, source_key: str, body: str, now_ns: int | None = None) -> bool:
        """Whether a record is blocked before templating (BLOCK and ALLOW see the body)."""
        return bool(self._matching(PatchRule.BLOCK, source_key, "", body, now_ns)) and not bool(
            self._matching(PatchRule.ALLOW, source_key, "", body, now_ns)
        )

    def is_muted(self, event: AnomalyEvent, now_ns: int | None = None) -> bool:
        """Whether this event is recorded but not emitted (and no ALLOW keeps it)."""
        key, h, t = event.source.key, event.rhythm_hash, event.template
        return bool(self._matching(PatchRule.MUTE, key, h, t, now_ns)) and not self.is_allowed(
            key, h, t, now_ns
        )

    def threshold_for(
        self, source_key: str, rhythm_hash: str, template: str, now_ns: int | None = None
    ) -> float | None:
        """The score threshold patched for this pattern (largest of the matches), or None
        (always None when an ALLOW keeps the pattern)."""
        found = self._matching(PatchRule.THRESHOLD, source_key, rhythm_hash, template, now_ns)
        if not found or self.is_allowed(source_key, rhythm_hash, template, now_ns):
            return None
        return max((p.threshold for p in found if p.threshold is not None), default=None)

    def is_below_threshold(self, event: AnomalyEvent, now_ns: int | None = None) -> bool:
        """Whether a patched threshold for the event's pattern is above its score."""
        t = self.threshold_for(event.source.key, event.rhythm_hash, event.template, now_ns)
        return t is not None and event.score < t

    def has_drops(self, now_ns: int | None = None) -> bool:
        """Whether any DROP patch applies now (the hot path skips everything when not)."""
        now = time.time_ns() if now_ns is None else now_ns
        return any(m.patch.applies_at(now) for m in self._by_rule[PatchRule.DROP])

    def has_blocks(self, now_ns: int | None = None) -> bool:
        """Whether any BLOCK patch applies now (intake skips the body matching when not)."""
        now = time.time_ns() if now_ns is None else now_ns
        return any(m.patch.applies_at(now) for m in self._by_rule[PatchRule.BLOCK])

    def apply_blocks(self, batch: LogBatch, now_ns: int | None = None) -> tuple[LogBatch, int]:
        """`batch` (not yet templated) without the records BLOCK patches select, and how many
        were blocked. Decided once per distinct (source, body)."""
        now = time.time_ns() if now_ns is None else now_ns
        if not self.has_blocks(now) or not len(batch):
            return batch, 0
        keys = list(zip(batch.source_index, batch.body, strict=True))
        decided = {
            k: self.is_blocked(batch.sources[k[0]].key, k[1], now) for k in dict.fromkeys(keys)
        }
        if not any(decided.values()):
            return batch, 0
        keep = [i for i, k in enumerate(keys) if not decided[k]]
        return batch.select(keep), len(keys) - len(keep)

    def drop_mask(self, batch: LogBatch, now_ns: int | None = None) -> list[bool]:
        """Per record of `batch`: True when a DROP patch selects it."""
        now = time.time_ns() if now_ns is None else now_ns
        if not self.has_drops(now):
            return [False] * len(batch)
        keys, decided = self._decide_drops(batch, now)
        return list(map(decided.__getitem__, keys))

    def _decide_drops(self, batch: LogBatch, now: int) -> tuple[list[Any], dict[Any, bool]]:
        """Decide once per distinct rhythm hash, not per record.

        A rhythm hash fixes source, severity and template, so it is a complete key; before the
        patterns stage ran (no hashes yet), the source is.
        """
        n = len(batch)
        if len(batch.rhythm_hash) == n and len(batch.template) == n:
            hashes, templates, index = batch.rhythm_hash, batch.template, batch.source_index
            first = dict(zip(hashes, range(n), strict=True))  # one record per distinct hash
            decided = {
                h: self.is_dropped(batch.sources[index[i]].key, h, templates[i], now)
                for h, i in first.items()
            }
            return hashes, decided
        sources = dict.fromkeys(batch.source_index)
        return batch.source_index, {
            s: self.is_dropped(batch.sources[s].key, "", "", now) for s in sources
        }

    def apply_drops(self, batch: LogBatch, now_ns: int | None = None) -> tuple[LogBatch, int]:
        """`batch` without the records DROP patches select, and how many were dropped."""
        now = time.time_ns() if now_ns is None else now_ns
        if not self.has_drops(now):
            return batch, 0
        keys, decided = self._decide_drops(batch, now)
        if not any(decided.values()):
            return batch, 0
        mask = list(map(decided.__getitem__, keys))
        keep = list(compress(range(len(mask)), map(operator.not_, mask)))
        return batch.select(keep), len(mask) - len(keep)


EMPTY_PATCHES = PatchSet()
