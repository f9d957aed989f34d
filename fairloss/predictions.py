"""Predictions as logits: the one place each kind of prediction is checked and converted.

Predictions come as ``logits``, ``probabilities`` or ``log_probabilities`` of shape (N, C) or
(N, C, d1, ..., dk), or of shape (N) for a binary classifier, as scikit-learn reads them:
``decision_function`` scores s (the logits (0, s), so that softmax gives (1 - sigmoid(s),
sigmoid(s)), as `LogisticRegression.predict_proba` does), or the positive class's probability
p (the probabilities (1 - p, p), as ``sklearn.metrics.log_loss`` reads a 1-D ``y_proba``), or
its log.

Probabilities are clipped to [eps, 1 - eps] and scored as the logits ``log(p)``, eps the machine
epsilon of the dtype they came in (float64 for JSON numbers; bfloat16's is taken as float32's,
the dtype numpy would hold them in), as ``sklearn.metrics.log_loss`` clips them (scikit-learn
1.9, ``_log_loss``). Log-probabilities are clipped alike, at log(eps) and log(1 - eps), so that
``predict_log_proba`` (``-inf`` where a probability is 0) scores as ``predict_proba`` does.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fairloss.checks import (
    ArrayLike,
    Kind,
    all_finite,
    check_shape,
    element_error,
    first_index,
)
from fairloss.errors import InputError

SUM_TOLERANCE = 1e-3  # how far a sample's probabilities may sum from 1
WARN_SAMPLES = 10  # fewer samples summing to 1 are as likely a hand-written example
PROBABILITIES_AS_LOGITS = (
    "`logits` look like probabilities: every value is in [0, 1] and every sample sums to 1. "
    "Logits are scored through a softmax, which flattens probabilities (a log loss far above "
    'theirs); send them as `probabilities` (or --kind probabilities, kind="probabilities")'
)


def clip_eps(dtype: torch.dtype) -> float:
    """The epsilon probabilities of ``dtype`` are clipped at: its machine epsilon, as
    scikit-learn's ``log_loss`` takes it; float32's for bfloat16, which numpy does not have."""
    return float(torch.finfo(torch.float32 if dtype == torch.bfloat16 else dtype).eps)


def checked_predictions(predictions: ArrayLike, kind: Kind, precision: str) -> Tensor:
    """The predictions as logits of shape (N, C) or (N, C, d1, ..., dk) ((N, 2) for binary
    scores of shape (N)): probabilities and log-probabilities clipped (above) and in the
    compute precision, float64 logits in float32 when that is the precision, other logits in
    their own dtype.

    Raises:
        InputError: at ``kind`` and the first bad element: not floating point, a bad shape, not
            finite (log-probabilities may be ``-inf``), too large for float32, a probability
            outside [0, 1], a log-probability above 0, a sample that does not sum to 1.
    """
    z = torch.as_tensor(predictions)
    if not torch.is_floating_point(z):
        raise InputError(
            f"Expected {{where}} to hold floating point numbers, not {z.dtype}",
            (kind,),
            "float_type",
        )
    check_shape(tuple(z.shape), kind)
    narrow = kind == "logits" and precision == "float32" and z.dtype == torch.float64
    # One pass checks both faults: a value that is not finite, and (narrowing) one too large
    # once rounded to float32 (3.4028235e38, as float32 prints its largest, fits). A
    # log-probability of -inf is a probability of 0: finite once clipped.
    narrowed = z.to(torch.float32) if narrow else z
    if kind == "log_probabilities":
        narrowed = z.clamp(min=float(torch.finfo(z.dtype).min))
    if not all_finite(narrowed):
        _raise_not_finite(z, narrowed, kind)
    eps = clip_eps(z.dtype)
    dtype = torch.float64 if precision == "float64" else torch.float32
    if kind == "probabilities":
        return _from_probabilities(z, dtype, eps)
    if kind == "log_probabilities":
        return _from_log_probabilities(z, dtype, eps)
    return torch.stack([torch.zeros_like(narrowed), narrowed], 1) if z.dim() == 1 else narrowed


def _raise_not_finite(z: Tensor, narrowed: Tensor, kind: Kind) -> None:
    finite = torch.isfinite(narrowed if kind == "log_probabilities" else z)
    if not bool(finite.all()):
        hint = ""
        if kind == "logits" and float(z[first_index(~finite)]) == -math.inf:
            hint = " (the log of a probability of 0? send them as log_probabilities)"
        raise element_error(~finite, z, kind, "Expected finite numbers", "not_finite", hint)
    at = first_index(~torch.isfinite(narrowed))
    raise InputError(
        f'{{where}} = {float(z[at])} is too large for float32; send "precision": "float64"',
        (kind, *at),
        "too_large_for_precision",
    )


def _from_probabilities(p: Tensor, dtype: torch.dtype, eps: float) -> Tensor:
    outside = (p < 0) | (p > 1)
    if bool(outside.any()):
        expected = "Expected probabilities in [0, 1]"
        raise element_error(outside, p, "probabilities", expected, "probability_out_of_range")
    if p.dim() == 1:
        p = torch.stack([1 - p, p], 1)
    else:
        _check_normalised(p.double().sum(dim=1), "probabilities", "sums to")
    # Clipped in the compute precision: eps (of the input's dtype) is a normal number there.
    return p.to(dtype).clamp(eps, 1 - eps).log()


def _from_log_probabilities(lp: Tensor, dtype: torch.dtype, eps: float) -> Tensor:
    positive = lp > 0
    if bool(positive.any()):
        expected = "Expected log-probabilities <= 0"
        kind = "log_probability_out_of_range"
        raise element_error(positive, lp, "log_probabilities", expected, kind)
    if lp.dim() == 1:
        lp = torch.stack([torch.log(-torch.expm1(lp.double())).to(lp.dtype), lp], 1)
    else:
        _check_normalised(
            lp.double().logsumexp(dim=1).exp(), "log_probabilities", "exponentiates to"
        )
    return lp.to(dtype).clamp(math.log(eps), math.log1p(-eps))


def probabilities_as_logits(logits: Tensor) -> bool:
    """Whether logits (N, C, ...) look like probabilities: at least `WARN_SAMPLES` samples,
    every value in [0, 1] and every sample summing to 1 within `SUM_TOLERANCE`."""
    samples = logits.numel() // max(1, logits.shape[1])
    # float() of the reductions: two torch calls a check, which a small batch feels
    if samples < WARN_SAMPLES or float(logits.min()) < 0 or float(logits.max()) > 1:
        return False
    return bool(((logits.double().sum(dim=1) - 1).abs() <= SUM_TOLERANCE).all())


def _check_normalised(totals: Tensor, name: str, verb: str) -> None:
    """``totals`` (N, d1, ..., dk): each sample's sum over the class axis (axis 1)."""
    off = (totals - 1).abs() > SUM_TOLERANCE
    if bool(off.any()):
        at = first_index(off)
        # the sample's elements: predictions[n][:][d1]...[dk], the class axis spanned
        classes = "".join(f"[{k}]" for k in at[1:])
        span = f"[:]{classes}" if classes else ""
        raise InputError(
            f"Expected each sample of {name} to sum to 1 over the classes (within "
            f"{SUM_TOLERANCE:g}), but the sample at {{where}}{span} {verb} "
            f"{float(totals[at]):.6g}",
            (name, at[0]),
            "not_normalised",
        )
