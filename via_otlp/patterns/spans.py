"""Does a template fit a token sequence of another length, a bare ``<*>`` spanning tokens?

A template token matches one token of the text: a constant matches itself, ``prefix<*>suffix``
matches a token with that prefix and suffix (one character at least between them). A bare
``<*>`` absorbs one token, or several when every one of them is a variable or a plain word
(a two-word name, a free-text reason, a run of block ids), never punctuation or a number that
masking left.

The match is a simulation, not a search: the text positions that the template's first `k`
tokens can reach form a bit set (a Python int, bit `i` = "the first `i` text tokens are
consumed"), and each template token moves the whole set at once — a constant by one AND with
the positions where it occurs, a bare ``<*>`` by a shift plus one addition that carries the set
along each run of absorbable tokens. Nothing backtracks: the work is one step per template
token, plus one `fits` test per reachable position for a ``prefix<*>suffix`` token, so it is
bounded by ``len(template) * (len(text) + 1)`` whatever the tokens are (a nested lazy regex per
``<*>``, as before, backtracked exponentially on runs of same-shaped tokens).

>>> text = SpanText("Deleting block blk_1 blk_2 <*> file /a/b".split())
>>> fits("Deleting block <*> file <*>".split(), text)
True
>>> fits("Deleting <*> file <*>".split(), SpanText("Deleting block 42 7 file x".split()))
False
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from via_otlp.patterns.masking import WILDCARD

# What a bare `<*>` may absorb when it spans two tokens or more: a word, or a variable.
SPAN_WORD = re.compile(r"[A-Za-z][\w'-]*[,.;:!?]?")


def split_pattern(token: str) -> tuple[str, str]:
    """``user=<*>,`` → (``user=``, ``,``)."""
    i = token.find(WILDCARD)
    return token[:i], token[i + 3 :]


def token_fits(pattern: str, token: str) -> bool:
    """Does `token` fit a template token that holds a variable (``<*>``, ``uid=<*>)``)?"""
    if pattern == WILDCARD:
        return True
    prefix, suffix = split_pattern(pattern)
    return (
        len(token) > len(prefix) + len(suffix)
        and token.startswith(prefix)
        and token.endswith(suffix)
    )


def absorbable(token: str) -> bool:
    """May `token` be one of several tokens that a bare ``<*>`` spans?"""
    return WILDCARD in token or SPAN_WORD.fullmatch(token) is not None


class SpanText:
    """A token sequence indexed for `fits`: the positions of each token, the absorbable ones.

    Built once per line (or per template, when the template is the longer side) in one pass.
    """

    __slots__ = ("absorb", "at", "end", "full", "tokens")

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens = tokens
        at: dict[str, int] = {}
        absorb = 0
        bit = 1
        for token in tokens:
            at[token] = at.get(token, 0) | bit
            if absorbable(token):
                absorb |= bit
            bit <<= 1
        self.at = at
        self.absorb = absorb
        self.end = bit  # the position after the last token: reached = all tokens consumed
        self.full = (bit << 1) - 1


class Work:
    """Steps taken by `fits` (template tokens moved, `token_fits` tests), for work budgets."""

    __slots__ = ("steps",)

    def __init__(self) -> None:
        self.steps = 0


def fits(pattern: Sequence[str], text: SpanText, work: Work | None = None) -> bool:
    """Does `text` fit `pattern`, each bare ``<*>`` of it absorbing one token or more?

    Every way of spanning is considered at once (see the module docstring); the answer is True
    when one of them consumes the whole text.
    """
    if WILDCARD not in pattern:
        return False  # no bare `<*>`: only a text of the same length could fit
    reach = 1
    absorb = text.absorb
    at = text.at
    tokens = text.tokens
    steps = 0
    for token in pattern:
        steps += 1
        if token == WILDCARD:
            moved = (reach << 1) & text.full  # absorb exactly one token
            # absorb two or more: from `i` with tokens i and i+1 absorbable, on along the run.
            starts = reach & absorb & (absorb >> 1)
            if starts:
                second = starts << 1  # a subset of `absorb`: the addition carries along runs
                run = (((absorb + second) ^ absorb) | second) & absorb
                moved |= run << 1
            reach = moved
        elif WILDCARD in token:
            moved = 0
            left = reach & ~text.end
            while left:
                low = left & -left
                steps += 1
                if token_fits(token, tokens[low.bit_length() - 1]):
                    moved |= low << 1
                left ^= low
            reach = moved
        else:
            reach = (reach & at.get(token, 0)) << 1
        if not reach:
            break
    if work is not None:
        work.steps += steps
    return bool(reach & text.end)
