"""Mergeable sums: every aggregate of a batch as sums and counts that add up across chunks.

`summed` reduces a batch's per-sample terms and scores to one float64 vector (one
matrix-vector product); `sums_of` reads it as `ScoreSums`, whose `merge` adds two batches' sums
into their union's, so that chunks, workers and replicas merge exactly. `rank` orders
candidates by their sums.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from operator import methodcaller
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from fairloss.bootstrap import FIELDS, ReplicateSums
from fairloss.classes import ClassSums
from fairloss.functional import FairLossTerms
from fairloss.metrics import CRITERIA, SampleScores, bin_index, calibration_error

if TYPE_CHECKING:
    from fairloss.slices import Slices


@dataclass(frozen=True)
class ScoreSums:
    """Sums and counts of one batch; `merge` combines batches into the sums of their union.

    Every aggregate (means, accuracy, ECE) is a ratio of these sums, so the aggregates of many
    chunks merge exactly into the aggregate of the whole. ``count`` is the number of counted
    samples and ``weight`` their total weight (``count`` itself without sample weights);
    ``items`` the number of items (first-axis entries) with a counted sample of positive weight,
    which intervals and tests need two of; every other field is a weighted sum (nats for the
    losses), and every mean divides by ``weight``.

    ``scale``: the weighted sums are in units of ``2**scale``, 0 unless the largest sample
    weight lies outside [2**-400, 2**959] (`weight_scale`), where sums of weights times losses
    would leave float64's range: scaling by a power of two is exact, and every mean is a ratio
    of two sums in one unit. `merge` brings two scales to the larger first.
    """

    count: int = 0
    items: int = 0
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
    classes: ClassSums | None = None
    groups: Mapping[str, Slices] | None = None
    scale: int = 0

    def merge(self, other: ScoreSums) -> ScoreSums:
        scale = max(self.scale, other.scale)
        mine, theirs = self.rescaled(scale), other.rescaled(scale)
        return ScoreSums(
            **{
                f.name: _add(getattr(mine, f.name), getattr(theirs, f.name))
                for f in fields(self)
                if f.name != "scale"
            },
            scale=scale,
        )

    def rescaled(self, scale: int) -> ScoreSums:
        """These sums in units of ``2**scale`` (``scale`` at least `scale`): each weighted sum
        times ``2**(self.scale - scale)``, exact but where it falls below float64's range,
        and then below the larger sums' last bit."""
        shift = self.scale - scale
        if not shift:
            return self
        changes: dict[str, Any] = {
            name: math.ldexp(getattr(self, name), shift) for name in WEIGHTED
        }
        for name in BINS:
            changes[name] = tuple(math.ldexp(v, shift) for v in getattr(self, name))
        if self.replicates is not None:
            changes["replicates"] = self.replicates.shifted(shift)
        if self.classes is not None:
            changes["classes"] = self.classes.shifted(shift)
        if self.groups is not None:
            changes["groups"] = {name: s.rescaled(scale) for name, s in self.groups.items()}
        return replace(self, **changes, scale=scale)

    def unscaled(self, name: str) -> float:
        """The weighted sum ``name`` in the weights' own units (infinite past float64's)."""
        try:
            return math.ldexp(getattr(self, name), self.scale)
        except OverflowError:
            return math.inf

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

    def vectors(self) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """The sums in the layout of one bootstrap replicate (`fairloss.bootstrap.FIELDS`
        (9,), and the bins (3, B))."""
        values = np.array([getattr(self, name) for name in FIELDS], dtype=np.float64)
        bins = np.array([self.bin_count, self.bin_confidence, self.bin_correct], dtype=np.float64)
        return values, bins


# The scoring rules' sums, and every weighted sum, in the order of `ScoreSums`' fields.
SUMMED = ("log_loss", "brier", "pll", "pbs")
WEIGHTED = ("weight", "correct", "ce", "penalty", "total", *SUMMED)
BINS = ("bin_count", "bin_confidence", "bin_correct")
HIGHEST = 959  # the largest weight is kept at most 2**959: 64 bits of room for sums of w * x
LOWEST = -400  # a largest weight below 2**-400 is brought up into [0.5, 1)


def weight_scale(weight: Tensor) -> int:
    """The power of two to divide sample weights by (finite, >= 0), as little as keeps every
    sum finite: 0 while the largest weight lies within [2**LOWEST, 2**HIGHEST]; past 2**HIGHEST
    the least power that brings it to 2**HIGHEST (sums of up to 2**64 times the largest weight
    stay finite, and the smallest weights keep as many bits as they can); below 2**LOWEST the
    exponent that brings it into [0.5, 1) (no weight times a loss underflows). A weight more
    than about 2**2000 below the largest is then below float64's least and counts as 0."""
    largest = float(weight.max()) if weight.numel() else 0.0
    exponent = math.frexp(largest)[1]
    if not largest or LOWEST <= exponent <= HIGHEST:
        return 0
    return exponent - HIGHEST if exponent > HIGHEST else exponent


