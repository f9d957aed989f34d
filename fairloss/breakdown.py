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

from fairloss.scoring import metrics, reduced
from fairloss.slices import Slices
from fairloss.sums import ScoreSums
from fairloss.uncertainty import adjust, intervals, vs_rest


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
        for key, sums, seen in zip(slices.keys, slices.sums, slices.seen, strict=True):
            if not seen:  # a key of the dataset that none of these items holds
                continue
            entry: dict[str, Any] = {"key": key, "count": sums.count}
            if weighted:
                entry["weight"] = sums.unscaled("weight")
            entry["reduced"] = {"reduction": reduction, **reduced(sums, reduction)}
            entry["metrics"] = metrics(sums)
            if confidence_level is not None:
                entry["intervals"] = intervals(sums, confidence_level)
                entry["vs_rest"] = vs_rest(sums, whole, confidence_level)
            entries.append(entry)
        if confidence_level is not None:
            adjust([entry["vs_rest"] for entry in entries])
        report[name] = entries
    return report
