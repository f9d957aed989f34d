"""The functional core against the reference cases and an independent float64 reference."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from fairloss.functional import compute_dtype, fair_loss, fair_loss_terms

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "fairloss_cases.json").read_text()
)["cases"]
CASE_IDS = [case["name"] for case in CASES]
TERMS = ("ce", "penalty", "total")
# 0.1.1's float32 output is taken as exact to this; beyond it, the seed lost precision itself.
SEED_TOLERANCE = 1e-5


def case_outputs(case: dict[str, Any], dtype: torch.dtype) -> dict[str, Tensor]:
    """Per-sample terms and both reductions of a reference case, computed from ``dtype`` logits."""
    weight = case["class_weights"]
    options: dict[str, Any] = {
        "smooth_max_beta": case["smooth_max_beta"],
        "scaling_factor": case["scaling_factor"],
        "weight": None if weight is None else torch.tensor(weight, dtype=dtype),
        "label_smoothing": case["label_smoothing"],
    }
    logits = torch.tensor(case["logits"], dtype=dtype)
    target = torch.tensor(case["labels"])
    terms = fair_loss_terms(logits, target, **options)
    return {
        "ce": terms.ce,
        "penalty": terms.penalty,
        "total": terms.total,
        "mean": fair_loss(logits, target, reduction="mean", **options),
        "sum": fair_loss(logits, target, reduction="sum", **options),
    }


def as_float64(values: float | list[float]) -> Tensor:
    return torch.tensor(values, dtype=torch.float64).reshape(-1)


def relative_error(ours: Tensor, expected: Tensor) -> Tensor:
    return (ours.double() - expected).abs() / expected.abs().clamp(min=1.0)


def seed_is_imprecise(case: dict[str, Any], key: str) -> Tensor:
    seed = as_float64(case["seed_float32"][key])
    return relative_error(seed, as_float64(case["exact_float64"][key])) > SEED_TOLERANCE


KEYS = (*TERMS, "mean", "sum")
IMPRECISE_SEED_CASES = [
    case for case in CASES if any(bool(seed_is_imprecise(case, key).any()) for key in KEYS)
]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_reference_case_in_float32_matches_exact_float64(case: dict[str, Any]) -> None:
    outputs = case_outputs(case, torch.float32)
    for key in KEYS:
        assert outputs[key].dtype == torch.float32
        error = relative_error(outputs[key], as_float64(case["exact_float64"][key]))
        assert float(error.max()) < 1e-6, key


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_reference_case_in_float64_matches_exact_float64(case: dict[str, Any]) -> None:
    outputs = case_outputs(case, torch.float64)
    for key in KEYS:
        assert outputs[key].dtype == torch.float64
        error = relative_error(outputs[key], as_float64(case["exact_float64"][key]))
        assert float(error.max()) < 1e-12, key


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_reference_case_in_float32_matches_seed_where_seed_is_precise(
    case: dict[str, Any],
) -> None:
    outputs = case_outputs(case, torch.float32)
    for key in KEYS:
        precise = ~seed_is_imprecise(case, key)
        error = relative_error(outputs[key], as_float64(case["seed_float32"][key]))
        assert max(error[precise].tolist(), default=0.0) < SEED_TOLERANCE, key


@pytest.mark.parametrize(
    "case", IMPRECISE_SEED_CASES, ids=[c["name"] for c in IMPRECISE_SEED_CASES]
)
def test_reference_case_is_closer_to_exact_than_seed_where_seed_lost_precision(
    case: dict[str, Any],
) -> None:
    outputs = case_outputs(case, torch.float32)
    for key in KEYS:
        imprecise = seed_is_imprecise(case, key)
        exact = as_float64(case["exact_float64"][key])
        ours = (outputs[key].double() - exact).abs()[imprecise]
        seed = (as_float64(case["seed_float32"][key]) - exact).abs()[imprecise]
        assert bool((ours < seed).all()), key


def test_reference_seed_loses_precision_on_confident_and_large_logits() -> None:
    names = {case["name"] for case in IMPRECISE_SEED_CASES}
    assert {"confident_correct", "large_logits"} <= names
    confident = next(case for case in CASES if case["name"] == "confident_correct")
    assert confident["exact_float64"]["penalty"] == [0.0, 0.0]
    assert min(confident["seed_float32"]["penalty"]) > 5e-4


# --- An independent float64 reference, from the formula in API.md ---------------------------


def log_sum_exp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(math.fsum(math.exp(v - top) for v in values))


def reference_terms(
    logits: Tensor,
    labels: Tensor,
    *,
    smooth_max_beta: float = 1000.0,
    scaling_factor: float = 1000.0,
    weight: Tensor | None = None,
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample (ce, penalty, counted), one row at a time in float64."""
    rows = logits.double().tolist()
    num_classes = len(rows[0])
    w = [1.0] * num_classes if weight is None else weight.double().tolist()
    ce = np.zeros(len(rows))
    penalty = np.zeros(len(rows))
    counted = np.zeros(len(rows), dtype=bool)
    for i, (row, label) in enumerate(zip(rows, labels.tolist(), strict=True)):
        if label == ignore_index:
            continue
        counted[i] = True
        log_norm = log_sum_exp(row)
        nll = [log_norm - z for z in row]
        smooth = math.fsum(w[c] * nll[c] for c in range(num_classes)) / num_classes
        ce[i] = (1 - label_smoothing) * w[label] * nll[label] + label_smoothing * smooth
        shifted = [smooth_max_beta * (z - row[label]) for z in row]
        gap = log_sum_exp(shifted) / smooth_max_beta
        penalty[i] = math.tanh(scaling_factor * gap / 2) / num_classes
    return ce, penalty, counted


