"""Where: each key's numbers, from a batch's (or merged chunks') group sums.

`group_report` gives, for each group column, one entry per key in key order: its count (and
weight), its reduced terms and metrics as at the top level over that key's samples and, with a
bootstrap, its intervals and its difference from the rest of the data with Holm's adjustment
over the keys of the column (`fairloss.uncertainty.vs_rest`). Values are floats, NaN where a
mean has no sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fairloss.bootstrap import Floats
from fairloss.scoring import metrics, reduced
from fairloss.slices import Slices
from fairloss.sums import ScoreSums
from fairloss.uncertainty import Vectors, adjust, intervals, vs_rest


def group_report(
    groups: Mapping[str, Slices],
    whole: ScoreSums,
    reduction: str,
    weighted: bool = False,
    confidence_level: float | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """``{column: [entry, ...]}``, each entry ``{"key", "count", ("weight",) "reduced",
    "metrics"}``, and with a ``confidence_level`` (a bootstrap) ``"intervals"`` and
    ``"vs_rest"`` (``p_adjusted``: Holm's over the column's keys, per criterion). ``whole``
    holds the sums of all the data, whose replicates the rest's are taken from."""
    report: dict[str, list[dict[str, Any]]] = {}
    for name, slices in groups.items():
        entries = []
        heaviest = _heaviest_rest(slices, whole) if confidence_level is not None else None
        for j, (key, sums, seen) in enumerate(
            zip(slices.keys, slices.sums, slices.seen, strict=True)
        ):
            if not seen:  # a key of the dataset that none of these items holds
                continue
            entry: dict[str, Any] = {"key": key, "count": sums.count}
            if weighted:
                entry["weight"] = sums.unscaled("weight")
            entry["reduced"] = {"reduction": reduction, **reduced(sums, reduction)}
            entry["metrics"] = metrics(sums)
            if confidence_level is not None:
                entry["intervals"] = intervals(sums, confidence_level)
                rest = heaviest[1] if heaviest is not None and heaviest[0] == j else None
                entry["vs_rest"] = vs_rest(sums, whole, confidence_level, rest)
            entries.append(entry)
        if confidence_level is not None:
            adjust([entry["vs_rest"] for entry in entries])
        report[name] = entries
    return report


def _heaviest_rest(slices: Slices, whole: ScoreSums) -> tuple[int, tuple[Vectors, Vectors]] | None:
    """The key that holds more than half the whole's weight (one at most), with the sums of
    the rest summed from the other keys': its rest as the whole's minus its own would keep
    only the bits of the rest's share of the weight (weights of 1e16 beside 1 lose them all).
    Every other key's rest weighs at least half the whole, so subtraction keeps all but one."""
    weights = [sums.weight for sums in slices.sums]
    heavy = int(np.argmax(weights)) if weights else 0
    if len(weights) < 2 or weights[heavy] <= whole.weight / 2:
        return None
    others = [sums for k, sums in enumerate(slices.sums) if k != heavy]
    vectors = [sums.vectors() for sums in others]
    replicates = [sums.replicates for sums in others if sums.replicates is not None]
    if len(replicates) < len(others) or any(s.scale != whole.scale for s in others):
        raise ValueError("Expected every key's sums with replicates, at the whole's scale")
    observed = (_sum([v for v, _ in vectors]), _sum([b for _, b in vectors]))
    drawn = (_sum([r.values for r in replicates]), _sum([r.bins for r in replicates]))
    return heavy, (observed, drawn)


def _sum(arrays: list[Floats]) -> Floats:
    """The sum of equally shaped arrays, one at a time (never all stacked at once)."""
    total = arrays[0].copy()
    for array in arrays[1:]:
        total += array
    return total