def scaled(weight: Tensor, scale: int) -> Tensor:
    """``weight / 2**scale``, exactly (in two steps, as 2**1073 itself is past float64)."""
    if not scale:
        return weight
    half = -scale // 2
    return weight * 2.0**half * 2.0 ** (-scale - half)


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
    if isinstance(mine, Mapping) or isinstance(theirs, Mapping):  # group columns, by name
        if mine is None or theirs is None or set(mine) != set(theirs):
            raise ValueError("Expected every chunk's sums to carry the same group columns")
        return {name: mine[name].merge(theirs[name]) for name in mine}
    for kind, what in ((ReplicateSums, "bootstrap replicates"), (ClassSums, "per-class sums")):
        if isinstance(mine, kind) or isinstance(theirs, kind):
            if mine is None or theirs is None:
                raise ValueError(f"Expected every chunk's sums to carry {what}, or none")
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


# The weighted column sums of `summed`, in its order: the first three, summed per calibration
# bin, are the bins.
SUM_COLUMNS = ("weight", "confidence", "correct", "ce", "penalty", "total", *SUMMED)


def summed(
    terms: FairLossTerms,
    scores: SampleScores,
    n_bins: int = 15,
    sample_weight: Tensor | None = None,
) -> Tensor:
    """The weighted sums of the counted samples of a batch: a (10 + 3 * n_bins,) float64 vector
    of the `SUM_COLUMNS` sums, then each calibration bin's weight, its confidence sums and its
    correct sums (n_bins each). Vectors of two batches add up to their union's; `sums_of` reads
    one as `ScoreSums`.

    ``terms`` and ``scores`` hold one value per sample, (M,); ``sample_weight`` (M,), finite
    and non-negative, weighs each (1 without it).
    """
    ce = terms.ce
    columns = (
        scores.confidence,
        scores.correct.to(ce.dtype),
        ce,
        terms.penalty,
        terms.total,
        *(getattr(scores, name) for name in SUMMED),
    )
    weight = counted_weight(terms.counted, sample_weight)
    sums, values = weighted_sums(columns, weight)
    zeros = torch.zeros(3, n_bins, dtype=torch.float64, device=ce.device)
    # The first three rows weighted (weight, confidence, correct), summed per calibration bin.
    bins = zeros.index_add_(1, bin_index(scores.confidence, n_bins), values[:3] * weight)
    return torch.cat([sums, bins.reshape(-1)])


def counted_weight(counted: Tensor, sample_weight: Tensor | None) -> Tensor:
    """Each sample's weight in the sums, float64: its ``sample_weight`` (1 without), 0 where it
    does not count."""
    weight = counted.double()
    return weight if sample_weight is None else weight * sample_weight.to(weight)


def weighted_sums(columns: Sequence[Tensor], weight: Tensor) -> tuple[Tensor, Tensor]:
    """``[sum w, sum w * x for each column x]`` in float64, and the (1 + K, M) float64 matrix
    of a row of ones and the K columns: one matrix-vector product, as fast as a pass over the
    columns."""
    values = torch.stack([torch.ones_like(columns[0]), *columns]).double()
    return torch.mv(values, weight), values


def sums_of(count: int, vector: Tensor, n_bins: int, items: int) -> ScoreSums:
    """`ScoreSums` from ``count`` counted samples in ``items`` items and their `summed`
    vector."""
    values = vector.tolist()
    totals: dict[str, Any] = dict(zip(SUM_COLUMNS, values[: len(SUM_COLUMNS)], strict=True))
    del totals["confidence"]  # kept in the bins alone
    return _sums(count, items, totals, values[len(SUM_COLUMNS) :], n_bins)


def _sums(
    count: int, items: int, totals: dict[str, Any], bins: list[float], n_bins: int
) -> ScoreSums:
    return ScoreSums(
        count=count,
        items=items,
        **totals,
        bin_count=tuple(bins[:n_bins]),
        bin_confidence=tuple(bins[n_bins : 2 * n_bins]),
        bin_correct=tuple(bins[2 * n_bins :]),
    )


def from_item_sums(count: int, items: int, vector: Any, n_bins: int) -> ScoreSums:
    """`ScoreSums` from a (9 + 3B) vector of summed item rows in the layout of one bootstrap
    replicate (`fairloss.bootstrap.FIELDS`, then the bins' weight, confidence and correct
    sums), of ``count`` counted samples in ``items`` items of positive weight."""
    values = [float(v) for v in vector]
    totals: dict[str, Any] = dict(zip(FIELDS, values[: len(FIELDS)], strict=True))
    return _sums(count, items, totals, values[len(FIELDS) :], n_bins)


def score_sums(
    terms: FairLossTerms,
    scores: SampleScores,
    n_bins: int = 15,
    sample_weight: Tensor | None = None,
) -> ScoreSums:
    """The (weighted) sums of the counted samples of one batch, in float64 (see `summed`);
    each sample is an item."""
    items = counted_items(counted_weight(terms.counted, sample_weight), len(terms.counted))
    vector = summed(terms, scores, n_bins, sample_weight)
    return sums_of(int(terms.counted.sum()), vector, n_bins, items)


def counted_items(weight: Tensor, items: int) -> int:
    """How many of ``items`` items (equal runs of the positions' ``weight``, `counted_weight`)
    weigh more than 0."""
    if not weight.numel():
        return 0
    return int((weight.reshape(items, -1).sum(dim=1) > 0).sum())