def reference_reduce(values: np.ndarray, counted: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "none":
        return values
    total = math.fsum(values[counted])
    return np.asarray(total if reduction == "sum" else total / counted.sum())


def batch_with_labels(ignore_index: int | None, seed: int = 0) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    num_samples, num_classes = 24, 5
    logits = (torch.randn(num_samples, num_classes, generator=generator) * 3).float()
    target = torch.randint(0, num_classes, (num_samples,), generator=generator)
    if ignore_index is not None:
        target[::4] = ignore_index
    return logits, target


WEIGHT = torch.tensor([2.0, 0.5, 1.0, 3.0, 0.0])
OPTIONS: list[dict[str, Any]] = [
    {"weight": weight, "label_smoothing": smoothing, "ignore_index": ignore_index}
    for weight in (None, WEIGHT)
    for smoothing in (0.0, 0.2)
    for ignore_index in (None, -1, -100, 2)
] + [
    {"smooth_max_beta": 3.0, "scaling_factor": 5.0},
    {"smooth_max_beta": 0.5, "scaling_factor": 1000.0, "weight": WEIGHT, "ignore_index": -1},
    {"smooth_max_beta": 1000.0, "scaling_factor": 2.0, "label_smoothing": 1.0},
]


def options_id(options: dict[str, Any]) -> str:
    return "-".join(
        f"{key}={'w' if isinstance(value, Tensor) else value}" for key, value in options.items()
    )


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize(
    ("dtype", "tolerance"), [(torch.float32, 1e-5), (torch.float64, 1e-12)], ids=["f32", "f64"]
)
@pytest.mark.parametrize("options", OPTIONS, ids=[options_id(o) for o in OPTIONS])
def test_matches_independent_float64_reference(
    options: dict[str, Any], dtype: torch.dtype, tolerance: float, reduction: Any
) -> None:
    logits, target = batch_with_labels(options.get("ignore_index"))
    ce, penalty, counted = reference_terms(logits, target, **options)
    terms = fair_loss_terms(logits.to(dtype), target, **options)
    assert terms.counted.tolist() == counted.tolist()
    for ours, expected in ((terms.ce, ce), (terms.penalty, penalty)):
        np.testing.assert_allclose(ours.double().numpy(), expected, rtol=tolerance, atol=tolerance)
    loss = fair_loss(logits.to(dtype), target, reduction=reduction, **options)
    assert loss.dtype == dtype
    expected_loss = reference_reduce(ce + penalty, counted, reduction)
    np.testing.assert_allclose(loss.double().numpy(), expected_loss, rtol=tolerance, atol=tolerance)


def test_mean_divides_by_counted_samples_not_weight_sum() -> None:
    logits, target = batch_with_labels(-1)
    weight = torch.full((5,), 4.0)
    total = fair_loss(logits, target, weight=weight, ignore_index=-1, reduction="sum")
    mean = fair_loss(logits, target, weight=weight, ignore_index=-1, reduction="mean")
    assert int((target != -1).sum()) == 18
    torch.testing.assert_close(mean, total / 18)


def test_ignored_samples_score_zero_in_every_term() -> None:
    logits, target = batch_with_labels(-100)
    terms = fair_loss_terms(logits, target, ignore_index=-100, label_smoothing=0.3)
    ignored = target == -100
    assert terms.counted.tolist() == (~ignored).tolist()
    for values in (terms.ce, terms.penalty, terms.total):
        assert values[ignored].tolist() == [0.0] * int(ignored.sum())
    assert bool((terms.total[~ignored] > 0).all())


def test_ignore_index_equal_to_a_class_ignores_that_class() -> None:
    logits, target = batch_with_labels(None)
    terms = fair_loss_terms(logits, target, ignore_index=2)
    assert terms.counted.tolist() == (target != 2).tolist()


def test_all_ignored_batch_has_nan_mean_and_zero_sum() -> None:
    logits = torch.randn(3, 4)
    target = torch.full((3,), -1)
    assert math.isnan(float(fair_loss(logits, target, ignore_index=-1)))
    assert float(fair_loss(logits, target, ignore_index=-1, reduction="sum")) == 0.0


@pytest.mark.parametrize("ignore_index", [-1, -100])
def test_negative_ignore_index_is_ignored(ignore_index: int) -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 5.0, 1.0], [1.0, 0.0, 3.0]])
    target = torch.tensor([0, ignore_index, 2])
    loss = fair_loss(logits, target, ignore_index=ignore_index, reduction="none")
    kept = fair_loss(logits[[0, 2]], target[[0, 2]], reduction="none")
    assert loss[1].item() == 0.0
    torch.testing.assert_close(loss[[0, 2]], kept)


