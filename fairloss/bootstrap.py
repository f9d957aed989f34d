"""Paired Poisson bootstrap and randomization tests that do not depend on how a dataset is split.

Item i of the dataset (its index ``row_offset + i``; an item is a row, or with K-dimensional
outputs all positions of one first-axis entry) weighs ``w[r, i] ~ Poisson(1)`` in replicate r,
and is swapped between two candidates in randomization r when ``s[r, i] = -1`` (probability
1/2). Both are functions of (seed, r, index) alone (`fairloss.draws`), so every candidate of a
request sees the same weights (a paired bootstrap), and any split of the dataset into requests,
on any replica, gives the same replicates: per-replicate sums add up across chunks exactly.

A replicate's statistic is the weighted mean of a criterion over the counted samples (times
``sample_weight``); accuracy is the weighted share correct, ECE comes from the replicate's
weighted bins. Intervals are percentile intervals of the R replicate statistics (Efron &
Tibshirani 1993, ch. 13). A paired difference's p-value is a randomization test's (swap each
item's two outputs with probability 1/2; Noreen 1989, sacreBLEU's paired approximate
randomization), ``(1 + k) / (1 + R)``: valid at every sample size (Phipson & Smyth 2010).
Accuracy also has McNemar's exact binomial test on the discordant counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fairloss import draws
from fairloss.errors import InputError, describe
from fairloss.metrics import calibration_errors

# The sums each replicate keeps; `weight` is the (Poisson x sample) weight of counted samples.
FIELDS = ("weight", "correct", "ce", "penalty", "total", "log_loss", "brier", "pll", "pbs")
CRITERIA = ("ce", "penalty", "total", "log_loss", "brier", "pll", "pbs", "accuracy", "ece")
WEIGHT_ELEMENTS = 2**20  # weights drawn at once (R x items), about 14 bytes each at the peak
MAX_REPLICATES = 10_000
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Bootstrap:
    """How to resample: ``replicates`` in 1..10,000, ``confidence_level`` in (0, 1), ``seed``
    an integer in [0, 2**64), every bit of which changes the draws. Raises `InputError` (at
    ``bootstrap.<field>``) otherwise."""

    replicates: int = 1000
    confidence_level: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        r, c, s = self.replicates, self.confidence_level, self.seed
        if type(r) is not int or not 1 <= r <= MAX_REPLICATES:
            raise _bad("replicates", f"an integer in [1, {MAX_REPLICATES}]", r)
        if type(c) not in (int, float) or not 0 < c < 1:
            raise _bad("confidence_level", "a number in (0, 1)", c)
        if type(s) is not int or not 0 <= s < 2**64:
            raise _bad("seed", "an integer in [0, 2**64)", s)


def _bad(name: str, wanted: str, value: object) -> InputError:
    got = repr(value) if type(value) in (int, float, bool) else describe(value)
    return InputError(
        f"Expected `bootstrap.{name}` to be {wanted}, but got {got}",
        ("bootstrap", name),
        "bad_bootstrap",
    )


def poisson_weights(bootstrap: Bootstrap, start: int, count: int) -> Floats:
    """(R, count) Poisson(1) weights of the items ``start .. start + count - 1`` (global
    indices), each a function of (seed, replicate, index) alone (`fairloss.draws`)."""
    return draws.poisson_weights(bootstrap.seed, bootstrap.replicates, start, count)


def flip_signs(bootstrap: Bootstrap, start: int, count: int) -> Floats:
    """(R, count) swaps of the paired randomization test: -1 (swap) or +1, each with
    probability 1/2, a function of (seed, replicate, index) alone (`fairloss.draws`)."""
    return draws.flip_signs(bootstrap.seed, bootstrap.replicates, start, count)


def uniforms(bootstrap: Bootstrap, start: int, count: int) -> Floats:
    """(R, count) uniforms in (0, 1) of the slice-versus-rest randomization test, a function
    of (seed, replicate, index) alone (`fairloss.draws`)."""
    return draws.uniforms(bootstrap.seed, bootstrap.replicates, start, count)


@dataclass(frozen=True, eq=False)
class ReplicateSums:
    """Per-replicate sums: ``values`` (R, 9) in the order of `FIELDS`, ``bins`` (R, 3, B): the
    weight, confidence and correct sums of each calibration bin. Two more sets in the same
    layout may come with them: ``flips`` (for paired differences), each item weighted by its
    randomization sign instead of its Poisson weight, and ``relabels`` (a slice's, for its
    difference from the rest), the sums of the items drawn into its pseudo-slice
    (`fairloss.replicates.relabel_sums`). They merge by addition."""

    values: Floats
    bins: Floats
    flips: ReplicateSums | None = None
    relabels: ReplicateSums | None = None

    def merge(self, other: ReplicateSums) -> ReplicateSums:
        if self.values.shape != other.values.shape or self.bins.shape != other.bins.shape:
            raise ValueError(
                "Expected replicate sums of one shape to merge (the same replicates and bins), "
                f"but got {self.bins.shape} and {other.bins.shape}"
            )
        extra: dict[str, ReplicateSums | None] = {}
        for name in ("flips", "relabels"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if (mine is None) != (theirs is None):
                raise ValueError(f"Expected every chunk's replicate sums to carry {name}, or none")
            extra[name] = None if mine is None else mine.merge(theirs)
        return ReplicateSums(self.values + other.values, self.bins + other.bins, **extra)

    def shifted(self, shift: int) -> ReplicateSums:
        """These sums times ``2**shift`` (`fairloss.sums.ScoreSums.rescaled`)."""
        return ReplicateSums(
            np.ldexp(self.values, shift),
            np.ldexp(self.bins, shift),
            None if self.flips is None else self.flips.shifted(shift),
            None if self.relabels is None else self.relabels.shifted(shift),
        )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ReplicateSums)
            and np.array_equal(self.values, other.values)
            and np.array_equal(self.bins, other.bins)
            and (self.flips, self.relabels) == (other.flips, other.relabels)
        )

    __hash__ = None  # type: ignore[assignment]

    def statistics(self) -> dict[str, Floats]:
        """Each criterion's (R,) replicate statistics (NaN where a replicate weighs 0)."""
        return statistics(self.values, self.bins)


