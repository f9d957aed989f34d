"""FairLoss as pure functions on tensors. See `fairloss.FairLoss` for the maths."""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

Reduction = Literal["none", "mean", "sum"]
REDUCTIONS: tuple[str, ...] = ("none", "mean", "sum")


class FairLossTerms(NamedTuple):
    """Per-sample terms, each of the labels' shape, (N,) or (N, d1, ..., dk). Ignored samples
    hold 0 in every term."""

    ce: Tensor
    penalty: Tensor
    total: Tensor
    counted: Tensor


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype FairLoss computes in: never below float32 (``beta * z`` overflows float16)."""
    return torch.promote_types(dtype, torch.float32)


def check_options(
    smooth_max_beta: float,
    scaling_factor: float,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> None:
    """Raise `ValueError` unless the loss options are usable."""
    for name, value in (("smooth_max_beta", smooth_max_beta), ("scaling_factor", scaling_factor)):
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise ValueError(
                f"Expected `{name}` to be a finite number larger than 0, but got {value}"
            )
    if not (isinstance(label_smoothing, int | float) and 0.0 <= label_smoothing <= 1.0):
        raise ValueError(f"Expected `label_smoothing` in [0, 1], but got {label_smoothing}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"Expected `reduction` to be one of {REDUCTIONS}, but got {reduction!r}")


def check_inputs(
    logits: Tensor,
    target: Tensor,
    ignore_index: int | None = None,
    weight: Tensor | None = None,
) -> None:
    """Raise `ValueError`/`TypeError` unless ``logits`` (N, C, d1, ..., dk) and ``target``
    (N, d1, ..., dk) fit together, k >= 0, as for ``nn.CrossEntropyLoss``."""
    if not torch.is_floating_point(logits):
        raise TypeError(f"Expected `logits` to be a floating point tensor, but got {logits.dtype}")
    if logits.dim() < 2:
        raise ValueError(
            "Expected `logits` of shape (N, C) or (N, C, d1, ..., dk), but got "
            f"{logits.dim()} dimension(s): {tuple(logits.shape)}"
        )
    if logits.shape[1] < 2:
        raise ValueError(f"Expected at least 2 classes, but got C = {logits.shape[1]}")
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise TypeError(f"Expected `target` to hold integer class labels, but got {target.dtype}")
    wanted = (logits.shape[0], *logits.shape[2:])
    if tuple(target.shape) != wanted:
        raise ValueError(
            f"Expected `target` of shape {wanted} to match `logits` "
            f"{tuple(logits.shape)}, but got {tuple(target.shape)}"
        )
    if weight is not None and weight.shape != logits.shape[1:2]:
        raise ValueError(
            f"Expected `weight` of shape ({logits.shape[1]},), but got {tuple(weight.shape)}"
        )
    if weight is not None and not bool((weight >= 0).all() & weight.isfinite().all()):
        raise ValueError("Expected `weight` to hold finite non-negative numbers")
    num_classes = logits.shape[1]
    valid = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        valid |= target == ignore_index
    if not bool(valid.all()):
        bad = tuple(int(k) for k in (~valid).nonzero()[0])
        where = bad[0] if len(bad) == 1 else bad
        raise ValueError(
            f"Expected every label in [0, {num_classes})"
            + ("" if ignore_index is None else f" or equal to ignore_index {ignore_index}")
            + f", but got {int(target[bad])} at index {where}"
        )


def flatten(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """(N, C, d1, ..., dk) logits and (N, d1, ..., dk) labels as (M, C) rows and (M,) labels,
    M = N * d1 * ... * dk, in the row-major order of the labels' shape."""
    if logits.dim() == 2:
        return logits, target
    return logits.movedim(1, -1).reshape(-1, logits.shape[1]), target.reshape(-1)


