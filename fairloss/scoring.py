"""One scoring call for every surface: a batch in; every per-sample column, the mergeable sums
and, when asked, the superior violations out.

The service's codecs (JSON, Open Inference Protocol), the client's merging and the command line
all go through `score_batch`. It checks the arrays (the one check, raising `InputError`), then
computes one log-softmax per batch that feeds the cross-entropy, the scoring rules and the
calibration bins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fairloss.devices import resolve_device
from fairloss.errors import InputError
from fairloss.functional import counted_labels, terms_of
from fairloss.metrics import CRITERIA, ScoreSums, Violations, score_sums, scores_of
from fairloss.metrics import superior_violations as count_violations
from fairloss.options import ScoringOptions

DTYPES = {"float32": torch.float32, "float64": torch.float64}
FLOAT32_MAX = float(torch.finfo(torch.float32).max)
TERMS = ("ce", "penalty", "total")
SCORES = ("confidence", "log_loss", "brier", "pll", "pbs")
ArrayLike = Tensor | np.ndarray[Any, Any]


@dataclass(frozen=True)
class BatchScores:
    """The scores of one batch of N samples and C classes, computed on ``device``.

    ``columns`` holds (N,) tensors on ``device``: ``ce``, ``penalty``, ``total`` (nats, the
    compute dtype), ``predicted`` (int64), ``correct`` and ``counted`` (bool; an ignored sample
    is neither correct nor counted), and the scoring rules ``confidence``, ``log_loss``,
    ``brier``, ``pll``, ``pbs``. ``sums`` merge across batches; ``violations`` is keyed by
    criterion (``ce``, ``total``, ``brier``, ``pll``, ``pbs``) when asked for.
    """

    n: int
    num_classes: int
    device: str
    options: ScoringOptions
    columns: dict[str, Tensor]
    sums: ScoreSums
    violations: dict[str, Violations] | None = None

    @property
    def reduced(self) -> dict[str, float]:
        """``ce``, ``penalty`` and ``total`` reduced as the options say (NaN: a mean of none)."""
        return reduced(self.sums, self.options.reduction)

    @property
    def metrics(self) -> dict[str, float]:
        return metrics(self.sums)


def reduced(sums: ScoreSums, reduction: str) -> dict[str, float]:
    """The FairLoss terms of ``sums`` reduced by ``reduction`` (``mean`` or ``sum``)."""
    if reduction == "sum":
        return {k: float(getattr(sums, k)) for k in TERMS}
    return {k: sums.mean(k) for k in TERMS}


def metrics(sums: ScoreSums) -> dict[str, float]:
    """Accuracy, the mean scoring rules and the ECE of ``sums`` (NaN where nothing counts)."""
    means = {k: sums.mean(k) for k in ("log_loss", "brier", "pll", "pbs")}
    return {"accuracy": sums.accuracy, **means, "ece": sums.ece}


def score_batch(
    logits: ArrayLike,
    labels: ArrayLike,
    options: ScoringOptions | None = None,
    *,
    default_device: str = "cpu",
    violations: bool = False,
    rules: bool = True,
) -> BatchScores:
    """Score one batch: FairLoss, the paper's scoring rules, sums and (optionally) violations.

    Args:
        logits: (N, C) floating point, N >= 1, C >= 2; finite, and within float32's range when
            ``options.precision`` is float32. Computed in ``options.precision``.
        labels: (N,) integers in ``[0, C)`` or equal to ``options.ignore_index``.
        options: the scoring options (defaults: `ScoringOptions()`).
        default_device: where to compute when ``options.device`` is None.
        violations: also count superior violations (O(N log N) per criterion).
        rules: also compute the scoring rules; without them (``rules=False``) the columns are
            ``ce``, ``penalty``, ``total`` and ``counted`` only, and the sums hold the count and
            those three (about half the work, for callers that need the loss alone).

    Raises:
        InputError: at ``logits``, ``labels``, ``class_weights`` or ``device``, for the first
            fault found; also when a loss overflows the compute precision.
    """
    options = options or ScoringOptions()
    device = resolve_device(options.device or default_device)
    z = _checked_logits(logits, options.precision).to(
        device=device, dtype=DTYPES[options.precision]
    )
    y = _checked_labels(labels, z.shape, options.ignore_index).to(device)
    weight = _class_weights(options, z.shape[1], z)
    counted, target = counted_labels(y, options.ignore_index)
    log_probs = torch.log_softmax(z, dim=1)
    terms = terms_of(
        z,
        log_probs,
        target,
        counted,
        smooth_max_beta=options.smooth_max_beta,
        scaling_factor=options.scaling_factor,
        weight=weight,
        label_smoothing=options.label_smoothing,
    )
    _check_finite(terms.ce, terms.penalty, options.precision)
    if not rules:
        columns = {**dict(zip(TERMS, terms[:3], strict=True)), "counted": counted}
        totals = torch.stack([c.double() for c in terms[:3]]).sum(dim=1).tolist()
        sums = ScoreSums(int(counted.sum()), 0, *totals)
        return BatchScores(z.shape[0], z.shape[1], str(z.device), options, columns, sums)
    scores = scores_of(z, log_probs, target)
    correct = scores.correct & counted
    columns = {
        **dict(zip(TERMS, terms[:3], strict=True)),
        "predicted": scores.predicted,
        "correct": correct,
        "counted": counted,
        **{name: getattr(scores, name) for name in SCORES},
    }
    found = None
    if violations:
        found = {k: count_violations(columns[k], correct, counted) for k in CRITERIA}
    sums = score_sums(terms, scores, options.ece_bins)
    return BatchScores(z.shape[0], z.shape[1], str(z.device), options, columns, sums, found)


def check_shape(shape: tuple[int, ...]) -> None:
    """Raise `InputError` at ``logits`` unless ``shape`` is (N, C) with N >= 1 and C >= 2."""
    if len(shape) != 2:
        raise InputError(
            f"Expected {{where}} of shape (N, C), but got {tuple(shape)}", ("logits",), "bad_shape"
        )
    if shape[0] < 1:
        raise InputError("Expected {where} to hold at least one row", ("logits",), "empty_batch")
    if shape[1] < 2:
        raise InputError(
            f"Expected at least 2 classes, but {{where}} has {shape[1]}",
            ("logits", 0),
            "too_few_classes",
        )


def _checked_logits(logits: ArrayLike, precision: str) -> Tensor:
    z = torch.as_tensor(logits)
    if not torch.is_floating_point(z):
        raise InputError(
            f"Expected {{where}} to hold floating point numbers, not {z.dtype}",
            ("logits",),
            "float_type",
        )
    check_shape(tuple(z.shape))
    finite = torch.isfinite(z)
    if not bool(finite.all()):
        i, j = (int(k) for k in (~finite).nonzero()[0])
        raise InputError(
            f"Expected finite numbers, but {{where}} is {float(z[i, j])}",
            ("logits", i, j),
            "not_finite",
        )
    if precision == "float32" and z.dtype == torch.float64:
        too_big = z.abs() > FLOAT32_MAX
        if bool(too_big.any()):
            i, j = (int(k) for k in too_big.nonzero()[0])
            raise InputError(
                f"{{where}} = {float(z[i, j])} is too large for float32; "
                'send "precision": "float64"',
                ("logits", i, j),
                "too_large_for_precision",
            )
    return z


def _checked_labels(labels: ArrayLike, shape: torch.Size, ignore_index: int | None) -> Tensor:
    y = torch.as_tensor(labels)
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise InputError(
            f"Expected {{where}} to hold integer class labels, not {y.dtype}",
            ("labels",),
            "int_type",
        )
    if y.shape != shape[:1]:
        got = y.shape[0] if y.dim() == 1 else tuple(y.shape)
        raise InputError(
            f"Expected {shape[0]} labels, one per row, but got {got}", ("labels",), "bad_length"
        )
    allowed = (y >= 0) & (y < shape[1])
    if ignore_index is not None:
        allowed |= y == ignore_index
    if not bool(allowed.all()):
        k = int((~allowed).nonzero()[0, 0])
        raise label_out_of_range(k, int(y[k]), shape[1], ignore_index)
    return y


def label_out_of_range(
    k: int, value: object, num_classes: int, ignore_index: int | None
) -> InputError:
    """The error for ``labels[k]``, whose ``value`` is not a class (nor ``ignore_index``)."""
    also = "" if ignore_index is None else f" or equal to ignore_index {ignore_index}"
    return InputError(
        f"Expected labels in [0, {num_classes}){also}, but {{where}} is {value}",
        ("labels", k),
        "label_out_of_range",
    )


def _class_weights(options: ScoringOptions, num_classes: int, like: Tensor) -> Tensor | None:
    if options.class_weights is None:
        return None
    if len(options.class_weights) != num_classes:
        raise InputError(
            f"Expected {num_classes} class_weights, one per class, "
            f"but got {len(options.class_weights)}",
            ("class_weights",),
            "bad_length",
        )
    return torch.tensor(options.class_weights, dtype=like.dtype, device=like.device)


def _check_finite(ce: Tensor, penalty: Tensor, precision: str) -> None:
    """An `InputError` naming the first row whose loss overflowed the compute precision."""
    bad_ce = ~ce.isfinite()
    if bool(bad_ce.any()):
        i = int(bad_ce.nonzero()[0, 0])
        hint = 'send "precision": "float64"' if precision == "float32" else "scale down"
        raise InputError(
            f"The cross-entropy of row {i} overflows {precision} (logits too far apart or class "
            f"weight too large); {hint}",
            ("logits", i),
            "not_finite_result",
        )
    if not bool(penalty.isfinite().all()):
        raise InputError(
            "These options give non-finite penalties; use a smaller smooth_max_beta or "
            'scaling_factor, or "precision": "float64"',
            ("smooth_max_beta",),
            "not_finite_result",
        )
