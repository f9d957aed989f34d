"""Intervals and paired differences from mergeable sums that carry bootstrap replicates.

Everything here is computed from `ScoreSums` (and, for McNemar's test, two counts), so a
dataset scored in chunks, whose sums were merged, gets the intervals and p-values of one
request for the whole, to float64 rounding.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

from torch import Tensor

from fairloss.bootstrap import CRITERIA, interval, mcnemar_p_value, p_value
from fairloss.sums import ScoreSums


def estimates(sums: ScoreSums) -> dict[str, float]:
    """Each criterion's value on the data: weighted means, accuracy and ECE."""
    values = {name: sums.mean(name) for name in CRITERIA[:7]}
    return {**values, "accuracy": sums.accuracy, "ece": sums.ece}


def intervals(sums: ScoreSums, confidence_level: float) -> dict[str, dict[str, Any]]:
    """``{criterion: {"estimate", "low", "high"}}``, the percentile intervals of the replicates
    (``low`` and ``high`` are None where no replicate has a statistic)."""
    if sums.replicates is None:
        raise ValueError("Expected sums with bootstrap replicates")
    stats = sums.replicates.statistics()
    return {
        name: interval(stats[name], value, confidence_level)
        for name, value in estimates(sums).items()
    }


def discordant(correct_a: Tensor, correct_b: Tensor, counted: Tensor) -> tuple[int, int]:
    """The counted samples that only a gets right, and those only b gets right."""
    only_a = int((correct_a & ~correct_b & counted).sum())
    only_b = int((correct_b & ~correct_a & counted).sum())
    return only_a, only_b


def difference(
    a: ScoreSums, b: ScoreSums, counts: tuple[int, int], confidence_level: float
) -> dict[str, dict[str, Any]]:
    """``{criterion: {"estimate": a - b, "low", "high", "p_value"}}`` of a paired comparison;
    accuracy also carries ``mcnemar_p_value`` (``counts``: only a right, only b right)."""
    if a.replicates is None or b.replicates is None:
        raise ValueError("Expected sums with bootstrap replicates")
    stats_a, stats_b = a.replicates.statistics(), b.replicates.statistics()
    values_a, values_b = estimates(a), estimates(b)
    criteria: dict[str, dict[str, Any]] = {}
    for name in CRITERIA:
        replicates = stats_a[name] - stats_b[name]
        estimate = values_a[name] - values_b[name]
        criteria[name] = {
            **interval(replicates, estimate, confidence_level),
            "p_value": p_value(replicates) if math.isfinite(estimate) else None,
        }
    criteria["accuracy"]["mcnemar_p_value"] = mcnemar_p_value(*counts)
    return criteria


def differences(
    names: list[str],
    sums: list[ScoreSums],
    correct: list[Any],
    counted: Any,
    confidence_level: float,
) -> list[dict[str, Any]]:
    """One entry per pair of candidates, a before b in request order: the paired differences
    of every criterion, and the discordant counts behind McNemar's test."""
    entries = []
    for i, j in combinations(range(len(names)), 2):
        counts = discordant(correct[i], correct[j], counted)
        entries.append(
            {
                "a": names[i],
                "b": names[j],
                "criteria": difference(sums[i], sums[j], counts, confidence_level),
                "discordant": list(counts),
            }
        )
    return entries
