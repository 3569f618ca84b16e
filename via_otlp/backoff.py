"""When to try again: jittered exponential backoff and the HTTP ``Retry-After`` header, pure.

One schedule for every retry loop (the emitter, the registry's writer and patch listener, the
vector store's writer, the embeddings client), the one the Collector's ``retry_on_failure``
uses: the base delay grows by `multiplier` from `initial_interval` up to `max_interval`, and each
delay is drawn uniformly within ± `randomization_factor` of the base, so that many clients do
not retry in step. The emitter takes its policy from `emit.retry`; the internal loops use
`Backoff.capped`, whose delays never exceed their configured maximum.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
from dataclasses import dataclass
from typing import Protocol


class BackoffPolicy(Protocol):
    """The four numbers of a schedule (`emit.config.RetryConfig` is one, `Backoff` another)."""

    @property
    def initial_interval(self) -> float: ...
    @property
    def max_interval(self) -> float: ...
    @property
    def multiplier(self) -> float: ...
    @property
    def randomization_factor(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Backoff:
    """A backoff schedule that is not configured as one (see `backoff_delay`)."""

    initial_interval: float
    max_interval: float
    multiplier: float = 2.0
    randomization_factor: float = 0.5

    @classmethod
    def capped(cls, first: float, maximum: float) -> Backoff:
        """Doubling from `first` up to `maximum`, each delay drawn from [b/2, b] of that base b.

        So no delay exceeds `maximum`: the schedule of the reconnect loops (registry, Qdrant,
        embeddings), written in the centred form, whose base is 3/4 b with a spread of ± 1/3.

        >>> policy = Backoff.capped(0.1, 5.0)
        >>> rng = random.Random(1)
        >>> [0.05 - 1e-9 <= backoff_delay(0, policy, rng) <= 0.1 + 1e-9 for _ in range(3)]
        [True, True, True]
        >>> max(backoff_delay(50, policy, rng) for _ in range(1000)) <= 5.0 + 1e-9
        True
        """
        return cls(0.75 * first, 0.75 * maximum, 2.0, 1 / 3)


def backoff_delay(attempt: int, policy: BackoffPolicy, rng: random.Random | None = None) -> float:
    """The jittered delay before retry number `attempt` (0 for the first retry).

    The base grows by `multiplier` from `initial_interval` up to `max_interval`; the delay is
    drawn uniformly within ± `randomization_factor` of it, so many clients do not retry in step.

    >>> cfg = Backoff(initial_interval=1.0, multiplier=2.0, max_interval=5.0, randomization_factor=0.0)
    >>> [backoff_delay(n, cfg) for n in range(5)]
    [1.0, 2.0, 4.0, 5.0, 5.0]
    """
    base = min(policy.max_interval, policy.initial_interval * policy.multiplier ** min(attempt, 64))
    spread = base * policy.randomization_factor
    if spread == 0.0:
        return base
    return (rng or random).uniform(base - spread, base + spread)


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delay-seconds or an HTTP date; None if unusable.

    >>> parse_retry_after("3")
    3.0
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", dt.datetime(2015, 10, 21, 7, 28, tzinfo=dt.UTC))
    10.0
    >>> parse_retry_after("soon") is None
    True
    """
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())
