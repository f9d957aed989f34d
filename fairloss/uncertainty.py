"""Intervals, paired differences and their tests from mergeable sums that carry replicates.

Everything here is computed from `ScoreSums` (and, for McNemar's test, two counts), so a
dataset scored in chunks, whose sums were merged, gets the intervals and p-values of one
request for the whole, to float64 rounding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
from torch import Tensor

from fairloss.bootstrap import (
    CRITERIA,
    Floats,
    interval,
    mcnemar_p_value,
    randomization_p_value,
    statistics,
)
from fairloss.slices import Slices
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
    if counts is not None:  # from fewer than two items, no test: McNemar's neither
        criteria["accuracy"]["mcnemar_p_value"] = mcnemar_p_value(*counts) if randomized else None
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


# A randomization's rest is the whole's sums minus its pseudo-slice's, which keep about
# 53 + log2(rest's share of the weight) bits: below this share, too few to trust.
REST_SHARE = 2.0**-30
Vectors = tuple[Floats, Floats]


def vs_rest(
    key: ScoreSums,
    whole: ScoreSums,
    confidence_level: float,
    rest: tuple[Vectors, Vectors] | None = None,
) -> dict[str, Any]:
    """``{criterion: {"estimate", "low", "high", "p_value"}}`` of a slice minus the rest of the
    data (every item not in the slice): the estimate on the data, the percentile interval of
    the bootstrap's replicates of that difference, and the p-value of the slice-versus-rest
    randomization test, whose randomization r compares the items drawn into the key's
    pseudo-slice with all the others (`fairloss.replicates.relabel_sums`). The rest's sums are
    the whole's minus the slice's, or ``rest`` (its sums and replicate sums, each as
    (values, bins)) where the caller summed them from the other keys: for a slice that holds
    most of the weight, whose rest the subtraction would cancel. From fewer than two items on
    either side: null, with a ``note``; a randomization test whose rest could weigh less than
    `REST_SHARE` of the whole: null, with a ``note``."""
    mine, every = key.replicates, whole.replicates
    relabels = None if mine is None else mine.relabels
    if mine is None or every is None or relabels is None:
        raise ValueError("Expected a slice's sums with replicates and relabels, and the whole's")
    (key_values, key_bins), (all_values, all_bins) = key.vectors(), whole.vectors()
    if rest is None:
        rest = (
            (all_values - key_values, all_bins - key_bins),
            (every.values - mine.values, every.bins - mine.bins),
        )
    observed = _gap(key_values, key_bins, *rest[0])
    resampled = _gap(mine.values, mine.bins, *rest[1])
    items = min(key.items, whole.items - key.items)
    resolved = bool(np.all(all_values[0] - relabels.values[:, 0] >= REST_SHARE * all_values[0]))
    randomized = {}
    if items >= 2 and resolved:
        randomized = _gap(
            relabels.values, relabels.bins, all_values - relabels.values, all_bins - relabels.bins
        )
    criteria: dict[str, Any] = {}
    for name in CRITERIA:
        estimate = float(observed[name])
        test = randomization_p_value(randomized[name], estimate) if randomized else None
        span = interval(resampled[name], estimate, confidence_level, items)
        if items >= 2 and not resolved:
            span["note"] = "a pseudo-slice can hold nearly all the weight: no randomization test"
        criteria[name] = {**span, "p_value": test}
    return criteria


def _gap(values: Floats, bins: Floats, rest_values: Floats, rest_bins: Floats) -> dict[str, Floats]:
    """Each criterion's statistic of the sums (``values``, ``bins``) minus that of the rest's
    sums, over any leading axes."""
    mine = statistics(values, bins)
    rest = statistics(rest_values, rest_bins)
    return {name: mine[name] - rest[name] for name in CRITERIA}


def group_differences(
    a: Mapping[str, Slices], b: Mapping[str, Slices], confidence_level: float
) -> dict[str, list[dict[str, Any]]]:
    """``{column: [{"key", "criteria"}]}``: the paired differences a - b inside each key's
    items (`difference`), Holm's adjustment over the keys of each column."""
    found: dict[str, list[dict[str, Any]]] = {}
    for name, slices in a.items():
        other = dict(zip(b[name].keys, b[name].sums, strict=True))
        seen = [(k, s) for k, s, n in zip(slices.keys, slices.sums, slices.seen, strict=True) if n]
        criteria = [difference(sums, other[key], None, confidence_level) for key, sums in seen]
        adjust(criteria)
        found[name] = [
            {"key": key, "criteria": c} for (key, _), c in zip(seen, criteria, strict=True)
        ]
    return found


def differences(
    names: list[str],
    sums: list[ScoreSums],
    correct: list[Any],
    counted: Any,
    confidence_level: float,
) -> list[dict[str, Any]]:
    """One entry per pair of candidates, a before b in request order: the paired differences
    of every criterion with Holm's adjustment over the pairs, the discordant counts behind
    McNemar's test, and with group columns each key's paired differences (`group_differences`)."""
    entries: list[dict[str, Any]] = []
    for i, j in combinations(range(len(names)), 2):
        counts = discordant(correct[i], correct[j], counted)
        entry = {
            "a": names[i],
            "b": names[j],
            "criteria": difference(sums[i], sums[j], counts, confidence_level),
            "discordant": list(counts),
        }
        groups_a, groups_b = sums[i].groups, sums[j].groups
        if groups_a is not None and groups_b is not None:
            entry["groups"] = group_differences(groups_a, groups_b, confidence_level)
        entries.append(entry)
    adjust([entry["criteria"] for entry in entries])
    return entries