def statistics(values: Floats, bins: Floats) -> dict[str, Floats]:
    """Each criterion's statistics from sums in the layout of `ReplicateSums` (the leading axes
    of ``values`` (..., 9) and ``bins`` (..., 3, B) are kept; NaN where the weight is 0)."""
    weight = values[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = {name: values[..., k] / weight for k, name in enumerate(FIELDS) if k > 1}
        means["accuracy"] = values[..., 1] / weight
    means["ece"] = calibration_errors(bins)
    return {name: means[name] for name in CRITERIA}


def block_items(replicates: int) -> int:
    """Items whose weights are drawn at once: `WEIGHT_ELEMENTS` weights in all, at most."""
    return max(1, WEIGHT_ELEMENTS // replicates)


def drawn_blocks(
    bootstrap: Bootstrap, row_offset: int, items: int, draw: Any = poisson_weights
) -> Iterator[tuple[slice, Floats]]:
    """The items ``0 .. items - 1`` (the dataset's ``row_offset + i``) in blocks of
    `block_items`: each block's rows and its (R, rows) draws, ``draw(bootstrap, start, count)``
    (`poisson_weights`, `flip_signs` or `uniforms`)."""
    block = block_items(bootstrap.replicates)
    for start in range(0, items, block):
        stop = min(start + block, items)
        yield slice(start, stop), draw(bootstrap, row_offset + start, stop - start)


def replicate_sums(
    bootstrap: Bootstrap, row_offset: int, items: Floats, draw: Any = poisson_weights
) -> Floats:
    """(R, K) replicate sums of the per-item sums ``items`` (N, K), item i being the dataset's
    item ``row_offset + i``: ``draw(bootstrap, start, count) @ items`` (Poisson weights, or
    `flip_signs`), a block at a time (`drawn_blocks`)."""
    sums = np.zeros((bootstrap.replicates, items.shape[1]))
    for rows, weights in drawn_blocks(bootstrap, row_offset, items.shape[0], draw):
        sums += weights @ items[rows]
    return sums


FEW_ITEMS = "fewer than two items: no interval or test"


def interval(
    stats: Floats, estimate: float, confidence_level: float, items: int = 2
) -> dict[str, Any]:
    """The percentile interval of replicate statistics around the estimate on the data; null
    bounds with a ``note`` from fewer than two ``items``."""
    if items < 2:
        return {"estimate": _number(estimate), "low": None, "high": None, "note": FEW_ITEMS}
    finite = stats[np.isfinite(stats)]
    if not finite.size or not math.isfinite(estimate):
        return {"estimate": _number(estimate), "low": None, "high": None}
    tail = (1 - confidence_level) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return {"estimate": estimate, "low": float(low), "high": float(high)}


def randomization_p_value(stats: Floats, observed: float) -> float | None:
    """Two-sided Monte Carlo p-value ``(1 + k) / (1 + R)``, k the randomized statistics at
    least as far from 0 as the observed one (within a relative 1e-9, for rounding; an
    undefined one counts as far), R their number: never 0, and P(p <= alpha) <= alpha under
    the null (Phipson & Smyth 2010). None when the observed statistic is undefined."""
    if not math.isfinite(observed):
        return None
    with np.errstate(invalid="ignore"):
        far = ~(np.abs(stats) < abs(observed) * (1 - 1e-9))
    return (1 + int(far.sum())) / (1 + stats.size)


def mcnemar_p_value(only_a: int, only_b: int) -> float:
    """McNemar's exact test: two-sided binomial p-value of ``only_a`` successes in
    ``only_a + only_b`` trials with p = 1/2 (as ``scipy.stats.binomtest``)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = np.arange(min(only_a, only_b) + 1)
    log_terms = np.array(
        [math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) for j in k]
    ) - n * math.log(2)
    tail = float(np.exp(np.logaddexp.reduce(log_terms)))
    return min(1.0, 2 * tail)


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None