def penalty_gap(
    logits: Tensor,
    target: Tensor,
    smooth_max_beta: float,
    work: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """``smoothmax(z) - z[y]`` = ``logsumexp(beta * (z - z[y])) / beta`` (nats; logits (M, C),
    ``target`` (M,) in ``[0, C)``), taken as ``-log_softmax(beta * (z - z[y]))[y] / beta``:
    the true class's scaled difference is exactly 0, so minus its log-softmax is the logsumexp.

    The shift by the true logit keeps the difference exact where the two terms are large.
    Log-softmax's row kernel computes the same maximum and sum of exponentials as
    ``torch.logsumexp`` does, in one pass over the row and at full speed where an argument
    underflows, while ``torch.exp`` takes a slow path for each argument below about -87: with
    beta = 1000 nearly every class lies more than 87 / beta below the row's maximum, and
    ``logsumexp`` cost six times the whole cross-entropy (220 ms at 100,000 x 100). Such a
    term is below 2^-126 (and exactly 0 in float32 below -104), beside a sum of at least 1 (the
    row's maximum term is exp(0)): however the kernel rounds or flushes them, C of them move
    the sum by less than C * 2^-125, below float32's resolution at 1 (2^-24) for any C that
    fits in memory. `tests/test_blocks.py` checks rows that straddle that edge against float64.

    ``work``: two (M, C) buffers of the logits' dtype for the scaled differences and their
    log-softmax, reused from call to call (`fairloss.blocks`: no autograd through them); None
    allocates them, as autograd needs.
    """
    scaled_out, log_softmax_out = (None, None) if work is None else work
    index = target.unsqueeze(1)
    scaled = torch.sub(logits, logits.gather(1, index), out=scaled_out).mul_(smooth_max_beta)
    # A difference that overflows to +inf (a gap above the dtype's largest number / beta) is
    # taken as that largest number: log-softmax of a row holding +inf is NaN, and the gap is
    # then beyond any scaling's reach anyway (the penalty is 1/C, as logsumexp's inf gave).
    scaled.clamp_(max=torch.finfo(scaled.dtype).max)
    log_softmax = torch.log_softmax(scaled, dim=1, out=log_softmax_out)
    # 0.0 - x, not -x: a row whose every other class is far below gives +0.0, not -0.0
    return (0.0 - log_softmax.gather(1, index).squeeze(1)).div_(smooth_max_beta)


def penalty(
    logits: Tensor,
    target: Tensor,
    smooth_max_beta: float,
    scaling_factor: float,
    work: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Per-sample ``tanh(scaling_factor * gap / 2) / C``: near 0 when the true class has the
    largest logit, near ``1/C`` when another class beats it. ``target`` must be in ``[0, C)``;
    ``work`` as for `penalty_gap`."""
    gap = penalty_gap(logits, target, smooth_max_beta, work)
    # gap * (s / 2) rounds as (s * gap) / 2 does: halving is exact. In place on a temporary.
    return torch.tanh(gap.mul_(scaling_factor / 2)) / logits.shape[1]


def cross_entropy(
    log_probs: Tensor, target: Tensor, weight: Tensor | None = None, label_smoothing: float = 0.0
) -> Tensor:
    """Per-sample cross-entropy from log-probabilities, as ``F.cross_entropy`` computes it.

    ``(1 - eps) * w[y] * nll[y] + eps / C * sum_c w[c] * nll[c]``, with ``nll = -log_probs``,
    ``eps = label_smoothing`` and ``w`` the class weights (ones when None). Taking log-softmax
    as an argument lets one log-softmax feed the loss and the scoring rules. ``target`` must be
    in ``[0, C)``. Never ``-0.0``: a certain row's cross-entropy is ``0.0``.
    """
    nll = F.nll_loss(log_probs, target, weight=weight, reduction="none")
    if label_smoothing:
        weighted = log_probs if weight is None else log_probs * weight
        smooth = -weighted.sum(dim=1) / log_probs.shape[1]
        nll = (1 - label_smoothing) * nll + label_smoothing * smooth
    # + 0.0 turns the -0.0 that a certain row gives (-log 1) into 0.0.
    return nll + 0.0


def fair_loss_terms(
    logits: Tensor,
    target: Tensor,
    *,
    smooth_max_beta: float = 1000.0,
    scaling_factor: float = 1000.0,
    weight: Tensor | None = None,
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
) -> FairLossTerms:
    """Per-sample cross-entropy, penalty and total. See `fairloss.FairLoss`."""
    check_options(smooth_max_beta, scaling_factor, label_smoothing)
    check_inputs(logits, target, ignore_index, weight)
    shape = target.shape
    logits, target = flatten(logits.to(compute_dtype(logits.dtype)), target)
    if weight is not None:
        weight = weight.to(device=logits.device, dtype=logits.dtype)
    counted, safe_target = counted_labels(target, ignore_index)
    terms = terms_of(
        logits,
        torch.log_softmax(logits, dim=1),
        safe_target,
        counted,
        smooth_max_beta=smooth_max_beta,
        scaling_factor=scaling_factor,
        weight=weight,
        label_smoothing=label_smoothing,
    )
    return FairLossTerms(*(term.reshape(shape) for term in terms))


def counted_labels(target: Tensor, ignore_index: int | None) -> tuple[Tensor, Tensor]:
    """Which samples count, and the labels with ignored ones replaced by 0 (a valid index)."""
    target = target.long()
    if ignore_index is None:
        return torch.ones_like(target, dtype=torch.bool), target
    counted = target != ignore_index
    return counted, torch.where(counted, target, 0)


def terms_of(
    logits: Tensor,
    log_probs: Tensor,
    target: Tensor,
    counted: Tensor | None,
    *,
    smooth_max_beta: float,
    scaling_factor: float,
    weight: Tensor | None,
    label_smoothing: float,
    work: tuple[Tensor, Tensor] | None = None,
) -> FairLossTerms:
    """The terms from logits already in the compute dtype and their log-softmax; ``target`` in
    ``[0, C)`` everywhere (ignored samples hold any valid label and score 0). ``counted`` None
    means that every sample counts; ``work`` as for `penalty_gap`."""
    ce = cross_entropy(log_probs, target, weight, label_smoothing)
    pen = penalty(logits, target, smooth_max_beta, scaling_factor, work)
    if counted is None:
        counted = torch.ones_like(target, dtype=torch.bool)
    else:
        zero = torch.zeros((), dtype=logits.dtype, device=logits.device)
        ce = torch.where(counted, ce, zero)
        pen = torch.where(counted, pen, zero)
    return FairLossTerms(ce, pen, ce + pen, counted)


def reduce(values: Tensor, counted: Tensor, reduction: Reduction) -> Tensor:
    """Apply ``reduction``; ``mean`` divides by the number of counted samples (NaN for none)."""
    if reduction == "none":
        return values
    total = values.sum()
    return total if reduction == "sum" else total / counted.sum()


def fair_loss(
    logits: Tensor,
    target: Tensor,
    *,
    smooth_max_beta: float = 1000.0,
    scaling_factor: float = 1000.0,
    weight: Tensor | None = None,
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """FairLoss of a batch. See `fairloss.FairLoss`."""
    check_options(smooth_max_beta, scaling_factor, label_smoothing, reduction)
    terms = fair_loss_terms(
        logits,
        target,
        smooth_max_beta=smooth_max_beta,
        scaling_factor=scaling_factor,
        weight=weight,
        label_smoothing=label_smoothing,
        ignore_index=ignore_index,
    )
    return reduce(terms.total, terms.counted, reduction)
