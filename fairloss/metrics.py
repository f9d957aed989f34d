"""Scoring rules of Ahmadian, Ghatee & Wahlström (2025), mergeable sums, and superior violations.

Per-sample rules take logits (N, C) and labels (N,) in [0, C). A sample is *beaten* when some
other class has a strictly larger logit than the true class; a tie counts as correct, as in the
paper's reference code. ``correct`` (accuracy) is ``argmax == label`` with torch's first-maximum
rule, so on an exact tie a sample can be neither correct nor beaten.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from operator import methodcaller
from typing import Any, NamedTuple

import torch
from torch import Tensor

from fairloss.bootstrap import ReplicateSums
from fairloss.functional import FairLossTerms


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
    """
    return scores_of(logits, torch.log_softmax(logits, dim=1), target)


def scores_of(logits: Tensor, log_probs: Tensor, target: Tensor) -> SampleScores:
    """`sample_scores` from logits and their log-softmax (one log-softmax for every score)."""
    num_classes = logits.shape[1]
    target = target.long().unsqueeze(1)
    # The predicted class is the logits' argmax: where two probabilities round to one value,
    # the larger logit still wins, so a correct sample is never also beaten. Softmax keeps the
    # logits' order, so its probability is the largest.
    top, predicted = logits.max(dim=1)
    true_logit = logits.gather(1, target).squeeze(1)
    probs = log_probs.exp()
    confidence = probs.gather(1, predicted.unsqueeze(1)).squeeze(1)
    log_loss = 0.0 - log_probs.gather(1, target).squeeze(1)  # not -x: log 1 = 0.0 gives -0.0
    others = probs.scatter(1, target, 0.0)
    brier = others.sum(dim=1) ** 2 + (others**2).sum(dim=1)
    beaten = top > true_logit
    return SampleScores(
        predicted=predicted,
        correct=predicted == target.squeeze(1),
        confidence=confidence,
        log_loss=log_loss,
        brier=brier,
        pll=torch.where(beaten, log_loss + math.log(num_classes), log_loss),
        pbs=torch.where(beaten, brier + (num_classes - 1) / num_classes, brier),
    )


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
    """The calibration bin of each confidence: b for ``(b / n_bins, (b + 1) / n_bins]``."""
    upper = _upper_edges(n_bins, confidence.device)
    return torch.searchsorted(upper, confidence.double().contiguous()).clamp(max=n_bins - 1)


@functools.lru_cache(maxsize=64)
def _upper_edges(n_bins: int, device: torch.device) -> Tensor:
    """``(b + 1) / n_bins`` for each bin b, in float64 (made once per bin count and device)."""
    return torch.arange(1, n_bins + 1, dtype=torch.float64, device=device) / n_bins


def expected_calibration_error(confidence: Tensor, correct: Tensor, n_bins: int = 15) -> float:
    """Top-label ECE: sum over bins of ``|accuracy - confidence|`` weighted by the bin's share."""
    count, conf_sum, correct_sum = calibration_bins(confidence, correct, n_bins)
    return calibration_error(count.tolist(), conf_sum.tolist(), correct_sum.tolist())


def calibration_error(
    count: Sequence[float], confidence: Sequence[float], correct: Sequence[float]
) -> float:
    """ECE from per-bin sample counts (or weights), confidence sums and correct counts (Guo et
    al. 2017): ``sum_b |correct_b - confidence_b| / sum_b count_b``; NaN when no sample counts."""
    total = sum(count)
    if not total:
        return math.nan
    return sum(abs(k - c) for k, c in zip(correct, confidence, strict=True)) / total


