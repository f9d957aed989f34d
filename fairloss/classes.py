"""Per-class sums: support, precision, recall, F1, per-class losses, class-wise calibration and
the confusion counts, all as sums that merge across chunks by addition.

A class's recall, precision and F1 are those of scikit-learn's
``precision_recall_fscore_support(average=None)`` (with ``sample_weight``, weighted counts); its
``ce``, ``total``, ``pll`` and ``pbs`` are means over the samples of that true class. Its
calibration error is the one-vs-rest ECE of the forecast ``p_c`` against the outcome
``[y == c]`` over every counted sample, in equal-width bins of ``p_c``; their mean over the C
classes is the class-wise ECE of Kull et al. (NeurIPS 2019). The confusion counts keep only
their nonzero cells, so C = 50,000 costs what the data holds, not C**2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from fairloss.metrics import above_first_bin, bin_index, calibration_errors

# The per-class weighted sums, in the column order of `ClassSums.values`: ``support`` over the
# samples of true class c, ``predicted`` over those predicted as c, ``correct`` the true
# positives, then the sums of each loss over the samples of true class c.
CLASS_FIELDS = ("support", "predicted", "correct", "ce", "total", "pll", "pbs")
CLASS_MEANS = ("ce", "total", "pll", "pbs")
BLOCK_ELEMENTS = 1 << 20  # probabilities binned at once for the class-wise calibration
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class ClassSums:
    """Per-class sums of a batch of C classes: ``values`` (C, 7) in the order of
    `CLASS_FIELDS`, ``bins`` (C, 3, B) each class's calibration bins (weight, sum of ``p_c``,
    weight with ``y == c``), and the nonzero confusion cells ``true``, ``predicted`` (int64,
    sorted by true then predicted class) and ``count`` (weighted). They merge by addition."""

    values: Floats
    bins: Floats
    true: Ints
    predicted: Ints
    count: Floats

    def merge(self, other: ClassSums) -> ClassSums:
        if self.values.shape != other.values.shape or self.bins.shape != other.bins.shape:
            raise ValueError(
                "Expected per-class sums of one shape to merge (the same classes and bins), "
                f"but got {self.bins.shape} and {other.bins.shape}"
            )
        classes = self.values.shape[0]
        cells = np.concatenate(
            [self.true * classes + self.predicted, other.true * classes + other.predicted]
        )
        unique, where = np.unique(cells, return_inverse=True)
        counts = np.zeros(unique.shape[0])
        np.add.at(counts, where, np.concatenate([self.count, other.count]))
        return ClassSums(
            self.values + other.values,
            self.bins + other.bins,
            unique // classes,
            unique % classes,
            counts,
        )

    def shifted(self, shift: int) -> ClassSums:
        """These sums times ``2**shift`` (`fairloss.sums.ScoreSums.rescaled`)."""
        values, bins, count = (np.ldexp(a, shift) for a in (self.values, self.bins, self.count))
        return ClassSums(values, bins, self.true, self.predicted, count)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClassSums) and all(
            np.array_equal(getattr(self, name), getattr(other, name))
            for name in ("values", "bins", "true", "predicted", "count")
        )

    __hash__ = None  # type: ignore[assignment]


def class_sums(
    logits: Tensor,
    target: Tensor,
    weight: Tensor,
    columns: dict[str, Tensor],
    n_bins: int,
) -> ClassSums:
    """The per-class sums of (M, C) ``logits`` (the compute dtype) against ``target`` (M,) in
    ``[0, C)``: ``weight`` (M,) float64 is each sample's weight, 0 where it does not count
    (`fairloss.sums.counted_weight`); ``columns`` hold the batch's (M,) ``predicted``,
    ``correct``, ``ce``, ``total``, ``pll`` and ``pbs``. The probabilities are the logits'
    softmax in the compute dtype, binned a block of rows at a time."""
    classes = logits.shape[1]
    target = target.long()
    predicted = columns["predicted"].long()
    by_true = torch.stack(
        [weight, *(columns[name].double() * weight for name in ("correct", *CLASS_MEANS))], dim=1
    )
    values = torch.zeros(classes, len(CLASS_FIELDS), dtype=torch.float64, device=logits.device)
    values[:, [0, *range(2, len(CLASS_FIELDS))]] = values.new_zeros(classes, 6).index_add_(
        0, target, by_true
    )
    values[:, 1] = weight.new_zeros(classes).index_add_(0, predicted, weight)
    counted = weight > 0
    cells, where = torch.unique(target[counted] * classes + predicted[counted], return_inverse=True)
    count = weight.new_zeros(cells.shape[0]).index_add_(0, where, weight[counted])
    return ClassSums(
        values.cpu().numpy(),
        np.ascontiguousarray(calibration_bins(logits, target, weight, n_bins).cpu().numpy()),
        (cells // classes).cpu().numpy(),
        (cells % classes).cpu().numpy(),
        count.cpu().numpy(),
    )


def pack(sums: ClassSums) -> dict[str, Any]:
    """The sums in a form that grows with what the data holds, not with C: the classes
    (``rows``) whose ``values`` hold anything, the bins (``cells``: class x B + bin) past each
    class's first that hold anything, and the first bins' outcome weights where not 0; each
    class's first-bin weight and sum of ``p_c`` follow from the total ``weight`` and the
    classes' sums of ``p_c`` (``p_totals``). `unpack` reads it back."""
    classes, _, n_bins = sums.bins.shape
    rows = np.flatnonzero(sums.values.any(axis=1))
    by_cell = sums.bins.transpose(0, 2, 1).reshape(-1, 3)  # (class x B + bin, 3)
    later = by_cell.any(axis=1) & (np.arange(by_cell.shape[0]) % n_bins > 0)
    first = (by_cell[:, 2] != 0) & (np.arange(by_cell.shape[0]) % n_bins == 0)
    cells = np.flatnonzero(later | first)
    return {
        "classes": classes,
        "ece_bins": n_bins,
        "rows": rows,
        "values": sums.values[rows],
        "weight": float(sums.bins[0, 0].sum()) if classes else 0.0,
        "p_totals": sums.bins[:, 1].sum(axis=1),
        "cells": cells,
        "cell_values": by_cell[cells],
    }


