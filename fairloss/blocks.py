"""The scoring pass over blocks of rows: FairLoss, the scoring rules and their sums.

Each torch operation on a whole (M, C) batch writes a fresh M x C temporary, and on the CPU
mapping and faulting in that memory costs more than the arithmetic on it. So on the CPU a batch
is scored in blocks of about `BLOCK_ELEMENTS` logits (4 MiB in float32): each block's
log-softmax, scaled differences and probabilities are written into three buffers kept for the
whole batch, small enough to stay in the processor's cache, and its sums are added to the
batch's. Every block goes through the same per-row functions as a whole batch
would (`terms_of`, `scores_of`, `summed`), torch's intra-op threads share each block's
operations, and a block needs no compiler. On another device (a GPU, where the memory is fast
and each call costs a kernel launch) the whole batch is one block.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import torch
from torch import Tensor

from fairloss.functional import FairLossTerms, terms_of
from fairloss.metrics import SampleScores, scores_of
from fairloss.options import ScoringOptions
from fairloss.sums import counted_weight, summed, weighted_sums

# Rows of C classes per block on the CPU: BLOCK_ELEMENTS // C, at least one. 2^20 float32
# logits (4 MiB; the block's three buffers within the 32 MiB last-level cache of the machine
# it was measured on) scored each of the benchmark's three shapes within 6% of the fastest
# of 2^16 to 2^22 (2^21 was fastest for two), and 2^16 took 1.9 to 2.6 times as long
# (`benchmarks/core_bench.py --block-elements N`).
BLOCK_ELEMENTS = 1 << 20


class ScoredRows(NamedTuple):
    """The scored rows of a batch: per-sample ``terms`` and (with the rules) ``scores``, each
    (M,), and ``sums``: `fairloss.sums.summed`'s vector with the rules, else the weighted
    sums of the counted samples' weight, ``ce``, ``penalty`` and ``total`` (float64)."""

    terms: FairLossTerms
    scores: SampleScores | None
    sums: Tensor


def rows_per_block(num_rows: int, num_classes: int, device: torch.device) -> int:
    """How many rows one block holds: all of them off the CPU."""
    if device.type != "cpu":
        return max(num_rows, 1)
    return max(1, BLOCK_ELEMENTS // num_classes)


def score_rows(
    logits: Tensor,
    target: Tensor,
    counted: Tensor | None,
    options: ScoringOptions,
    *,
    weight: Tensor | None,
    sample_weight: Tensor | None,
    rules: bool,
) -> ScoredRows:
    """Score (M, C) ``logits`` in the compute dtype against ``target`` (M,) in ``[0, C)``.

    ``counted`` (M,) bool says which samples count (None: all); ``options`` give beta, the
    scaling factor, the label smoothing and the calibration bins; ``weight`` holds the class
    weights (C,) and ``sample_weight`` the samples' weights (M,) float64; ``rules`` says
    whether to score the rules and keep the bins too. Raises nothing of its own: the caller
    has checked the arrays.
    """
    step = rows_per_block(logits.shape[0], logits.shape[1], logits.device)
    n_bins = options.ece_bins
    terms_of_block = partial(
        terms_of,
        smooth_max_beta=options.smooth_max_beta,
        scaling_factor=options.scaling_factor,
        weight=weight,
        label_smoothing=options.label_smoothing,
    )
    if step >= logits.shape[0]:  # one block: no views to take, no buffers to keep
        args = (logits, target, counted, sample_weight)
        return _score_block(terms_of_block, *args, rules=rules, n_bins=n_bins)
    # The block's log-softmax, the penalty's scaled differences and their log-softmax, then the
    # probabilities: written into the same three buffers block after block, since freshly
    # allocated ones are mapped and zero-filled anew whenever the allocator has handed the
    # last block's back to the system (which made 1,000 x 50,000 take from 0.3 s to 0.7 s).
    buffers = torch.empty(3, step, logits.shape[1], dtype=logits.dtype, device=logits.device)
    blocks: list[ScoredRows] = []
    total: Tensor | None = None
    for start in range(0, logits.shape[0], step):
        rows = slice(start, start + step)
        block_logits = logits[rows]
        block = _score_block(
            terms_of_block,
            block_logits,
            target[rows],
            None if counted is None else counted[rows],
            None if sample_weight is None else sample_weight[rows],
            rules=rules,
            n_bins=n_bins,
            work=buffers[:, : block_logits.shape[0]],
        )
        total = block.sums if total is None else total.add_(block.sums)
        blocks.append(block)
    assert total is not None  # a batch holds at least one row
    terms = FairLossTerms(*map(torch.cat, zip(*(b.terms for b in blocks), strict=True)))
    scores = None
    if rules:
        parts = zip(*(b.scores for b in blocks if b.scores is not None), strict=True)
        scores = SampleScores(*map(torch.cat, parts))
    return ScoredRows(terms, scores, total)


def _score_block(
    terms_of_block: Callable[..., FairLossTerms],
    logits: Tensor,
    target: Tensor,
    counted: Tensor | None,
    sample_weight: Tensor | None,
    *,
    rules: bool,
    n_bins: int,
    work: Tensor | None = None,
) -> ScoredRows:
    """One block; ``work``: (3, rows, C) buffers to compute in, or None to allocate."""
    log_probs = torch.log_softmax(logits, dim=1, out=None if work is None else work[0])
    penalty_work = None if work is None else (work[1], work[2])
    terms = terms_of_block(logits, log_probs, target, counted, work=penalty_work)
    if rules:
        scores = scores_of(logits, log_probs, target, None if work is None else work[1])
        return ScoredRows(terms, scores, summed(terms, scores, n_bins, sample_weight))
    weight = counted_weight(terms.counted, sample_weight)
    return ScoredRows(terms, None, weighted_sums(terms[:3], weight)[0])