@dataclass(frozen=True)
class ScoreSums:
    """Sums and counts of one batch; `merge` combines batches into the sums of their union.

    Every aggregate (means, accuracy, ECE) is a ratio of these sums, so the aggregates of many
    chunks merge exactly into the aggregate of the whole. ``count`` is the number of counted
    samples and ``weight`` their total weight (``count`` itself without sample weights); every
    other field is a weighted sum (nats for the losses), and every mean divides by ``weight``.
    """

    count: int = 0
    weight: float = 0.0
    correct: float = 0
    ce: float = 0.0
    penalty: float = 0.0
    total: float = 0.0
    log_loss: float = 0.0
    brier: float = 0.0
    pll: float = 0.0
    pbs: float = 0.0
    bin_count: tuple[float, ...] = field(default=())
    bin_confidence: tuple[float, ...] = field(default=())
    bin_correct: tuple[float, ...] = field(default=())
    replicates: ReplicateSums | None = None

    def merge(self, other: ScoreSums) -> ScoreSums:
        return ScoreSums(
            **{f.name: _add(getattr(self, f.name), getattr(other, f.name)) for f in fields(self)}
        )

    def mean(self, name: str) -> float:
        """Weighted mean of a summed per-sample value (NaN when the counted samples weigh 0)."""
        value: float = getattr(self, name)
        return value / self.weight if self.weight else math.nan

    @property
    def accuracy(self) -> float:
        return self.correct / self.weight if self.weight else math.nan

    @property
    def ece(self) -> float:
        return calibration_error(self.bin_count, self.bin_confidence, self.bin_correct)


# The scoring rules' sums, and every weighted sum, in the order of `ScoreSums`' fields.
SUMMED = ("log_loss", "brier", "pll", "pbs")
SUMMED_FIELDS = ("weight", "correct", "ce", "penalty", "total", *SUMMED)

# Criteria that rank candidates by their mean (lower is better); accuracy ranks highest first.
CRITERIA = ("ce", "total", "brier", "pll", "pbs")


def rank(sums: Mapping[str, ScoreSums]) -> dict[str, list[str]]:
    """Names best first under each criterion and accuracy; ties keep their order, and a
    candidate with no counted sample comes last."""

    def ranked(value: Callable[[ScoreSums], float]) -> list[str]:
        def key(name: str) -> tuple[bool, float]:
            v = value(sums[name])
            return math.isnan(v), v

        return sorted(sums, key=key)

    ranking = {criterion: ranked(methodcaller("mean", criterion)) for criterion in CRITERIA}
    ranking["accuracy"] = ranked(lambda s: -s.accuracy)
    return ranking


def _add(mine: Any, theirs: Any) -> Any:
    if isinstance(mine, ReplicateSums) or isinstance(theirs, ReplicateSums):
        if mine is None or theirs is None:
            raise ValueError("Expected every chunk's sums to carry bootstrap replicates, or none")
        return mine.merge(theirs)
    if mine is None:
        return None
    if not isinstance(mine, tuple):
        return mine + theirs
    if mine and theirs and len(mine) != len(theirs):
        raise ValueError(
            f"Expected sums with the same number of calibration bins, but got {len(mine)} "
            f"and {len(theirs)}"
        )
    return (
        tuple(a + b for a, b in zip(mine, theirs, strict=True))
        if mine and theirs
        else mine or theirs
    )


def score_sums(
    terms: FairLossTerms,
    scores: SampleScores,
    n_bins: int = 15,
    sample_weight: Tensor | None = None,
) -> ScoreSums:
    """The (weighted) sums of the counted samples of one batch, in float64, in one pass.

    ``terms`` and ``scores`` hold one value per sample, (M,); ``sample_weight`` (M,), finite
    and non-negative, weighs each (1 without it).
    """
    weight = terms.counted.double()
    if sample_weight is not None:
        weight = weight * sample_weight.to(weight)
    ce = terms.ce
    # One (M, 10) matrix in float64, weighted: its first three columns summed per calibration
    # bin are the bins, and the column sums of the others and the first are the sums.
    columns = (
        torch.ones_like(ce),
        scores.confidence,
        scores.correct.to(ce.dtype),
        ce,
        terms.penalty,
        terms.total,
        *(getattr(scores, name) for name in SUMMED),
    )
    weighted = torch.stack(columns, dim=1).double() * weight.unsqueeze(1)
    weight_sum, _, *sums = weighted.sum(dim=0).tolist()
    totals = dict(zip(SUMMED_FIELDS, [weight_sum, *sums], strict=True))
    index = bin_index(scores.confidence, n_bins)
    zeros = torch.zeros(n_bins, 3, dtype=torch.float64, device=ce.device)
    bins = zeros.index_add(0, index, weighted[:, :3])
    bin_count, bin_confidence, bin_correct = zip(*bins.tolist(), strict=True)
    return ScoreSums(
        count=int(terms.counted.sum()),
        **totals,
        bin_count=tuple(bin_count),
        bin_confidence=tuple(bin_confidence),
        bin_correct=tuple(bin_correct),
    )


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