# --- Gradients -------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize(
    "options",
    [
        {"smooth_max_beta": 4.0, "scaling_factor": 3.0},
        {"smooth_max_beta": 2.0, "scaling_factor": 5.0, "weight": WEIGHT.double() + 0.5},
        {"smooth_max_beta": 3.0, "scaling_factor": 2.0, "label_smoothing": 0.25},
        {"smooth_max_beta": 5.0, "scaling_factor": 4.0, "ignore_index": -1, "weight": WEIGHT},
    ],
    ids=["plain", "weight", "smoothing", "ignore_index"],
)
def test_gradcheck_in_float64(options: dict[str, Any], reduction: Any) -> None:
    logits, target = batch_with_labels(options.get("ignore_index"), seed=1)
    logits = logits[:8].double().requires_grad_()
    target = target[:8]
    if isinstance(options.get("weight"), Tensor):
        options = {**options, "weight": options["weight"].double()}

    def loss(z: Tensor) -> Tensor:
        return fair_loss(z, target, reduction=reduction, **options)

    assert torch.autograd.gradcheck(loss, (logits,))


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_gradcheck_with_default_options_on_separated_logits(reduction: Any) -> None:
    logits = torch.tensor(
        [[3.0, 0.0, -1.0], [0.0, 2.0, 1.0], [1.0, 0.5, -2.0], [-1.0, 0.0, 0.4]],
        dtype=torch.float64,
        requires_grad=True,
    )
    target = torch.tensor([0, 1, 1, 0])

    def loss(z: Tensor) -> Tensor:
        return fair_loss(z, target, reduction=reduction)

    assert torch.autograd.gradcheck(loss, (logits,))


def test_ignored_samples_get_zero_gradient() -> None:
    logits = torch.randn(4, 3, requires_grad=True)
    target = torch.tensor([0, -1, 2, -1])
    (gradient,) = torch.autograd.grad(
        fair_loss(logits, target, ignore_index=-1, smooth_max_beta=2.0), logits
    )
    assert gradient[[1, 3]].abs().sum().item() == 0.0
    assert gradient[[0, 2]].abs().sum().item() > 0.0


# --- Where pytorch-fairloss 0.1.1 fails --------------------------------------------------------


def test_float64_logits_compute_in_float64() -> None:
    logits = torch.tensor([[0.34, 0.33, 0.33], [0.49, 0.51, 0.0]], dtype=torch.float64)
    loss = fair_loss(logits, torch.tensor([0, 0]), reduction="none")
    assert loss.dtype == torch.float64
    ce, penalty, _ = reference_terms(logits, torch.tensor([0, 0]))
    np.testing.assert_allclose(loss.numpy(), ce + penalty, rtol=1e-13)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_logits_compute_in_float32(dtype: torch.dtype) -> None:
    logits = torch.tensor([[100.0, 98.0, -50.0], [96.0, 104.0, 0.0], [64.0, 64.0, 60.0]])
    target = torch.tensor([0, 0, 1])
    loss = fair_loss(logits.to(dtype), target, reduction="none")
    assert loss.dtype == torch.float32
    assert bool(loss.isfinite().all())
    ce, penalty, _ = reference_terms(logits.to(dtype), target)
    np.testing.assert_allclose(loss.double().numpy(), ce + penalty, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (torch.float16, torch.float32),
        (torch.bfloat16, torch.float32),
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
    ],
)
def test_compute_dtype_is_never_below_float32(dtype: torch.dtype, expected: torch.dtype) -> None:
    assert compute_dtype(dtype) == expected


