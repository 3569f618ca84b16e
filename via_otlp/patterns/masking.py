"""Masking: replace the obvious variables (ids, addresses, numbers...) before mining.

The ordered rules are compiled once. A rule that can match whitespace (a quoted string, a
size such as ``16.0 MB``) runs over the whole line, first; every other rule runs inside one
whitespace-separated token, and the masked form of a token is cached, so that the words that
make up most of every line cost one dictionary look-up. Within each group, the rules are ONE
alternation: at each position the first rule (in configured order) that matches wins.
Adjacent masks joined only by ``-``, ``.``, ``:``, ``_`` or ``/`` collapse into one mask: a block
id such as ``BP-1347369012-10.190.173.170-1444972147527:blk_1073742826_2022`` is one variable.

>>> m = Masker.from_rules(DEFAULT_MASKING)
>>> m.mask("user 42 from 10.0.0.1:443 took 12ms")
'user <*> from <*> took <*>'
>>> m.mask('GET /api/v1/users/17 failed: "no such user"')
'GET <*> failed: "<*>"'
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from typing import Any

from via_otlp.patterns.config import DEFAULT_MASKING, MaskRule

# The parser of the `re` module (`re._parser` since 3.11) tells what a rule can consume.
_sre_c: Any = importlib.import_module("re._constants")
_sre_p: Any = importlib.import_module("re._parser")

WILDCARD = "<*>"
_COLLAPSE = re.compile(r"<\*>(?:[-.:_/]*<\*>)+")
# bytes.translate is ~20x faster than str.translate: shapes are bytes.
_ZERO_DIGITS = bytes.maketrans(b"0123456789", b"0000000000")
_DIGIT = re.compile(r"\d")
_WHITESPACE = frozenset(map(ord, " \t\n\r\f\v"))


def _can_match_whitespace(regex: str) -> bool:
    """Can `regex` consume a whitespace character? (Lookarounds do not consume.)"""
    return _walk(_sre_p.parse(regex))


def _walk(items: Any) -> bool:
    c = _sre_c
    for op, av in items:
        if op is c.LITERAL and av in _WHITESPACE:
            return True
        if op is c.NOT_LITERAL or op is c.ANY:
            return True
        if op is c.IN and _class_has_whitespace(av):
            return True
        if op is c.SUBPATTERN and _walk(av[-1]):
            return True
        if op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)) and _walk(
            av[2]
        ):
            return True
        if op is c.BRANCH and any(_walk(branch) for branch in av[1]):
            return True
        if op is getattr(c, "ATOMIC_GROUP", None) and _walk(av):
            return True
    return False


def _class_has_whitespace(items: Any) -> bool:
    c = _sre_c
    if any(op is c.NEGATE for op, _ in items):
        return True
    for op, av in items:
        if op is c.LITERAL and av in _WHITESPACE:
            return True
        if op is c.RANGE and any(av[0] <= w <= av[1] for w in _WHITESPACE):
            return True
        if op is c.CATEGORY and av in (c.CATEGORY_SPACE, c.CATEGORY_NOT_DIGIT, c.CATEGORY_NOT_WORD):
            return True
    return False


def _leading_literal(regex: str) -> str | None:
    """The character every match of `regex` starts with, if there is one."""
    items = _sre_p.parse(regex)
    if items.state.flags & re.IGNORECASE:
        return None
    while len(items) and items[0][0] is _sre_c.SUBPATTERN:
        if items[0][1][1] & re.IGNORECASE:
            return None
        items = items[0][1][-1]
    if len(items) and items[0][0] is _sre_c.LITERAL:
        return chr(items[0][1])
    return None


def _has_literal_digit(regex: str) -> bool:
    """Does `regex` name a particular digit (so lines differing in digits may mask apart)?"""

    def walk(items: Any) -> bool:
        c = _sre_c
        for op, av in items:
            if op in (c.LITERAL, c.NOT_LITERAL) and 48 <= av <= 57:
                return True
            if op is c.IN and any(
                (o is c.LITERAL and 48 <= a <= 57)
                or (o is c.RANGE and a != (48, 57) and a[0] <= 57 and a[1] >= 48)
                for o, a in av
            ):
                return True
            if op is c.SUBPATTERN and walk(av[-1]):
                return True
            if op in (c.MAX_REPEAT, c.MIN_REPEAT) and walk(av[2]):
                return True
            if op is c.BRANCH and any(walk(b) for b in av[1]):
                return True
            if op in (c.ASSERT, c.ASSERT_NOT) and walk(av[1]):
                return True
        return False

    return walk(_sre_p.parse(regex))


def _alternation(
    rules: tuple[MaskRule, ...],
) -> tuple[re.Pattern[str] | None, dict[int, str], str | None]:
    """One regex for `rules`, the mask of each outer group, and the mask if they all agree."""
    if not rules:
        return None, {}, None
    pattern = re.compile("|".join(f"(?P<_m{i}>{rule.regex})" for i, rule in enumerate(rules)))
    index = pattern.groupindex
    masks = {index[f"_m{i}"]: rule.mask for i, rule in enumerate(rules)}
    distinct = {rule.mask for rule in rules}
    return pattern, masks, distinct.pop() if len(distinct) == 1 else None


class Masker:
    """Applies an ordered list of `MaskRule`s: line rules once per line, token rules per token."""

    def __init__(self, rules: tuple[MaskRule, ...], cache_size: int = 100_000) -> None:
        self.rules = rules
        line_rules = tuple(r for r in rules if _can_match_whitespace(r.regex))
        token_rules = tuple(r for r in rules if r not in line_rules)
        # Line rules run one after the other: alone, a rule that starts with a literal or a
        # class lets the regex engine skip to its candidates, which an alternation does not.
        # A rule that starts with a literal character is skipped when the line lacks it.
        self._line = [(re.compile(r.regex), r.mask, _leading_literal(r.regex)) for r in line_rules]
        self._token, self._token_masks, self._token_single = _alternation(token_rules)
        self.digit_agnostic = not any(_has_literal_digit(r.regex) for r in rules)
        self._cache: dict[str, str] = {}
        self._shapes: dict[bytes, str] = {}
        self._cache_size = max(cache_size, 16)

    @classmethod
    def from_rules(cls, rules: Iterable[MaskRule]) -> Masker:
        """Compile `rules` (already validated by the config loader)."""
        return cls(tuple(rules))

    def _token_replace(self, m: re.Match[str]) -> str:
        return self._token_masks[m.lastindex or 0]

    def tokens(self, text: str) -> list[str]:
        """The masked tokens of `text` (whitespace-separated)."""
        for regex, mask, lead in self._line:
            if lead is None or lead in text:
                text = regex.sub(mask, text)
        parts = text.split()
        cache = self._cache
        out = [cache.get(t) for t in parts]
        if None in out:
            out = [
                m if m is not None else self._mask_token(t) for m, t in zip(out, parts, strict=True)
            ]
        return out  # type: ignore[return-value]

    def mask(self, text: str) -> str:
        """`text` masked, its tokens joined by single spaces."""
        return " ".join(self.tokens(text))

    def _mask_token(self, token: str) -> str:
        """Mask one token (a cache miss): by the shape of its digits when that is safe."""
        raw = token.encode()
        shape = raw.translate(_ZERO_DIGITS) if self.digit_agnostic else raw
        masked = self._shapes.get(shape) if shape != raw else None
        if masked is None:
            masked = self._mask_fresh(token)
            if shape != raw and _DIGIT.search(masked) is None:
                self._remember(self._shapes, shape, masked)
        self._remember(self._cache, token, masked)
        return masked

    def _mask_fresh(self, token: str) -> str:
        if self._token is None:
            return token
        repl = self._token_single if self._token_single is not None else self._token_replace
        out = self._token.sub(repl, token)
        if out.count(WILDCARD) > 1:
            out = _COLLAPSE.sub(WILDCARD, out)
        return out

    def _remember(self, cache: dict[Any, str], key: Any, value: str) -> None:
        if len(cache) >= self._cache_size:
            for k in list(cache)[: self._cache_size // 2]:  # drop the older half: amortised O(1)
                del cache[k]
        cache[key] = value


__all__ = ["DEFAULT_MASKING", "WILDCARD", "Masker"]
