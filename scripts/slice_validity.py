"""Statistical validity of the slice tests and Holm's adjustment, by simulation.

One model scores items of one generating process (that of `scripts/bootstrap_validity.py`), and
the items are split into slices at random, so no slice differs from the rest:

- ``rejection``: for a slice of 5, 10 and 100 items among 400, the share of trials whose
  slice-versus-rest p-value is below 0.05, per criterion (valid: at most 5% plus noise);
- ``family``: with ten such slices of 40 items (the Holm family of one column), the share of
  trials where any of the ten Holm-adjusted p-values is below 0.05, per criterion (valid: at
  most 5% plus noise);
- ``power``: two models of different strength on 2,000 items: the share of trials whose paired
  randomization test of mean FairLoss total has p < 0.05.

Everything is seeded. Run: ``.venv/bin/python scripts/slice_validity.py [--trials 400]``
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fairloss.bootstrap import Bootstrap  # noqa: E402
from fairloss.breakdown import group_report  # noqa: E402
from fairloss.replicates import with_replicates  # noqa: E402
from fairloss.scoring import score_batch  # noqa: E402
from fairloss.uncertainty import difference  # noqa: E402
from scripts.bootstrap_validity import CHECKED, STRONG, WEAK, draw  # noqa: E402

ITEMS = 400
SLICES = (5, 10, 100)
REPLICATES = 199
FAMILY_REPLICATES = 999  # Holm over 10 keys needs some p below 0.005: 1 / (1 + R) must be


@dataclass(frozen=True)
class SliceValidity:
    trials: int
    rejection: dict[int, dict[str, float]]  # slice size -> criterion -> share of p < 0.05
    family: dict[str, float]  # criterion -> share of trials with any Holm p < 0.05
    power: float  # paired test at N = 2,000, a true difference

    def worst(self) -> float:
        rates = [r for by in self.rejection.values() for r in by.values()]
        return max([*rates, *self.family.values()])

    def table(self) -> str:
        head = "                     " + "".join(f"{name:>10}" for name in CHECKED)
        rows = [
            f"slice of {n:3d} items   " + "".join(f"{rates[c]:10.1%}" for c in CHECKED)
            for n, rates in self.rejection.items()
        ]
        family = "ten slices, Holm (*) " + "".join(f"{self.family[c]:10.1%}" for c in CHECKED)
        return "\n".join(
            [
                f"slice-versus-rest randomization test, no true difference: share of trials with "
                f"p < 0.05 ({self.trials} trials, {REPLICATES} replicates, {ITEMS} items; valid: "
                "<= 5% + noise)",
                head,
                *rows,
                family,
                f"(*) any of ten slices of 40 items, Holm-adjusted, {FAMILY_REPLICATES} replicates",
                f"power: paired test of mean total at N = 2,000, a true difference: "
                f"{self.power:.1%} of {self.trials // 4} trials with p < 0.05",
            ]
        )


def null_slices(
    seed: int, sizes: list[int], replicates: int = REPLICATES
) -> dict[str, list[dict[str, float | None]]]:
    """One model on ``ITEMS`` items, split at random into slices of ``sizes`` and one more of
    the items left; each key's ``vs_rest``, in key order (the last: the items left)."""
    rng = np.random.default_rng([seed, *sizes])
    logits, _, labels = draw(rng, ITEMS, STRONG, STRONG)
    keys = np.full(ITEMS, len(sizes))
    order = rng.permutation(ITEMS)
    start = 0
    for k, size in enumerate(sizes):
        keys[order[start : start + size]] = k
        start += size
    batch = score_batch(
        logits, labels, groups={"g": keys}, bootstrap=Bootstrap(replicates, seed=seed)
    )
    assert batch.sums.groups is not None
    report = group_report(batch.sums.groups, batch.sums, "mean", False, 0.95)
    return {c: [entry["vs_rest"][c] for entry in report["g"]] for c in CHECKED}


def power_trial(seed: int) -> float | None:
    rng = np.random.default_rng([seed, 2_000])
    a, b, labels = draw(rng, 2_000, STRONG, WEAK)
    bootstrap = Bootstrap(REPLICATES, seed=seed)
    first, second = with_replicates([score_batch(a, labels), score_batch(b, labels)], bootstrap)
    p: float | None = difference(first.sums, second.sums, None, 0.95)["total"]["p_value"]
    return p


def simulate(trials: int = 400) -> SliceValidity:
    """On one torch thread (restored after): small batches, many of them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rejection = {}
        for size in SLICES:
            found = [null_slices(seed, [size]) for seed in range(trials)]
            rejection[size] = {
                c: sum((f[c][0]["p_value"] or 1.0) < 0.05 for f in found) / trials for c in CHECKED
            }
        families = [null_slices(seed, [40] * 9, FAMILY_REPLICATES) for seed in range(trials)]
        family = {
            c: sum(any((e["p_adjusted"] or 1.0) < 0.05 for e in f[c]) for f in families) / trials
            for c in CHECKED
        }
        powers = [power_trial(seed) for seed in range(trials // 4)]
        power = sum((p or 1.0) < 0.05 for p in powers) / len(powers)
        return SliceValidity(trials, rejection, family, power)
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=400)
    print(simulate(parser.parse_args().trials).table())


if __name__ == "__main__":
    main()