@pytest.mark.parametrize("scale", [1.0, 10.0, 100.0, 1000.0])
def test_float32_penalty_is_within_1e_6_of_float64(scale: float) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = (torch.randn(10_000, 10, generator=generator, dtype=torch.float64) * scale).float()
    target = torch.randint(0, 10, (10_000,), generator=generator)
    single = fair_loss_terms(logits, target).penalty
    double = fair_loss_terms(logits.double(), target).penalty
    assert float((single.double() - double).abs().max()) < 1e-6


# --- Argument and tensor checks --------------------------------------------------------------

LOGITS = torch.zeros(3, 4)
TARGET = torch.tensor([0, 1, 3])

BAD_CALLS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("1d_logits", {"logits": torch.zeros(4)}, ValueError, r"shape \(N, C\).* 1 dimension"),
    ("3d_logits_1d_target", {"logits": torch.zeros(3, 4, 2)}, ValueError,
     r"Expected `target` of shape \(3, 2\) to match `logits` \(3, 4, 2\), but got \(3,\)"),
    ("integer_logits", {"logits": torch.zeros(3, 4, dtype=torch.long)}, TypeError, "floating"),
    ("one_class", {"logits": torch.zeros(3, 1), "target": torch.zeros(3, dtype=torch.long)},
     ValueError, "at least 2 classes, but got C = 1"),
    ("short_target", {"target": torch.tensor([0, 1])}, ValueError,
     r"`target` of shape \(3,\).*got \(2,\)"),
    ("2d_target", {"target": torch.zeros(3, 1, dtype=torch.long)}, ValueError, "`target`"),
    ("float_labels", {"target": torch.tensor([0.0, 1.0, 3.0])}, TypeError, "integer class"),
    ("bool_labels", {"target": torch.tensor([True, False, True])}, TypeError, "integer class"),
    ("label_too_large", {"target": torch.tensor([0, 4, 1])}, ValueError,
     r"in \[0, 4\), but got 4 at index 1"),
    ("negative_label", {"target": torch.tensor([0, 1, -1])}, ValueError,
     r"in \[0, 4\), but got -1 at index 2"),
    ("label_not_ignore_index", {"target": torch.tensor([-1, 1, 2]), "ignore_index": -100},
     ValueError, "or equal to ignore_index -100, but got -1 at index 0"),
    ("zero_beta", {"smooth_max_beta": 0.0}, ValueError, "`smooth_max_beta`.*larger than 0"),
    ("negative_beta", {"smooth_max_beta": -1.0}, ValueError, "`smooth_max_beta`"),
    ("infinite_beta", {"smooth_max_beta": math.inf}, ValueError, "`smooth_max_beta`"),
    ("nan_beta", {"smooth_max_beta": math.nan}, ValueError, "`smooth_max_beta`"),
    ("zero_scaling", {"scaling_factor": 0}, ValueError, "`scaling_factor`.*larger than 0"),
    ("negative_scaling", {"scaling_factor": -2.0}, ValueError, "`scaling_factor`"),
    ("nan_scaling", {"scaling_factor": math.nan}, ValueError, "`scaling_factor`"),
    ("negative_smoothing", {"label_smoothing": -0.1}, ValueError, r"`label_smoothing` in \[0, 1\]"),
    ("large_smoothing", {"label_smoothing": 1.5}, ValueError, "`label_smoothing`"),
    ("unknown_reduction", {"reduction": "avg"}, ValueError, "`reduction`.*'avg'"),
    ("weight_too_long", {"weight": torch.ones(5)}, ValueError, r"`weight` of shape \(4,\)"),
    ("weight_2d", {"weight": torch.ones(1, 4)}, ValueError, r"`weight` of shape \(4,\)"),
    ("negative_weight", {"weight": torch.tensor([1.0, -1.0, 1.0, 1.0])}, ValueError,
     "non-negative"),
    ("nan_weight", {"weight": torch.tensor([1.0, math.nan, 1.0, 1.0])}, ValueError,
     "non-negative"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [call[1:] for call in BAD_CALLS],
    ids=[call[0] for call in BAD_CALLS],
)
def test_fair_loss_rejects_bad_input(
    changes: dict[str, Any], error: type[Exception], message: str
) -> None:
    arguments: dict[str, Any] = {"logits": LOGITS, "target": TARGET, **changes}
    with pytest.raises(error, match=message):
        fair_loss(**arguments)


def test_valid_call_with_the_bad_input_fixtures_succeeds() -> None:
    assert fair_loss(LOGITS, TARGET).isfinite()
