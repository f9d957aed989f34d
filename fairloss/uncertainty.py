"""Intervals, paired differences and their tests from mergeable sums that carry replicates.

Everything here is computed from `ScoreSums` (and, for McNemar's test, two counts), so a
dataset scored in chunks, whose sums were merged, gets the intervals and p-values of one
request for the whole, to float64 rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

from torch import Tensor

from fairloss.bootstrap import (
    CRITERIA,
    Floats,
    interval,
    mcnemar_p_value,
    randomization_p_value,
    statistics,
)
from fairloss.sums import ScoreSums


def estimates(sums: ScoreSums) -> dict[str, float]:
    """Each criterion's value on the data: weighted means, accuracy and ECE."""
    values = {name: sums.mean(name) for name in CRITERIA[:7]}
    return {**values, "accuracy": sums.accuracy, "ece": sums.ece}


def intervals(sums: ScoreSums, confidence_level: float) -> dict[str, dict[str, Any]]:
    """``{criterion: {"estimate", "low", "high"}}``, the percentile intervals of the replicates
    (``low`` and ``high`` are None where no replicate has a statistic, and with a ``note``
    from fewer than two items)."""
    if sums.replicates is None:
        raise ValueError("Expected sums with bootstrap replicates")
    stats = sums.replicates.statistics()
    return {
        name: interval(stats[name], value, confidence_level, sums.items)
        for name, value in estimates(sums).items()
    }


def swapped(a: ScoreSums, b: ScoreSums) -> dict[str, Floats]:
    """Each criterion's (R,) randomization statistics of a - b: in randomization r the
    candidates' outputs of item i are swapped where its sign is -1, so a's sums become
    ``(A + B) / 2 + (FA - FB) / 2`` and b's ``(A + B) / 2 - (FA - FB) / 2``, FA and FB the
    sign-weighted sums (`ReplicateSums.flips`)."""
    if a.replicates is None or b.replicates is None:
        raise ValueError("Expected sums with bootstrap replicates")
    flips_a, flips_b = a.replicates.flips, b.replicates.flips
    if flips_a is None or flips_b is None:
        raise ValueError("Expected replicate sums with the randomization's flips")
    (values_a, bins_a), (values_b, bins_b) = a.vectors(), b.vectors()
    middle_values, middle_bins = (values_a + values_b) / 2, (bins_a + bins_b) / 2
    half_values = (flips_a.values - flips_b.values) / 2
    half_bins = (flips_a.bins - flips_b.bins) / 2
    stats_a = statistics(middle_values + half_values, middle_bins + half_bins)
    stats_b = statistics(middle_values - half_values, middle_bins - half_bins)
    return {name: stats_a[name] - stats_b[name] for name in CRITERIA}


def discordant(correct_a: Tensor, correct_b: Tensor, counted: Tensor) -> tuple[int, int]:
    """The counted samples that only a gets right, and those only b gets right."""
    only_a = int((correct_a & ~correct_b & counted).sum())
    only_b = int((correct_b & ~correct_a & counted).sum())
    return only_a, only_b


def difference(
    a: ScoreSums, b: ScoreSums, counts: tuple[int, int] | None, confidence_level: float
) -> dict[str, dict[str, Any]]:
    """``{criterion: {"estimate": a - b, "low", "high", "p_value"}}`` of a paired comparison:
    the percentile interval of the bootstrap's differences and the randomization test's
    p-value (None, with a ``note``, from fewer than two items); accuracy also carries
    ``mcnemar_p_value`` when ``counts`` (only a right, only b right) are given."""
    if a.replicates is None or b.replicates is None:
        raise ValueError("Expected sums with bootstrap replicates")
    stats_a, stats_b = a.replicates.statistics(), b.replicates.statistics()
    values_a, values_b = estimates(a), estimates(b)
    randomized = swapped(a, b) if a.items >= 2 else {}
    criteria: dict[str, dict[str, Any]] = {}
    for name in CRITERIA:
        estimate = values_a[name] - values_b[name]
        found = interval(stats_a[name] - stats_b[name], estimate, confidence_level, a.items)
        test = randomization_p_value(randomized[name], estimate) if randomized else None
        criteria[name] = {**found, "p_value": test}
    if counts is not None:
        criteria["accuracy"]["mcnemar_p_value"] = mcnemar_p_value(*counts)
    return criteria


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (Holm 1979), as statsmodels'
    ``multipletests(method="holm")``: the k-th smallest of m becomes the running maximum of
    ``min(1, (m - k + 1) p)``. None (no test) stays None and is not in the family."""
    tested = [(p, k) for k, p in enumerate(p_values) if p is not None]
    adjusted: list[float | None] = [None] * len(p_values)
    running, m = 0.0, len(tested)
    for rank, (p, k) in enumerate(sorted(tested)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[k] = running
    return adjusted


def adjust(entries: Sequence[dict[str, dict[str, Any]]]) -> None:
    """Add ``p_adjusted`` to each criterion of each entry: Holm's over the entries (a family
    of tests), per criterion, in place."""
    for name in CRITERIA:
        found = [entry[name] for entry in entries]
        for item, q in zip(found, holm([f["p_value"] for f in found]), strict=True):
            item["p_adjusted"] = q


def differences(
    names: list[str],
    sums: list[ScoreSums],
    correct: list[Any],
    counted: Any,
    confidence_level: float,
) -> list[dict[str, Any]]:
    """One entry per pair of candidates, a before b in request order: the paired differences
    of every criterion with Holm's adjustment over the pairs, and the discordant counts behind
    McNemar's test."""
    entries: list[dict[str, Any]] = []
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
    adjust([entry["criteria"] for entry in entries])
    return entries
