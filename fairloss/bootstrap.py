"""Paired Poisson bootstrap: intervals and tests that do not depend on how a dataset is split.

Item i of the dataset (its index ``row_offset + i``; an item is a row, or with K-dimensional
outputs all positions of one first-axis entry) weighs ``w[r, i] ~ Poisson(1)`` in replicate r.
The weight is a function of (seed, r, index) alone: a 32-bit counter-based hash (murmur3's
finaliser) turned into a Poisson(1) draw by its inverse CDF. So every candidate of a request
sees the same weights (a paired bootstrap), and any split of the dataset into requests, on any
replica, gives the same replicates: per-replicate sums add up across chunks exactly.

A replicate's statistic is the weighted mean of a criterion over the counted samples (times
``sample_weight``); accuracy is the weighted share correct, ECE comes from the replicate's
weighted bins. Intervals are percentile intervals of the R replicate statistics (Efron &
Tibshirani 1993, ch. 13); a difference's p-value inverts the percentile interval; accuracy's
paired test is McNemar's exact binomial test on the discordant counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fairloss.errors import InputError, describe

# The sums each replicate keeps; `weight` is the (Poisson x sample) weight of counted samples.
FIELDS = ("weight", "correct", "ce", "penalty", "total", "log_loss", "brier", "pll", "pbs")
CRITERIA = ("ce", "penalty", "total", "log_loss", "brier", "pll", "pbs", "accuracy", "ece")
WEIGHT_ELEMENTS = 2**20  # weights drawn at once (R x items), about 14 bytes each at the peak
MAX_REPLICATES = 10_000
Floats = npt.NDArray[np.float64]


def _thresholds() -> npt.NDArray[np.uint32]:
    """``T[k] = floor(2**32 * P(X <= k))`` for X ~ Poisson(1), while below 2**32 - 1 (a weight
    is the number of edges its uniform 32-bit hash reaches, 12 at most)."""
    edges: list[int] = []
    cdf, k = 0.0, 0
    while True:
        cdf += math.exp(-1) / math.factorial(k)
        edge = math.floor(cdf * 2**32)
        if edge >= 2**32 - 1:  # reached by the largest hash alone: no edge of its own
            return np.array(edges, dtype=np.uint32)
        edges.append(edge)
        k += 1


THRESHOLDS = _thresholds()


@dataclass(frozen=True)
class Bootstrap:
    """How to resample: ``replicates`` in 1..10,000, ``confidence_level`` in (0, 1), ``seed``
    a non-negative integer. Raises `InputError` (at ``bootstrap.<field>``) otherwise."""

    replicates: int = 1000
    confidence_level: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        r, c, s = self.replicates, self.confidence_level, self.seed
        if type(r) is not int or not 1 <= r <= MAX_REPLICATES:
            raise _bad("replicates", f"an integer in [1, {MAX_REPLICATES}]", r)
        if type(c) not in (int, float) or not 0 < c < 1:
            raise _bad("confidence_level", "a number in (0, 1)", c)
        if type(s) is not int or not 0 <= s < 2**63:
            raise _bad("seed", "an integer in [0, 2**63)", s)


def _bad(name: str, wanted: str, value: object) -> InputError:
    got = repr(value) if type(value) in (int, float, bool) else describe(value)
    return InputError(
        f"Expected `bootstrap.{name}` to be {wanted}, but got {got}",
        ("bootstrap", name),
        "bad_bootstrap",
    )


def _fmix32(h: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """murmur3's 32-bit finaliser: every input bit changes each output bit with probability ~1/2."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _replicate_keys(seed: int, replicates: int) -> npt.NDArray[np.uint32]:
    r = np.arange(replicates, dtype=np.uint64)
    with np.errstate(over="ignore"):  # arithmetic modulo 2**64, as intended
        seeded = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        mixed = seeded ^ (r * np.uint64(0xBF58476D1CE4E5B9))
    return _fmix32((mixed ^ (mixed >> np.uint64(32))).astype(np.uint32))


