"""The core's scoring pass against torch's own cross-entropy, in process, on float32 logits.

Run from the repository root: ``.venv/bin/python benchmarks/core_bench.py [--quick]
[--threads N] [--block-elements N]``. For each shape, one round times, one after another:

- ``F.cross_entropy(z, y, reduction="none")``: torch's per-sample cross-entropy, the floor;
- the same cross-entropy with its log-softmax written into a buffer made once (``reused``):
  what it costs without fresh memory for its N x C temporary, which ``F.cross_entropy`` maps
  and the kernel zero-fills on each call (40 to 200 MB here; how much that costs varies from
  run to run with what the allocator has kept);
- ``score_batch(z, y)``: FairLoss, the scoring rules, the sums and the calibration bins;
- ``score_batch(z, y, rules=False)``: the loss alone, as the Open Inference Protocol asks it.

Medians over the rounds, each ratio to ``F.cross_entropy`` beside its target (score_batch at
most 3x, rules=False at most 2x), then to the reused-buffer cross-entropy. The logits are
`benchmarks.common.payload`'s (normal, scale 2, seeded by the size); `score_batch` checks the
whole array as it checks a request's.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fairloss.blocks
from benchmarks.common import interleaved, ms, payload
from fairloss.scoring import score_batch

SHAPES = ((100_000, 100), (1_000, 50_000), (1_000_000, 10))
TARGETS = {"score_batch": 3.0, "rules=False": 2.0}
COLUMNS = ("cross_entropy", "reused", "score_batch", "rules=False")


def reused_cross_entropy(z: torch.Tensor, y: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
    return F.nll_loss(torch.log_softmax(z, dim=1, out=buffer), y, reduction="none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds, not 7")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's own)")
    parser.add_argument(
        "--block-elements",
        type=int,
        default=fairloss.blocks.BLOCK_ELEMENTS,
        help="logits per block of the scoring pass (fairloss.blocks.BLOCK_ELEMENTS)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    fairloss.blocks.BLOCK_ELEMENTS = args.block_elements
    rounds = 3 if args.quick else 7
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {rounds} rounds, "
        f"blocks of {args.block_elements:,} logits"
    )
    print(f"{'shape':>16}", *(f"{name:>13}" for name in COLUMNS), " ratios")
    for n, c in SHAPES:
        logits, labels = payload(n, c)
        z, y = torch.from_numpy(logits.astype("float32")), torch.from_numpy(labels)
        del logits
        medians = interleaved(
            {
                "cross_entropy": partial(F.cross_entropy, z, y, reduction="none"),
                "reused": partial(reused_cross_entropy, z, y, torch.empty_like(z)),
                "score_batch": partial(score_batch, z, y),
                "rules=False": partial(score_batch, z, y, rules=False),
            },
            rounds,
        )
        floor, reused = medians["cross_entropy"], medians["reused"]
        ratios = ", ".join(
            f"{name} {medians[name] / floor:.2f}x (target <= {bar:g}; "
            f"{medians[name] / reused:.2f}x reused)"
            for name, bar in TARGETS.items()
        )
        cells = " ".join(f"{ms(medians[k]):>13}" for k in COLUMNS)
        print(f"{f'{n:,} x {c:,}':>16} {cells}  {ratios}")
    print("(median ms)")


if __name__ == "__main__":
    main()
