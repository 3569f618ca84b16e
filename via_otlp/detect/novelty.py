"""Novelty that needs evidence: when a never-seen pattern is worth an episode.

A pattern seen for the first time is evidence against "nothing changed" only as far as new
patterns are rare for its source. Three terms, in log10 units (bans), add up:

- **surprise**: how unlikely a new pattern was in one bucket of this source. The rate at which a
  source still shows patterns never seen is estimated the Good–Turing way: the patterns seen
  exactly once so far, divided by the time watched (``(singletons + prior) / age``), or, if
  higher, the rate at which it showed new patterns lately (its profiles' first buckets,
  weighted ``exp(-age / discovery)``, over the time so weighted): a young source whose
  patterns are still turning up (several seen once, or first seen a few hours ago) makes new
  ones often, so one more is no surprise; a source watched for a day whose every pattern
  repeats makes them rarely. No per-source state: the numbers come from the profiles.
- **repetition**: an ordinary pattern that went unseen for `age` buckets has a rate of about one
  per `age` buckets (its rate, given that silence and the one record seen, is Gamma(2, age)); k
  more records within m buckets are as unlikely as the negative binomial tail
  ``q^k (1 + k p)`` with ``q = m / (age + m)``. A new error that keeps coming builds evidence
  fast; a rare normal template seen once does not.
- **severity**: the prior odds that a new pattern at this severity is an incident.

A new pattern is *held* before it may open: the miner splits a template for a moment when a
word variable takes its second value and merges the split back when it generalises
(`PatternStage.take_merges`, passed to `Engine.merged` before each batch); a held pattern that
merged is dropped, not reported. Its first bucket is judged only once records
`allowed_lateness` past its end arrived, so merges by then count at no cost in delay; `hold`
waits longer (each bucket of it costs a bucket of delay). It opens once the evidence reaches `threshold`,
and is given up (accepted as normal) when `hold_max` passes without it. One episode per pattern:
the rhythm hashes of one template at several severities are judged together, and a known
template at a new severity is not a new pattern.

>>> round(surprise(singletons=0, prior=0.5, age_buckets=8640), 2)  # a day watched, all repeat
4.24
>>> round(surprise(singletons=2, prior=0.5, age_buckets=540), 2)  # 1.5 h, two rare ones seen once
2.34
>>> round(repetition(more=0, buckets=1, age_buckets=540), 2), round(repetition(2, 3, 540), 2)
(0.0, 4.04)
"""

from __future__ import annotations

import math

SEVERITY_PRIOR = {
    "FATAL": 1.5,
    "ERROR": 1.0,
    "WARN": 0.0,
    "INFO": -1.0,
    "DEBUG": -1.5,
    "TRACE": -2.0,
}
"""Log10 prior odds that a new pattern at this severity is an incident (other words: 0)."""

SEVERITY_RANK = {s: i for i, s in enumerate(("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"))}


def surprise(singletons: float, prior: float, age_buckets: float, recent: float = 0.0) -> float:
    """-log10 P(at least one new pattern in a bucket) for a source: the Good–Turing rate, or
    `recent` (new patterns per bucket lately) if higher."""
    lam = max((singletons + prior) / max(age_buckets, 1.0), recent)
    return max(0.0, -math.log10(-math.expm1(-lam)))


def repetition(more: int, buckets: int, age_buckets: float) -> float:
    """-log10 P(`more` further records within `buckets` buckets | an ordinary pattern that went
    unseen for `age_buckets` and was then seen once)."""
    if more <= 0:
        return 0.0
    q = buckets / (max(age_buckets, 1.0) + buckets)
    return max(0.0, -(more * math.log10(q) + math.log10(1.0 + more * (1.0 - q))))


def evidence(
    severity: str,
    singletons: float,
    prior: float,
    age_buckets: float,
    more: int,
    buckets: int,
    recent: float = 0.0,
) -> float:
    """The log10 odds that a held new pattern is an incident (see the module docstring)."""
    return (
        surprise(singletons, prior, age_buckets, recent)
        + repetition(more, buckets, age_buckets)
        + SEVERITY_PRIOR.get(severity, 0.0)
    )


def most_severe(severities: list[str]) -> int:
    """Index of the most severe of `severities` (unknown words rank as WARN; first on ties)."""
    ranks = [SEVERITY_RANK.get(s, SEVERITY_RANK["WARN"]) for s in severities]
    return ranks.index(max(ranks))
