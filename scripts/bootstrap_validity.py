"""Statistical validity of the paired Poisson bootstrap, by simulation.

Two models score samples of one generating process: labels uniform over C classes, and each
model's logits ``strength * onehot(label)`` plus Gaussian noise, part of it shared by the two
models (so their losses are correlated and the pairing matters). Each trial draws N samples,
scores both models with `fairloss.score_batch` and a bootstrap (its own seed), and takes the
paired difference of the two models' mean FairLoss total (`fairloss.uncertainty.difference`).

- ``coverage``: with different strengths, the share of trials whose interval holds the true
  difference, computed once on 10**6 samples of the same process (nominal: the confidence level).
- ``rejection``: with two exchangeable models (the same strength, so no true difference), the
  share of trials with p < 0.05 (nominal: 0.05); ``mcnemar_rejection`` is the same for accuracy
  under McNemar's exact test, which is conservative.
- ``power``: the share of trials with p < 0.05 when the strengths differ.
- ``by_size``: with no true difference, the share of trials with p < 0.05 at N = 5, 10, 30 and
  1,000 items, for every criterion (the randomization test must hold 5% at every size), and the
  smallest p-value seen with one item (none: a test from one item is null).

Everything is seeded: a run's numbers depend on its arguments alone.

Run: ``.venv/bin/python scripts/bootstrap_validity.py [--trials 2000]``
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fairloss.bootstrap import Bootstrap  # noqa: E402
from fairloss.replicates import with_replicates  # noqa: E402
from fairloss.scoring import score_batch  # noqa: E402
from fairloss.uncertainty import difference, discordant  # noqa: E402

CLASSES = 3
STRONG, WEAK = 1.6, 1.45  # strength of the true class's logit, model a and model b
SHARED = 0.5  # share of the noise's variance that the two models have in common
TRUTH_SAMPLES = 10**6
Logits = npt.NDArray[np.float64]
Labels = npt.NDArray[np.int64]


def draw(
    rng: np.random.Generator, n: int, strength_a: float, strength_b: float
) -> tuple[Logits, Logits, Labels]:
    """``n`` samples: the logits of models a and b, and the labels."""
    labels = rng.integers(0, CLASSES, n)
    onehot = np.eye(CLASSES)[labels]
    common = rng.normal(size=(n, CLASSES)) * math.sqrt(SHARED)
    own = rng.normal(size=(2, n, CLASSES)) * math.sqrt(1 - SHARED)
    return strength_a * onehot + common + own[0], strength_b * onehot + common + own[1], labels


def true_difference(strength_a: float, strength_b: float, samples: int = TRUTH_SAMPLES) -> float:
    """Model a's mean FairLoss total minus model b's, on ``samples`` draws of the process."""
    a, b, labels = draw(np.random.default_rng(20_240_601), samples, strength_a, strength_b)
    return score_batch(a, labels).sums.mean("total") - score_batch(b, labels).sums.mean("total")


@dataclass(frozen=True)
class Validity:
    trials: int
    replicates: int
    truth: float  # the true difference of mean total, model a - model b
    coverage: float  # intervals holding the truth, strengths differ
    power: float  # p < 0.05, strengths differ
    rejection: float  # p < 0.05, no true difference
    mcnemar_rejection: float  # McNemar p < 0.05 on accuracy, no true difference
    mean_width: float  # mean width of the interval, strengths differ

    def table(self) -> str:
        return "\n".join(
            [
                f"{self.trials} trials, N = 300..1000, {self.replicates} replicates, "
                f"C = {CLASSES}; true difference of mean total = {self.truth:.5f}",
                f"coverage of the 95% interval:          {self.coverage:6.1%} (accept 92%..98%)",
                f"p < 0.05, no true difference (total):  {self.rejection:6.1%} (accept 2%..8%)",
                f"p < 0.05, no true difference (McNemar):{self.mcnemar_rejection:6.1%}",
                f"p < 0.05, true difference (power):     {self.power:6.1%}",
                f"mean interval width:                   {self.mean_width:.4f}",
            ]
        )


def trial(
    seed: int, strength_a: float, strength_b: float, replicates: int
) -> tuple[dict[str, float | None], float | None]:
    """One trial: the difference of mean total (estimate, low, high, p_value) and McNemar's p."""
    rng = np.random.default_rng([seed, int(strength_a * 1000), int(strength_b * 1000)])
    n = int(rng.integers(300, 1001))
    a, b, labels = draw(rng, n, strength_a, strength_b)
    bootstrap = Bootstrap(replicates=replicates, seed=seed)
    first, second = with_replicates([score_batch(a, labels), score_batch(b, labels)], bootstrap)
    counts = discordant(
        first.columns["correct"], second.columns["correct"], first.columns["counted"]
    )
    criteria = difference(first.sums, second.sums, counts, bootstrap.confidence_level)
    mcnemar: float | None = criteria["accuracy"]["mcnemar_p_value"]
    return criteria["total"], mcnemar


