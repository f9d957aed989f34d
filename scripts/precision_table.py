"""Float32 precision of the FairLoss penalty: this project's core against pytorch-fairloss 0.1.1.

For logits of growing scale, prints the largest absolute error of the float32 penalty against the
same penalty evaluated in float64 on the same (float32) logits:

- ``fairloss``: this project's core, which takes the gap as ``logsumexp(beta * (z - z_y)) / beta``.
- ``0.1.1 formula``: the gap as pytorch-fairloss 0.1.1 forms it, the smooth maximum
  ``logsumexp(beta * z) / beta`` first and the true logit subtracted afterwards. On confident
  rows both terms are large and nearly equal, so float32 rounding of the smooth maximum is all
  that is left of their difference. Re-derived here so that the package need not be installed.

Run: ``.venv/bin/python scripts/precision_table.py``
"""

from __future__ import annotations

import torch
from torch import Tensor

from fairloss.functional import fair_loss_terms

SCALES = (1.0, 10.0, 100.0, 1000.0)
ROWS, CLASSES, SEED = 10_000, 10, 0
BETA = SCALING = 1000.0


def large_difference_penalty(logits: Tensor, target: Tensor) -> Tensor:
    """The penalty with the gap taken as (smooth maximum) minus (true logit), in float32.

    Like 0.1.1, the smooth maximum is scaled by the reciprocal of beta rather than divided by it.
    """
    smooth_max = (1.0 / BETA) * torch.logsumexp(BETA * logits, dim=1)
    gap = smooth_max - logits.gather(1, target.unsqueeze(1)).squeeze(1)
    return (2 * torch.sigmoid(SCALING * gap) - 1) / logits.shape[1]


def core_penalty(logits: Tensor, target: Tensor) -> Tensor:
    terms = fair_loss_terms(logits, target, smooth_max_beta=BETA, scaling_factor=SCALING)
    return terms.penalty


def max_error(penalty: Tensor, exact: Tensor) -> float:
    return float((penalty.double() - exact).abs().max())


def main() -> None:
    generator = torch.Generator().manual_seed(SEED)
    base = torch.randn(ROWS, CLASSES, generator=generator, dtype=torch.float64)
    target = torch.randint(0, CLASSES, (ROWS,), generator=generator)
    print(f"max |float32 penalty - float64 penalty| over {ROWS:,} rows x {CLASSES} classes,")
    print(f"beta = scaling_factor = {BETA:g}, logits ~ N(0, scale^2), seed {SEED}")
    print()
    print(f"| {'scale':>6} | {'fairloss (shifted)':>18} | {'0.1.1 formula':>13} |")
    print(f"| {'-' * 6}:| {'-' * 18}:| {'-' * 13}:|")
    for scale in SCALES:
        logits = (base * scale).float()
        exact = core_penalty(logits.double(), target)
        ours = max_error(core_penalty(logits, target), exact)
        theirs = max_error(large_difference_penalty(logits, target), exact)
        print(f"| {scale:>6g} | {ours:>18.3e} | {theirs:>13.3e} |")


if __name__ == "__main__":
    main()
