"""The span matcher: exact (every way of spanning considered), and linear work on any line."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.synthetic_logs import RUN_SHAPES, adversarial_lines, long_token_lines
from via_otlp.patterns.config import PatternsConfig
from via_otlp.patterns.miner import _MAX_SPAN_CANDIDATES, SourceMiner
from via_otlp.patterns.spans import SpanText, Work, absorbable, fits, split_pattern, token_fits

W = "<*>"
# Tokens of every kind the matcher distinguishes: constants, absorbable words, variables,
# `prefix<*>suffix` patterns, and what a span may not absorb (punctuation, numbers).
TOKENS = ["a", "b", "Done", W, "x=<*>", "x=1", "x=2", "(<*>)", "(q)", "=", "42", "-"]
token = st.sampled_from(TOKENS)


def oracle(pattern: list[str], text: list[str]) -> bool:
    """Brute force: try every number of tokens for every bare `<*>`."""

    @cache
    def go(p: int, t: int) -> bool:
        if p == len(pattern):
            return t == len(text)
        tok = pattern[p]
        if tok != W:
            return (
                t < len(text)
                and (text[t] == tok or (W in tok and token_fits(tok, text[t])))
                and go(p + 1, t + 1)
            )
        if t < len(text) and go(p + 1, t + 1):
            return True
        end = t + 2
        while end <= len(text) and all(absorbable(x) for x in text[t:end]):
            if go(p + 1, end):
                return True
            end += 1
        return False

    return W in pattern and go(0, 0)


def old_regex_fits(pattern: list[str], text: list[str]) -> bool:
    """The matcher this replaced (a lazy regex per `<*>`; exponential, so small inputs only)."""
    if W not in pattern:
        return False
    parts = []
    for tok in pattern:
        if tok == W:
            parts.append(r"(\S+(?: \S+)*?)")
        elif W in tok:
            prefix, suffix = split_pattern(tok)
            parts.append(re.escape(prefix) + r"\S+?" + re.escape(suffix))
        else:
            parts.append(re.escape(tok))
    m = re.compile(" ".join(parts)).fullmatch(" ".join(text))
    return m is not None and all(
        " " not in g or all(absorbable(t) for t in g.split(" ")) for g in m.groups()
    )


@settings(max_examples=500, deadline=None)
@given(pattern=st.lists(token, min_size=1, max_size=7), text=st.lists(token, max_size=10))
def test_fits_is_exact_and_bounded(pattern: list[str], text: list[str]) -> None:
    work = Work()
    got = fits(pattern, SpanText(text), work)
    assert got == oracle(pattern, text)
    if old_regex_fits(pattern, text):  # what the regex accepted is still accepted
        assert got
    assert work.steps <= len(pattern) * (len(text) + 1)


def test_a_span_absorbs_words_and_variables_but_not_punctuation() -> None:
    assert fits([W, "done"], SpanText(["mary", "ann", "<*>", "done"]))
    assert not fits([W, "done"], SpanText(["mary", "=", "done"]))
    assert fits([W, "=", W], SpanText(["mary", "=", "42"]))  # one token each: anything
    assert fits(["x", W, W, "y"], SpanText(["x", "1", "2", "y"]))


@st.composite
def run_lines(draw: st.DrawFn) -> list[str]:
    """Lines of constant words around runs of same-shaped tokens, in any order and length."""
    import random

    rng = random.Random(draw(st.integers(0, 2**32)))
    words = ["ask", "to", "delete", "now", "Batch", "of", "done", "from"]
    lines = []
    for _ in range(draw(st.integers(2, 6))):
        parts: list[str] = []
        for _ in range(draw(st.integers(1, 4))):
            parts.append(draw(st.sampled_from(words)))
            _, make = draw(st.sampled_from(RUN_SHAPES))
            parts += [make(rng) for _ in range(draw(st.integers(1, 120)))]
        lines.append(" ".join(parts))
    return lines


@settings(max_examples=60, deadline=None)
@given(lines=run_lines())
def test_runs_of_same_shaped_tokens_cost_bounded_work(lines: list[str]) -> None:
    config = PatternsConfig()
    miner = SourceMiner(config)
    per_call = (config.max_tokens + 1) ** 2  # template tokens x (line tokens + 1)
    for line in lines:
        before = miner.work.steps
        miner.add(line)
        assert miner.work.steps - before <= _MAX_SPAN_CANDIDATES * per_call


def test_the_issue_example_and_its_class_template_quickly(tmp_path: Path) -> None:
    """72 lines that froze the old matcher, and lines of one huge token that made a masking
    rule rescan it from every word; a generous bound so that a loaded machine passes.

    The precise figures are printed by `python benchmarks/patterns.py --adversarial`.
    """
    path = tmp_path / "adversarial.log"
    lines = adversarial_lines(72) + long_token_lines(8)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "via_otlp", "patterns", str(path), "--summary"],
        capture_output=True,
        text=True,
        timeout=600,  # hang detection only: the old matcher froze for hours
        check=True,
    )
    counts = [int(line.split("\t")[0]) for line in done.stdout.splitlines()]
    assert sum(counts) == 80
    assert "8\t" in done.stdout and "payload <*> stored" in done.stdout