def simulate(trials: int = 400, replicates: int = 200, first_seed: int = 1) -> Validity:
    """Coverage and rejection rates over ``trials`` trials, trial t with seed first_seed + t.

    Runs on one torch thread (restored after): on batches this small, more threads cost more
    in handing work over than they save, several times over on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _simulate(trials, replicates, first_seed)
    finally:
        torch.set_num_threads(threads)


def _simulate(trials: int, replicates: int, first_seed: int) -> Validity:
    truth = true_difference(STRONG, WEAK)
    covered = rejected = rejected_null = mcnemar_null = 0
    width = 0.0
    for seed in range(first_seed, first_seed + trials):
        total, _ = trial(seed, STRONG, WEAK, replicates)
        low, high, p = total["low"], total["high"], total["p_value"]
        assert low is not None
        assert high is not None
        assert p is not None
        covered += low <= truth <= high
        rejected += p < 0.05
        width += high - low
        null, mcnemar = trial(seed, STRONG, STRONG, replicates)
        assert null["p_value"] is not None
        assert mcnemar is not None
        rejected_null += null["p_value"] < 0.05
        mcnemar_null += mcnemar < 0.05
    return Validity(
        trials,
        replicates,
        truth,
        covered / trials,
        rejected / trials,
        rejected_null / trials,
        mcnemar_null / trials,
        width / trials,
    )


SIZES = (5, 10, 30, 1000)
CHECKED = ("ce", "total", "brier", "accuracy", "ece")


@dataclass(frozen=True)
class BySize:
    trials: int
    replicates: int
    rejection: dict[int, dict[str, float]]  # N -> criterion -> share of p < 0.05, no difference
    one_item: float | None  # the smallest p-value seen with one item (None: all null)

    def worst(self) -> float:
        return max(max(rates.values()) for rates in self.rejection.values())

    def table(self) -> str:
        head = "N items " + "".join(f"{name:>10}" for name in CHECKED)
        rows = [
            f"{n:7d} " + "".join(f"{rates[name]:10.1%}" for name in CHECKED)
            for n, rates in self.rejection.items()
        ]
        return "\n".join(
            [
                f"paired randomization test, no true difference: share of p < 0.05 over "
                f"{self.trials} trials, {self.replicates} replicates (valid: <= 5% + noise)",
                head,
                *rows,
                f"smallest p-value from one item: {self.one_item} (null: no test)",
            ]
        )


def null_pair(seed: int, n: int, replicates: int) -> dict[str, dict[str, float | None]]:
    """The paired differences of two exchangeable models on ``n`` items."""
    rng = np.random.default_rng([seed, n])
    a, b, labels = draw(rng, n, STRONG, STRONG)
    bootstrap = Bootstrap(replicates=replicates, seed=seed)
    first, second = with_replicates([score_batch(a, labels), score_batch(b, labels)], bootstrap)
    return difference(first.sums, second.sums, None, bootstrap.confidence_level)


def by_size(trials: int = 1000, replicates: int = 199, sizes: tuple[int, ...] = SIZES) -> BySize:
    """The share of p < 0.05 at each size with no true difference (R = 199: p < 0.05 exactly
    when at most 9 randomizations are as far as the data), on one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rejection = {}
        for n in sizes:
            found = [null_pair(seed, n, replicates) for seed in range(trials)]
            rejection[n] = {
                name: sum((f[name]["p_value"] or 1.0) < 0.05 for f in found) / trials
                for name in CHECKED
            }
        single = [null_pair(seed, 1, replicates) for seed in range(50)]
        seen = [f[name]["p_value"] for f in single for name in CHECKED]
        smallest = min((p for p in seen if p is not None), default=None)
        return BySize(trials, replicates, rejection, smallest)
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=1)
    args = parser.parse_args()
    print(simulate(args.trials, args.replicates, args.first_seed).table())
    print(by_size(args.trials).table())


if __name__ == "__main__":
    main()