def unpack(packed: Any, true: Ints, predicted: Ints, count: Floats) -> ClassSums:
    """`ClassSums` from `pack`'s form and the confusion cells."""
    classes, n_bins = int(packed["classes"]), int(packed["ece_bins"])
    values = np.zeros((classes, len(CLASS_FIELDS)))
    values[np.asarray(packed["rows"], dtype=np.int64)] = np.asarray(packed["values"]).reshape(
        -1, len(CLASS_FIELDS)
    )
    by_cell = np.zeros((classes * n_bins, 3))
    by_cell[np.asarray(packed["cells"], dtype=np.int64)] = np.asarray(
        packed["cell_values"]
    ).reshape(-1, 3)
    bins = np.ascontiguousarray(by_cell.reshape(classes, n_bins, 3).transpose(0, 2, 1))
    bins[:, 0, 0] = float(packed["weight"]) - bins[:, 0, 1:].sum(axis=1)
    bins[:, 1, 0] = np.asarray(packed["p_totals"], dtype=np.float64) - bins[:, 1, 1:].sum(axis=1)
    return ClassSums(values, bins, true, predicted, count)


def calibration_bins(logits: Tensor, target: Tensor, weight: Tensor, n_bins: int) -> Tensor:
    """(C, 3, B) one-vs-rest bins: for each class c and bin b of ``p_c`` (``(b / B, (b + 1) /
    B]``), the weight of the samples there, their weighted sum of ``p_c`` and the weight of
    those with ``y == c``.

    A row's probabilities sum to 1, so at most B of them pass the first bin's upper edge: only
    those are binned one by one. Each class's first bin gets the rest: the total weight and
    the class's weighted sum of ``p_c`` (one matrix-vector product), less its other bins'."""
    rows, classes = logits.shape
    sums = torch.zeros(3, classes, n_bins, dtype=torch.float64, device=logits.device)
    totals = torch.zeros(classes, dtype=torch.float64, device=logits.device)
    step = max(1, BLOCK_ELEMENTS // classes)
    for start in range(0, rows, step):
        block = slice(start, start + step)
        p = torch.softmax(logits[block], dim=1)
        w = weight[block]
        totals += torch.mv(p.T.double(), w)
        row, column = torch.nonzero(above_first_bin(p, n_bins), as_tuple=True)
        high = p[row, column]
        slot = column * n_bins + bin_index(high, n_bins)
        sums[0].view(-1).index_add_(0, slot, w[row])
        sums[1].view(-1).index_add_(0, slot, high.double() * w[row])
        mine = target[block]
        own = bin_index(p.gather(1, mine[:, None]).squeeze(1), n_bins)
        sums[2].view(-1).index_add_(0, mine * n_bins + own, w)
    sums[0, :, 0] = weight.sum() - sums[0, :, 1:].sum(dim=1)
    sums[1, :, 0] = totals - sums[1, :, 1:].sum(dim=1)
    return sums.transpose(0, 1)


def _ratio(top: Floats, bottom: Floats) -> list[float]:
    with np.errstate(invalid="ignore", divide="ignore"):
        return [
            float(v) for v in np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1), np.nan)
        ]


def class_report(sums: ClassSums, scale: int = 0) -> dict[str, Any]:
    """The ``classes`` body: columnar lists of length C (NaN where a denominator is 0) and the
    confusion cells. ``recall = correct / support``, ``precision = correct / predicted``,
    ``f1 = 2 correct / (support + predicted)``, each loss its sum over ``support``, ``ece``
    each class's one-vs-rest calibration error. ``scale``: the sums are in units of
    ``2**scale`` (`fairloss.sums.ScoreSums.scale`); the weights reported, ``support``,
    ``predicted`` and the confusion counts, are given in the weights' own (inf past float64)."""
    support, predicted, correct = (sums.values[:, k] for k in range(3))
    with np.errstate(over="ignore"):
        own = [np.ldexp(a, scale).tolist() for a in (support, predicted, sums.count)]
    report: dict[str, Any] = {
        "support": own[0],
        "predicted": own[1],
        "recall": _ratio(correct, support),
        "precision": _ratio(correct, predicted),
        "f1": _ratio(2 * correct, support + predicted),
    }
    for k, name in enumerate(CLASS_FIELDS[3:], start=3):
        report[name] = _ratio(sums.values[:, k], support)
    report["ece"] = class_ece(sums.bins)
    report["confusion"] = {
        "true": sums.true.tolist(),
        "predicted": sums.predicted.tolist(),
        "count": own[2],
    }
    return report


def class_ece(bins: Floats) -> list[float]:
    """Each class's calibration error from its (3, B) bins: ``sum_b |outcome_b - p_b| /
    sum_b weight_b`` (NaN when nothing counts; `fairloss.metrics.calibration_errors`)."""
    return [float(v) for v in calibration_errors(bins)]


def classwise_ece(sums: ClassSums) -> float:
    """The mean of the C classes' calibration errors (Kull et al. 2019); NaN when nothing
    counts."""
    errors = class_ece(sums.bins)
    return math.fsum(errors) / len(errors) if errors else math.nan
