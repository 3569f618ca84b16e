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
- **repetition**: the records that followed, as a likelihood ratio of "incident" over "ordinary".
  An ordinary pattern that went unseen for `age` buckets has a rate of about one per `age`
  buckets (given that silence and the one record seen, Gamma(2, age)). An incident's new
  pattern keeps coming while it lasts: its rate is at least `floor` a bucket (the failing work
  it reports, requests, retries, health checks, pool waits, runs at that cadence or faster),
  spread over `floor`·2^j with weights 2^-(j+1) (a density ∝ rate^-2: every doubling of the rate
  half as likely, so a fast stream costs a few tenths of a ban against knowing its rate). The
  records' counts per bucket enter through k more records in m buckets only (the same Poisson
  sequence under both). A new error that keeps coming builds evidence fast; a rare normal
  template seen once, or again after a while, does not: a sparse repeat is unlikely under both,
  and once an incident's rate would have shown more records, silence counts against it.
  Because the evidence is a likelihood ratio, judging it at every bucket of the hold is one
  sequential test: under "ordinary" it is a martingale, so the chance it ever reaches `10^x`
  is at most `10^-x` (Ville), however often it is looked at (a tail probability, as this term
  was, grows with the looks: a rare normal ERROR that repeated within the hold opened).
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
>>> f = 1 / 12  # an incident's floor: a record each 2 min, in 10 s buckets
>>> round(repetition(more=0, buckets=1, age_buckets=540, floor=f), 2)  # first bucket, alone
-0.05
>>> round(repetition(2, 3, 540, f), 2)  # two more within 30 s: a stream starting
3.01
>>> round(repetition(1, 140, 2376, f), 1)  # one more 23 min later, 6.6 h in: ordinary
-3.3
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

_LN2, _LN10 = math.log(2.0), math.log(10.0)

SEVERITY_RANK = {s: i for i, s in enumerate(("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"))}


def surprise(singletons: float, prior: float, age_buckets: float, recent: float = 0.0) -> float:
    """-log10 P(at least one new pattern in a bucket) for a source: the Good–Turing rate, or
    `recent` (new patterns per bucket lately) if higher."""
    lam = max((singletons + prior) / max(age_buckets, 1.0), recent)
    return max(0.0, -math.log10(-math.expm1(-lam)))


def repetition(more: int, buckets: int, age_buckets: float, floor: float) -> float:
    """log10 of P(`more` further records within `buckets` buckets | an incident, rate >= `floor`
    a bucket) / P(the same | an ordinary pattern that went unseen for `age_buckets` and was
    then seen once); negative where the records speak for "ordinary"."""
    # The first record came mid-bucket on average: the others had half a bucket less.
    k, m = max(more, 0), max(buckets, 1) - 0.5
    age = max(age_buckets, 1.0)
    # Incident: sum_j 2^-(j+1) rate_j^k e^(-rate_j m) over rate_j = floor 2^j; the terms past
    # the rate that best fits k in m shrink fast: 8 doublings past it, below e^-250 of it.
    top = max(0, math.ceil(math.log2(max(k, 1) / (floor * m)))) + 8
    logs = [k * math.log(floor * 2**j) - floor * 2**j * m - (j + 1) * _LN2 for j in range(top)]
    hi = max(logs)
    incident = hi + math.log(sum(math.exp(x - hi) for x in logs))
    # Ordinary: the same Poisson sequence under rate ~ Gamma(2, age): age^2 (k+1)! / (age+m)^(k+2).
    ordinary = 2 * math.log(age) + math.lgamma(k + 2) - (k + 2) * math.log(age + m)
    return (incident - ordinary) / _LN10


def evidence(
    severity: str,
    singletons: float,
    prior: float,
    age_buckets: float,
    more: int,
    buckets: int,
    floor: float,
    recent: float = 0.0,
) -> float:
    """The log10 odds that a held new pattern is an incident (see the module docstring)."""
    return (
        surprise(singletons, prior, age_buckets, recent)
        + repetition(more, buckets, age_buckets, floor)
        + SEVERITY_PRIOR.get(severity, 0.0)
    )


def most_severe(severities: list[str]) -> int:
    """Index of the most severe of `severities` (unknown words rank as WARN; first on ties)."""
    ranks = [SEVERITY_RANK.get(s, SEVERITY_RANK["WARN"]) for s in severities]
    return ranks.index(max(ranks))
