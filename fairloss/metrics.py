"""Scoring rules of Ahmadian, Ghatee & Wahlström (2025), calibration, and superior violations.

Per-sample rules take logits (N, C) and labels (N,) in [0, C). A sample is *beaten* when some
other class has a strictly larger logit than the true class; a tie counts as correct, as in the
paper's reference code. ``correct`` (accuracy) is ``argmax == label`` with torch's first-maximum
rule, so on an exact tie a sample can be neither correct nor beaten.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor


class SampleScores(NamedTuple):
    """Per-sample scoring rules, each of shape (N,)."""

    predicted: Tensor
    correct: Tensor
    confidence: Tensor
    log_loss: Tensor
    brier: Tensor
    pll: Tensor
    pbs: Tensor


def sample_scores(logits: Tensor, target: Tensor) -> SampleScores:
    """Accuracy, log loss, Brier, Penalized Log Loss and Penalized Brier Score per sample.

    Brier sums the squared errors over the C classes (the paper's definition; its reference code
    averages over classes instead, which divides by C). It is computed as
    ``(1 - p_y)^2 + sum_{c != y} p_c^2`` with ``1 - p_y = sum_{c != y} p_c``: sums of
    non-negative terms, so a confident row keeps its relative precision. (``sum p^2 - 2 p_y + 1``
    cancels to 0 in float32 once ``1 - p_y`` is below about 1e-4, and ``-expm1(log p_y)`` loses
    digits too, since ``log p_y`` near 0 comes out of a log-sum-exp with an absolute error of
    about 1e-7.) PLL adds ``ln(C)`` to the log loss and PBS adds ``(C - 1) / C`` to the Brier
    score of a beaten sample. No column holds ``-0.0``: a certain row's log loss is ``0.0``.
    For evaluation: no gradient flows through these scores.
    """
    return scores_of(logits, torch.log_softmax(logits, dim=1), target)


def scores_of(
    logits: Tensor, log_probs: Tensor, target: Tensor, work: Tensor | None = None
) -> SampleScores:
    """`sample_scores` from logits and their log-softmax (one log-softmax for every score).
    ``work``: an (N, C) buffer of the logits' dtype to compute the probabilities in, reused
    from call to call (`fairloss.blocks`); None allocates one."""
    num_classes = logits.shape[1]
    labels = target.long()
    target = labels.unsqueeze(1)
    # The predicted class is the logits' argmax: where two probabilities round to one value,
    # the larger logit still wins, so a correct sample is never also beaten. Softmax keeps the
    # logits' order, so its probability is the largest.
    top, predicted = logits.max(dim=1)
    true_logit = logits.gather(1, target).squeeze(1)
    confidence = log_probs.gather(1, predicted.unsqueeze(1)).squeeze(1).exp()
    log_loss = 0.0 - log_probs.gather(1, target).squeeze(1)  # not -x: log 1 = 0.0 gives -0.0
    # The other classes' probabilities, each at least e * tiny (tiny: the dtype's smallest
    # normal number), since torch.exp takes a slow path for each argument below log(tiny), and
    # confident rows are full of them. The floors raise `rest` by less than C * e * tiny, so a
    # Brier score (at least rest^2) by less than 2 * C * e * tiny / rest relative: for any
    # Brier score the dtype can hold (rest^2 above its smallest subnormal), under 3e-10 for
    # C = 10^5 in float32. In place on private temporaries: the scores are not differentiable.
    others = torch.clamp(log_probs, min=_log_floor(log_probs.dtype), out=work).exp_()
    others.scatter_(1, target, 0.0)
    rest = others.sum(dim=1)
    brier = rest * rest + others.square_().sum(dim=1)
    beaten = top > true_logit
    return SampleScores(
        predicted=predicted,
        correct=predicted == labels,
        confidence=confidence,
        log_loss=log_loss,
        brier=brier,
        pll=torch.where(beaten, log_loss + math.log(num_classes), log_loss),
        pbs=torch.where(beaten, brier + (num_classes - 1) / num_classes, brier),
    )


@functools.lru_cache(maxsize=8)
def _log_floor(dtype: torch.dtype) -> float:
    """log of e times the dtype's smallest normal number (-86.3 in float32, -707.4 in float64)."""
    return math.log(torch.finfo(dtype).tiny) + 1.0


