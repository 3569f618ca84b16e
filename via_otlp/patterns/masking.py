"""Masking: replace the obvious variables (ids, addresses, numbers...) before mining.

The ordered rules are compiled once into ONE alternation, so a body is scanned once whatever
the number of rules; at each position the first rule (in configured order) that matches wins.
Adjacent masks joined only by ``-``, ``.``, ``:``, ``_`` or ``/`` collapse into one mask: a block
id such as ``BP-1347369012-10.190.173.170-1444972147527:blk_1073742826_2022`` is one variable.

>>> m = Masker.from_rules(DEFAULT_MASKING)
>>> m.mask("user 42 from 10.0.0.1:443 took 12ms")
'user <*> from <*> took <*>'
>>> m.mask("GET /api/v1/users/17 failed")
'GET <*> failed'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from via_otlp.patterns.config import DEFAULT_MASKING, MaskRule

WILDCARD = "<*>"
_COLLAPSE = re.compile(r"<\*>(?:[-.:_/]+<\*>)+")
# A digit outside a `{m,n}` quantifier or an escape makes a rule digit-specific.
_LITERAL_DIGIT = re.compile(r"(?<!\\)(?<!\{)(?<!,)\d(?![\d,]*\})")


class Masker:
    """Applies an ordered list of `MaskRule`s with one compiled regex."""

    __slots__ = ("_masks", "_pattern", "_single", "digit_agnostic", "rules")

    def __init__(self, rules: tuple[MaskRule, ...]) -> None:
        self.rules = rules
        parts = [f"(?P<_m{i}>{rule.regex})" for i, rule in enumerate(rules)]
        self._pattern: re.Pattern[str] | None = re.compile("|".join(parts)) if parts else None
        masks = {rule.mask for rule in rules}
        self._single = masks.pop() if len(masks) == 1 else None
        index = self._pattern.groupindex if self._pattern else {}
        self._masks = {index[f"_m{i}"]: rule.mask for i, rule in enumerate(rules)}
        self.digit_agnostic = not any(_LITERAL_DIGIT.search(rule.regex) for rule in rules)

    @classmethod
    def from_rules(cls, rules: Iterable[MaskRule]) -> Masker:
        """Compile `rules` (already validated by the config loader)."""
        return cls(tuple(rules))

    def _replace(self, m: re.Match[str]) -> str:
        return self._masks[m.lastindex or 0]

    def mask(self, text: str) -> str:
        """`text` with every rule match replaced by its mask, adjacent masks collapsed."""
        if self._pattern is None:
            return text
        out = self._pattern.sub(self._single if self._single is not None else self._replace, text)
        if "<*>" in out:
            i = out.find("<*>")
            if out.find("<*>", i + 3) >= 0:
                out = _COLLAPSE.sub(WILDCARD, out)
        return out


__all__ = ["DEFAULT_MASKING", "WILDCARD", "Masker"]
