"""The day-one sibling test when only two other patterns say the consensus (#10).

A consensus of two that disagree far beyond their noise cannot say which of them moved: judged
against it, an undrifted pattern alarmed (families `--wander 900` seed 1: one of its two siblings
was in its own drift, −75 %, and carried most of the weight). Their disagreement beyond their
noise (tau², the judged pattern left out) now widens the consensus's variance, so such a pattern
is not judged; two siblings that agree leave it as before. (The old code weighed only their noise.)
"""

from __future__ import annotations

import numpy as np

from via_otlp.detect.config import DetectConfig
from via_otlp.detect.profile import ProfileTable
from via_otlp.model import Source


def _judged(rel: list[float], sdr: list[float]) -> tuple[bool, float]:
    """Whether the first of three patterns of one source is judged against the other two, and
    its z, for their relative levels `rel` and noise `sdr`."""
    table = ProfileTable(DetectConfig(bucket=60.0))
    src = Source.from_attributes((("service.name", "two"),))
    for i in range(3):
        table.add(f"{i:016x}", src, f"t{i}", f"template {i}", "INFO", 0, 0)
    n = table.capacity
    r, s = np.zeros(n), np.ones(n)
    r[:3], s[:3] = rel, sdr
    judged, ok = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    judged[0], ok[1:3] = True, True
    z, enough, _ = table._sibling_z(r, s, judged, ok)
    return bool(enough[0]), float(z[0])


def test_two_siblings_far_apart_do_not_judge_a_third() -> None:
    """Seed 1's case: the siblings at −0.75 (sd 0.10) and +0.44 (sd 0.41), 2.8 sd apart."""
    judged, z = _judged([0.0, -0.75, 0.44], [0.1, 0.1, 0.41])
    assert not judged, z


def test_two_siblings_that_agree_still_judge_a_third() -> None:
    """Siblings 1 sd apart or less are their noise: the pattern is judged, and one 0.8 above
    them is far out."""
    judged, z = _judged([0.8, -0.05, 0.05], [0.1, 0.1, 0.1])
    assert judged and z > 4.0, z