def poisson_weights(bootstrap: Bootstrap, start: int, count: int) -> Floats:
    """(R, count) Poisson(1) weights of the items ``start .. start + count - 1`` (global
    indices), each a function of (seed, replicate, index) alone."""
    index = np.arange(start, start + count, dtype=np.uint64)
    low = (index & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    high = _fmix32((index >> np.uint64(32)).astype(np.uint32) + np.uint32(0x68E31DA4))
    keys = _replicate_keys(bootstrap.seed, bootstrap.replicates)[:, None]
    u = _fmix32((low * np.uint32(0x9E3779B1)) ^ high ^ keys)
    counts = np.zeros(u.shape, dtype=np.uint8)
    for edge in THRESHOLDS:  # the inverse CDF: count the thresholds u reaches
        np.add(counts, u >= edge, out=counts, casting="unsafe")
    return counts.astype(np.float64)


@dataclass(frozen=True, eq=False)
class ReplicateSums:
    """Per-replicate sums: ``values`` (R, 9) in the order of `FIELDS`, ``bins`` (R, 3, B): the
    weight, confidence and correct sums of each calibration bin. They merge by addition."""

    values: Floats
    bins: Floats

    def merge(self, other: ReplicateSums) -> ReplicateSums:
        if self.values.shape != other.values.shape or self.bins.shape != other.bins.shape:
            raise ValueError(
                "Expected replicate sums of one shape to merge (the same replicates and bins), "
                f"but got {self.bins.shape} and {other.bins.shape}"
            )
        return ReplicateSums(self.values + other.values, self.bins + other.bins)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ReplicateSums)
            and np.array_equal(self.values, other.values)
            and np.array_equal(self.bins, other.bins)
        )

    __hash__ = None  # type: ignore[assignment]

    def statistics(self) -> dict[str, Floats]:
        """Each criterion's (R,) replicate statistics (NaN where a replicate weighs 0)."""
        weight = self.values[:, 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            means = {name: self.values[:, k] / weight for k, name in enumerate(FIELDS) if k > 1}
            means["accuracy"] = self.values[:, 1] / weight
            gaps = np.abs(self.bins[:, 2, :] - self.bins[:, 1, :]).sum(axis=1)
            means["ece"] = gaps / self.bins[:, 0, :].sum(axis=1)
        return {name: means[name] for name in CRITERIA}


def block_items(replicates: int) -> int:
    """Items whose weights are drawn at once: `WEIGHT_ELEMENTS` weights in all, at most."""
    return max(1, WEIGHT_ELEMENTS // replicates)


def replicate_sums(bootstrap: Bootstrap, row_offset: int, items: Floats) -> Floats:
    """(R, K) replicate sums of the per-item sums ``items`` (N, K), item i being the dataset's
    item ``row_offset + i``: ``weights @ items``, in blocks of `block_items` items."""
    sums = np.zeros((bootstrap.replicates, items.shape[1]))
    block = block_items(bootstrap.replicates)
    for start in range(0, items.shape[0], block):
        stop = min(start + block, items.shape[0])
        sums += poisson_weights(bootstrap, row_offset + start, stop - start) @ items[start:stop]
    return sums


def interval(stats: Floats, estimate: float, confidence_level: float) -> dict[str, Any]:
    """The percentile interval of replicate statistics around the estimate on the data."""
    finite = stats[np.isfinite(stats)]
    if not finite.size or not math.isfinite(estimate):
        return {"estimate": _number(estimate), "low": None, "high": None}
    tail = (1 - confidence_level) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return {"estimate": estimate, "low": float(low), "high": float(high)}


def p_value(differences: Floats) -> float | None:
    """Two-sided p-value of a difference by inverting the percentile interval:
    ``min(1, 2 * min(share <= 0, share >= 0))`` of the replicate differences."""
    finite = differences[np.isfinite(differences)]
    if not finite.size:
        return None
    below, above = float(np.mean(finite <= 0)), float(np.mean(finite >= 0))
    return min(1.0, 2 * min(below, above))


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
