"""The core's scoring pass against torch's own cross-entropy, in process, on float32 logits.

Run from the repository root: ``.venv/bin/python benchmarks/core_bench.py [--quick]
[--threads N]``. For each shape, one round times, one after another:

- ``F.cross_entropy(z, y, reduction="none")``: torch's per-sample cross-entropy, the floor;
- ``score_batch(z, y)``: FairLoss, the scoring rules, the sums and the calibration bins;
- ``score_batch(z, y, rules=False)``: the loss alone, as the Open Inference Protocol asks it.

Medians over the rounds, and each ratio to the cross-entropy beside its target (score_batch at
most 3x, rules=False at most 2x). The logits are `benchmarks.common.payload`'s (normal, scale 2,
seeded by the size) and the whole array is checked as a request's would be.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import interleaved, ms, payload
from fairloss.scoring import score_batch

SHAPES = ((100_000, 100), (1_000, 50_000), (1_000_000, 10))
TARGETS = {"score_batch": 3.0, "rules=False": 2.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds, not 7")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = 3 if args.quick else 7
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {rounds} rounds")
    print(f"{'shape':>16} {'cross_entropy':>14} {'score_batch':>12} {'rules=False':>12}  ratios")
    for n, c in SHAPES:
        logits, labels = payload(n, c)
        z, y = torch.from_numpy(logits.astype("float32")), torch.from_numpy(labels)
        del logits
        medians = interleaved(
            {
                "cross_entropy": partial(F.cross_entropy, z, y, reduction="none"),
                "score_batch": partial(score_batch, z, y),
                "rules=False": partial(score_batch, z, y, rules=False),
            },
            rounds,
        )
        floor = medians["cross_entropy"]
        ratios = ", ".join(
            f"{name} {medians[name] / floor:.2f}x (target <= {bar:g})"
            for name, bar in TARGETS.items()
        )
        cells = " ".join(f"{ms(medians[k]):>12}" for k in ("score_batch", "rules=False"))
        print(f"{f'{n:,} x {c:,}':>16} {ms(floor):>14} {cells}  {ratios}")
    print("(median ms)")


if __name__ == "__main__":
    main()
