"""One contract every algorithm passes: determinism and a JSON snapshot round-trip."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.detect.trees import dumps, roundtrip
from via_otlp.detect.cusum import Cusum
from via_otlp.detect.ewma import EWMeanVar
from via_otlp.detect.hll import HyperLogLog


def feed_ewma(e: EWMeanVar, xs: np.ndarray) -> Any:
    for x in xs:
        e.update(float(x))
    return (e.mean, e.var)


def feed_cusum(c: Cusum, xs: np.ndarray) -> Any:
    return [c.update(float(x - 5.0) / 2.0) for x in xs]


def feed_hll(h: HyperLogLog, xs: np.ndarray) -> Any:
    h.update(str(int(x)) for x in xs)
    return h.cardinality


ALGOS: list[
    tuple[str, Callable[[], Any], Callable[[Any, np.ndarray], Any], Callable[[dict], Any]]
] = [
    ("ewma", lambda: EWMeanVar(7), feed_ewma, EWMeanVar.from_snapshot),
    ("ewma-array", lambda: EWMeanVar(7, 0), None, EWMeanVar.from_snapshot),  # type: ignore[list-item]
    ("cusum", lambda: Cusum(0.5, 4), feed_cusum, Cusum.from_snapshot),
    ("hll-sparse", lambda: HyperLogLog(14), feed_hll, HyperLogLog.from_snapshot),
    ("hll-dense", lambda: HyperLogLog(4), feed_hll, HyperLogLog.from_snapshot),
]


@pytest.mark.parametrize(("name", "make", "feed", "load"), ALGOS, ids=[a[0] for a in ALGOS])
def test_contract(name: str, make, feed, load) -> None:
    xs = np.random.default_rng(0).poisson(5.0, 300)
    if feed is None:  # array state: feed rows
        a, b = make(), make()
        for obj in (a, b):
            obj.grow(3)
            for x in xs:
                obj.update(np.array([x, x / 2, 0.0]))
        assert dumps(a.snapshot()) == dumps(b.snapshot())
        c = load(roundtrip(a.snapshot()))
        assert dumps(c.snapshot()) == dumps(a.snapshot())
        return
    a, b = make(), make()
    assert repr(feed(a, xs)) == repr(feed(b, xs))  # deterministic
    # Split in two with a JSON snapshot in between: same state and same outputs.
    c = make()
    feed(c, xs[:150])
    c = load(roundtrip(c.snapshot()))
    e = make()
    feed(e, xs[:150])
    assert repr(feed(c, xs[150:])) == repr(feed(e, xs[150:]))
    assert dumps(c.snapshot()) == dumps(e.snapshot())
