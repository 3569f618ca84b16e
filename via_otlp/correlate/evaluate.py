"""Scoring a grouping: pairwise precision and recall over episodes. Pure.

Two episodes in the same true incident should share a predicted incident (recall); two episodes
that share a predicted incident should be in the same true incident (precision). An episode
alone in its true and predicted group adds no pair: with no pairs at all, both figures are 1.

>>> s = pairwise_scores({"a": "x", "b": "x", "c": "y"}, {"a": "1", "b": "1", "c": "1"})
>>> (s.precision, s.recall, s.true_pairs, s.predicted_pairs)
(0.3333333333333333, 1.0, 1, 3)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PairwiseScores:
    precision: float
    recall: float
    f1: float
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def pairwise_scores(truth: Mapping[str, str], predicted: Mapping[str, str]) -> PairwiseScores:
    """Scores over the episodes in `truth` (episode id → true incident label); `predicted`
    maps episode id → predicted incident id (an episode missing from it is alone)."""
    episodes = list(truth)
    pred = {e: predicted.get(e, f"\x00alone:{e}") for e in episodes}
    true_pairs = sum(_pairs(n) for n in Counter(truth[e] for e in episodes).values())
    predicted_pairs = sum(_pairs(n) for n in Counter(pred.values()).values())
    correct = sum(_pairs(n) for n in Counter((truth[e], pred[e]) for e in episodes).values())
    precision = correct / predicted_pairs if predicted_pairs else 1.0
    recall = correct / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PairwiseScores(precision, recall, f1, true_pairs, predicted_pairs, correct)
