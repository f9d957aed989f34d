"""One scoring call for every surface: a batch in; every per-sample column, the mergeable sums
and, when asked, the superior violations out.

The service's codecs (JSON, Open Inference Protocol), the client's merging and the command line
all go through `score_batch`. It checks the arrays (the one check, raising `InputError`), then
scores the rows in blocks (`fairloss.blocks`), where one log-softmax feeds the cross-entropy,
the scoring rules and the calibration bins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fairloss.blocks import score_rows
from fairloss.bootstrap import (
    Bootstrap,
)
from fairloss.checks import (
    ArrayLike,
    Kind,
    check_finite_losses,
    checked_labels,
    checked_sample_weight,
    class_weights_tensor,
)
from fairloss.classes import class_sums, classwise_ece
from fairloss.devices import resolve_device
from fairloss.functional import counted_labels, flatten
from fairloss.metrics import CRITERIA, Violations
from fairloss.metrics import superior_violations as count_violations
from fairloss.options import ScoringOptions
from fairloss.predictions import (
    PROBABILITIES_AS_LOGITS,
    checked_predictions,
    probabilities_as_logits,
)
from fairloss.replicates import with_groups, with_replicates
from fairloss.slices import Column, as_columns, checked_counts
from fairloss.sums import (
    ScoreSums,
    counted_items,
    counted_weight,
    scaled,
    sums_of,
    weight_scale,
)

DTYPES = {"float32": torch.float32, "float64": torch.float64}
TERMS = ("ce", "penalty", "total")
SCORES = ("confidence", "log_loss", "brier", "pll", "pbs")
DEFAULT_OPTIONS = ScoringOptions()


@dataclass(frozen=True)
class BatchScores:
    """The scores of one batch of ``n`` samples and C classes, computed on ``device``.

    ``shape`` is the labels' shape ((n,), or (N, d1, ..., dk) with n = N * d1 * ... * dk);
    ``weighted`` says whether sample weights were given. ``columns`` holds (n,) tensors on
    ``device``, in the row-major order of ``shape``: ``ce``, ``penalty``, ``total`` (nats, the
    compute dtype), ``predicted`` (int64), ``correct`` and ``counted`` (bool; an ignored sample
    is neither correct nor counted), and the scoring rules ``confidence``, ``log_loss``,
    ``brier``, ``pll``, ``pbs``. ``sums`` merge across batches; ``violations`` is keyed by
    criterion (``ce``, ``total``, ``brier``, ``pll``, ``pbs``) when asked for; ``warnings``
    say what about the input looks like a mistake (`fairloss.predictions.PROBABILITIES_AS_LOGITS`).
    """

    n: int
    num_classes: int
    device: str
    options: ScoringOptions
    columns: dict[str, Tensor]
    sums: ScoreSums
    violations: dict[str, Violations] | None = None
    shape: tuple[int, ...] = ()
    weighted: bool = False
    sample_weight: Tensor | None = None
    groups: dict[str, Column] | None = None
    shares: dict[str, np.ndarray[Any, Any]] | None = None
    warnings: tuple[str, ...] = ()

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
        return {k: sums.unscaled(k) for k in TERMS}
    return {k: sums.mean(k) for k in TERMS}


def metrics(sums: ScoreSums) -> dict[str, float]:
    """Accuracy, the mean scoring rules and the ECE of ``sums`` (NaN where nothing counts),
    and with per-class sums the class-wise ECE."""
    means = {k: sums.mean(k) for k in ("log_loss", "brier", "pll", "pbs")}
    found = {"accuracy": sums.accuracy, **means, "ece": sums.ece}
    if sums.classes is not None:
        found["classwise_ece"] = classwise_ece(sums.classes)
    return found


@torch.inference_mode()
def score_batch(
    predictions: ArrayLike,
    labels: ArrayLike,
    options: ScoringOptions | None = None,
    *,
    kind: Kind = "logits",
    sample_weight: ArrayLike | None = None,
    default_device: str = "cpu",
    violations: bool = False,
    rules: bool = True,
    bootstrap: Bootstrap | None = None,
    row_offset: int = 0,
    per_class: bool = False,
    groups: Mapping[str, Any] | None = None,
    group_counts: Mapping[str, Any] | None = None,
) -> BatchScores:
    """Score one batch: FairLoss, the paper's scoring rules, sums and (optionally) violations.

    Args:
        predictions: (N, C) or (N, C, d1, ..., dk) floating point, N >= 1, C >= 2, finite:
            ``logits`` (within float32's range when ``options.precision`` is float32),
            ``probabilities`` (in [0, 1], each sample summing to 1 within 1e-3; scored as
            ``log(clip(p, eps, 1))``) or ``log_probabilities`` (<= 0, each sample's
            logsumexp within 1e-3 of 0), as ``kind`` says. Computed in ``options.precision``.
        labels: (N) or (N, d1, ..., dk) integers in ``[0, C)`` or equal to
            ``options.ignore_index``. Each position is one sample; the columns list them
            flattened, in the row-major order of this shape (``BatchScores.shape``).
        options: the scoring options (defaults: `ScoringOptions()`).
        kind: what ``predictions`` hold.
        sample_weight: the labels' shape, finite and >= 0: every sum, mean, accuracy and ECE
            bin is weighted (sum of w * x over sum of w, as scikit-learn's ``sample_weight``).
        default_device: where to compute when ``options.device`` is None.
        violations: also count superior violations (O(N log N) per criterion).
        rules: also compute the scoring rules; without them (``rules=False``) the columns are
            ``ce``, ``penalty``, ``total`` and ``counted`` only, and the sums hold the count and
            those three (about half the work, for callers that need the loss alone).
        bootstrap: also keep per-replicate sums (``sums.replicates``) of a paired Poisson
            bootstrap over the items (the first axis); see `fairloss.bootstrap`.
        row_offset: the index, in the whole dataset, of this batch's first item, so that a
            dataset split into batches gets the replicates of one batch for the whole.
        per_class: also keep the per-class sums (``sums.classes``, `fairloss.classes`):
            support, precision, recall, F1, per-class losses, class-wise calibration and the
            confusion cells.
        groups: ``{column: keys}``, 1 to 8 columns of one key per item (the labels' first
            axis), all strings or all integers, or those checked (`fairloss.slices.Column`):
            also keep each key's sums (``sums.groups``), with a bootstrap each key's
            replicates too (`fairloss.slices`).
        group_counts: with ``groups`` and a bootstrap, the whole dataset's item count of each
            key (``{column: {"keys": [...], "counts": [...]}}``) when the batch is a chunk of
            it; None: this batch's own counts (`fairloss.slices.checked_counts`).

    Runs in ``torch.inference_mode`` (a tenth faster on small batches): the columns are
    inference tensors, which autograd does not track and which cannot be changed in place
    outside inference mode.

    Raises:
        InputError: at ``logits`` (or the ``kind`` given), ``labels``, ``sample_weight``,
            ``class_weights``, ``device``, ``groups`` or ``group_counts``, for the first fault
            found; also when a loss overflows the compute precision.
    """
    options = options or DEFAULT_OPTIONS
    if (bootstrap is not None or per_class or groups is not None) and not rules:
        raise ValueError("Expected rules=True with a bootstrap, per_class or groups")
    device = resolve_device(options.device or default_device)
    dtype = DTYPES[options.precision]
    z = checked_predictions(predictions, kind, options.precision).to(device=device, dtype=dtype)
    warned = (PROBABILITIES_AS_LOGITS,) if kind == "logits" and probabilities_as_logits(z) else ()
    y = checked_labels(labels, tuple(z.shape), options.ignore_index).to(device)
    shape = tuple(y.shape)
    columns_of, counts = None, None
    if groups is not None:
        columns_of, counts = checked_counts(group_counts, as_columns(groups, shape[0]))
    w = None
    if sample_weight is not None:
        w = checked_sample_weight(sample_weight, shape).to(device=device, dtype=torch.float64)
        w = w.reshape(-1)
    # Weights far from 1 are summed in units of 2**scale (exact), so no sum leaves float64.
    scale = 0 if w is None else weight_scale(w)
    given, w = w, None if w is None else scaled(w, scale)
    z, y = flatten(z, y)
    weight = class_weights_tensor(options.class_weights, z.shape[1], z)
    # Without an ignore_index every sample counts: no masks to apply (counted is None).
    counted, target = (
        (None, y.long())
        if options.ignore_index is None
        else counted_labels(y, options.ignore_index)
    )
    scored = score_rows(z, target, counted, options, weight=weight, sample_weight=w, rules=rules)
    terms = scored.terms
    check_finite_losses(terms, options.precision, shape)
    batch = partial(
        BatchScores, z.shape[0], z.shape[1], str(z.device), options, shape=shape, warnings=warned
    )
    count = int(terms.counted.sum())
    items = count
    if w is not None or (len(shape) > 1 and count < z.shape[0]):
        items = counted_items(counted_weight(terms.counted, w), shape[0])
    elif len(shape) > 1:
        items = shape[0]
    if scored.scores is None:
        columns = {**dict(zip(TERMS, terms[:3], strict=True)), "counted": terms.counted}
        weight_sum, *totals = scored.sums.tolist()
        sums = replace(ScoreSums(count, items, weight_sum, 0, *totals), scale=scale)
        return batch(columns, sums, weighted=w is not None)
    scores = scored.scores
    rule_columns = {name: getattr(scores, name) for name in SCORES[1:]}
    correct = scores.correct
    if counted is not None:  # an ignored sample scores 0 under every rule, as under the loss
        correct = correct & counted
        rule_columns = {k: torch.where(counted, v, 0) for k, v in rule_columns.items()}
    columns = {
        **dict(zip(TERMS, terms[:3], strict=True)),
        "predicted": scores.predicted,
        "correct": correct,
        "counted": terms.counted,
        "confidence": scores.confidence,
        **rule_columns,
    }
    found = None
    if violations:
        found = {
            k: count_violations(columns[k], correct, terms.counted, sample_weight=given)
            for k in CRITERIA
        }
    sums = replace(sums_of(count, scored.sums, options.ece_bins, items), scale=scale)
    if per_class:
        weight = counted_weight(terms.counted, w)
        sums = replace(sums, classes=class_sums(z, target, weight, columns, options.ece_bins))
    result = batch(columns, sums, found, weighted=w is not None, sample_weight=w)
    if columns_of is not None and counts is not None:
        result = with_groups(result, columns_of, counts)
    if bootstrap is None:
        return result
    (result,) = with_replicates([result], bootstrap, row_offset)
    return result