def calibration_bins(
    confidence: Tensor, correct: Tensor, n_bins: int = 15, weight: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-bin sample weight, weighted confidence sum and weighted correct count over
    equal-width bins of (0, 1] (each sample weighs 1 without ``weight``).

    Bin ``b`` holds the confidences in ``(b / n_bins, (b + 1) / n_bins]``. ``weight`` may be
    a mask of the samples that count, or their weights (0 for samples that do not count).
    """
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"Expected `n_bins` to be an integer larger than 0, but got {n_bins}")
    confidence = confidence.double()
    weight = torch.ones_like(confidence) if weight is None else weight.double()
    index = bin_index(confidence, n_bins)
    values = torch.stack([weight, confidence * weight, correct * weight], dim=1)
    zeros = torch.zeros(n_bins, 3, dtype=torch.float64, device=confidence.device)
    count, conf_sum, correct_sum = zeros.index_add(0, index, values).unbind(1)
    return count, conf_sum, correct_sum


def bin_index(confidence: Tensor, n_bins: int) -> Tensor:
    """The calibration bin of each confidence: b for ``(b / n_bins, (b + 1) / n_bins]``, the
    edges in float64. A float32 confidence is binned in float32 against each edge rounded down
    to float32, which puts every float32 value in the bin the float64 edges give it (x > e
    exactly when x > round_down(e)) without widening a copy of the input."""
    if confidence.dtype == torch.float32:
        upper = _edges32(n_bins, confidence.device)
        return torch.bucketize(confidence, upper).clamp_(max=n_bins - 1)
    upper = _upper_edges(n_bins, confidence.device)
    return torch.searchsorted(upper, confidence.double().contiguous()).clamp(max=n_bins - 1)


def above_first_bin(confidence: Tensor, n_bins: int) -> Tensor:
    """Where `bin_index` is above 0 (the confidence passes ``1 / n_bins``), in one comparison."""
    if confidence.dtype == torch.float32:
        return confidence > _edges32(n_bins, confidence.device)[0]
    return confidence.double() > _upper_edges(n_bins, confidence.device)[0]


@functools.lru_cache(maxsize=64)
def _upper_edges(n_bins: int, device: torch.device) -> Tensor:
    """``(b + 1) / n_bins`` for each bin b, in float64 (made once per bin count and device)."""
    return torch.arange(1, n_bins + 1, dtype=torch.float64, device=device) / n_bins


@functools.lru_cache(maxsize=64)
def _edges32(n_bins: int, device: torch.device) -> Tensor:
    """The float64 edges, each rounded down to a float32."""
    edges = np.arange(1, n_bins + 1, dtype=np.float64) / n_bins
    down = edges.astype(np.float32)
    down = np.where(down > edges, np.nextafter(down, np.float32(-np.inf)), down)
    return torch.from_numpy(down.astype(np.float32)).to(device)


def expected_calibration_error(confidence: Tensor, correct: Tensor, n_bins: int = 15) -> float:
    """Top-label ECE: sum over bins of ``|accuracy - confidence|`` weighted by the bin's share."""
    count, conf_sum, correct_sum = calibration_bins(confidence, correct, n_bins)
    return calibration_error(count.tolist(), conf_sum.tolist(), correct_sum.tolist())


def calibration_errors(bins: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """ECE of many sets of bins at once: ``bins`` (..., 3, B) holds each set's per-bin weight,
    forecast sums and outcome sums; ``sum_b |outcome_b - forecast_b| / sum_b weight_b`` over
    the leading axes, NaN where nothing counts (as `calibration_error` of each set)."""
    total = bins[..., 0, :].sum(axis=-1)
    gaps = np.abs(bins[..., 2, :] - bins[..., 1, :]).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, gaps / np.where(total > 0, total, 1), np.nan)


def calibration_error(
    count: Sequence[float], confidence: Sequence[float], correct: Sequence[float]
) -> float:
    """ECE from per-bin sample counts (or weights), confidence sums and correct counts (Guo et
    al. 2017): ``sum_b |correct_b - confidence_b| / sum_b count_b``; NaN when no sample counts."""
    total = sum(count)
    if not total:
        return math.nan
    return sum(abs(k - c) for k, c in zip(correct, confidence, strict=True)) / total


# Criteria that rank candidates by their mean (lower is better); accuracy ranks highest first.
CRITERIA = ("ce", "total", "brier", "pll", "pbs")


@dataclass(frozen=True)
class Violations:
    """Pairs (i correct, j wrong) that a score orders against the superior property.

    ``weighted_count`` and ``weighted_pairs`` sum ``w_i * w_j`` over the same pairs (equal to
    ``count`` and ``pairs`` without sample weights).
    """

    count: int
    pairs: int
    examples: list[tuple[int, int]]
    weighted_count: float = 0.0
    weighted_pairs: float = 0.0


def superior_violations(
    scores: Tensor,
    correct: Tensor,
    counted: Tensor | None = None,
    max_examples: int = 5,
    sample_weight: Tensor | None = None,
) -> Violations:
    """Count pairs (i correct, j wrong) with ``scores[i] > scores[j]`` in O(N log N).

    Scores are losses: lower is better. A tie ``scores[i] == scores[j]`` is not a violation.
    Samples outside ``counted`` take no part. The examples pair the worst-scored correct
    samples with the best-scored wrong one, worst first. With ``sample_weight``, a pair also
    weighs ``w_i * w_j`` (the weighted counts; a prefix sum of the sorted wrong weights).
    """
    counted = torch.ones_like(correct) if counted is None else counted
    weight = (
        torch.ones_like(scores, dtype=torch.float64)
        if sample_weight is None
        else sample_weight.double()
    )
    right = (correct & counted).nonzero().squeeze(1)
    wrong = (~correct & counted).nonzero().squeeze(1)
    wrong_sorted, order = scores[wrong].sort()
    right_scores = scores[right]
    below = torch.searchsorted(wrong_sorted, right_scores, side="left")
    count = int(below.sum())
    below_weight = torch.cat([weight.new_zeros(1), weight[wrong][order].cumsum(0)])[below]
    weighted_count = float((weight[right] * below_weight).sum())
    weighted_pairs = float(weight[right].sum() * weight[wrong].sum())
    examples: list[tuple[int, int]] = []
    if count:
        best_wrong = int(wrong[order[0]])
        worst_first = right_scores.argsort(descending=True, stable=True)[:max_examples]
        examples = [(int(right[k]), best_wrong) for k in worst_first.tolist() if int(below[k]) > 0]
    return Violations(count, len(right) * len(wrong), examples, weighted_count, weighted_pairs)
