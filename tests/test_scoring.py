"""`score_batch` and `ScoringOptions`: the one scoring call, its checks and their words."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fairloss import InputError, ScoringOptions, fair_loss_terms, sample_scores, score_batch
from fairloss.metrics import superior_violations

GEN = torch.Generator().manual_seed(11)
LOGITS = torch.randn(200, 5, generator=GEN, dtype=torch.float64) * 3
LABELS = torch.randint(0, 5, (200,), generator=GEN)


def test_columns_are_those_of_the_loss_and_the_scoring_rules() -> None:
    options = ScoringOptions(
        precision="float64", class_weights=(1, 2, 1, 0.5, 1), label_smoothing=0.1
    )
    batch = score_batch(LOGITS, LABELS, options, violations=True)
    terms = fair_loss_terms(LOGITS, LABELS, weight=torch.tensor(options.class_weights).double(),
                            label_smoothing=0.1)  # fmt: skip
    scores = sample_scores(LOGITS, LABELS)
    for name in ("ce", "penalty", "total"):
        torch.testing.assert_close(batch.columns[name], getattr(terms, name), rtol=1e-12, atol=0)
    for name in ("predicted", "correct", "confidence", "log_loss", "brier", "pll", "pbs"):
        torch.testing.assert_close(batch.columns[name], getattr(scores, name), rtol=1e-12, atol=0)
    assert batch.sums.count == 200
    assert batch.sums.total == pytest.approx(math.fsum(terms.total.tolist()), rel=1e-12)
    assert batch.reduced["total"] == pytest.approx(float(terms.total.mean()), rel=1e-12)
    assert batch.violations is not None
    assert batch.violations["ce"] == superior_violations(terms.ce, scores.correct)


def test_without_the_rules_the_loss_and_its_sums_are_the_same() -> None:
    full = score_batch(LOGITS, LABELS, ScoringOptions(ignore_index=4))
    loss = score_batch(LOGITS, LABELS, ScoringOptions(ignore_index=4), rules=False)
    assert set(loss.columns) == {"ce", "penalty", "total", "counted"}
    for name in loss.columns:
        assert torch.equal(loss.columns[name], full.columns[name])
    assert (loss.sums.count, loss.sums.ce, loss.sums.penalty, loss.sums.total) == (
        full.sums.count,
        full.sums.ce,
        full.sums.penalty,
        full.sums.total,
    )
    assert loss.reduced == full.reduced


def test_numpy_and_torch_inputs_give_the_same_scores() -> None:
    a = score_batch(LOGITS.numpy(), LABELS.numpy())
    b = score_batch(LOGITS, LABELS)
    assert a.sums == b.sums


@pytest.mark.parametrize(
    "dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64], ids=str
)
@pytest.mark.parametrize("grad", [False, True], ids=["plain", "requires_grad"])
def test_a_value_that_is_not_finite_is_found_in_every_dtype(dtype: torch.dtype, grad: bool) -> None:
    """The finiteness check runs in numpy for the dtypes numpy has and in torch for bfloat16,
    and takes a tensor that requires grad; both say where the value is."""
    logits = torch.tensor([[1.0, 2.0], [3.0, -math.inf]], dtype=dtype).requires_grad_(grad)
    with pytest.raises(InputError) as caught:
        score_batch(logits, np.array([0, 1]))
    assert (caught.value.loc, str(caught.value)) == (
        ("logits", 1, 1),
        "Expected finite numbers, but logits[1][1] is -inf (the log of a probability of 0? send "
        "them as log_probabilities)",
    )
    finite = score_batch(logits.detach()[:1].requires_grad_(grad), np.array([1]))
    assert finite.columns["correct"].tolist() == [True]


BAD_BATCHES: list[tuple[str, Any, Any, ScoringOptions, tuple[Any, ...], str, str]] = [
    ("ints", [[1, 2]], [0], ScoringOptions(), ("logits",), "float_type", "floating point"),
    ("rank", 1.0, [0], ScoringOptions(), ("logits",), "bad_shape", "but got a single number"),
    ("empty", np.zeros((0, 3)), [], ScoringOptions(), ("logits",), "empty_batch", "one row"),
    ("one_class", [[1.0]], [0], ScoringOptions(), ("logits", 0), "too_few_classes", "2 classes"),
    (
        "nan",
        [[1.0, 2.0], [3.0, math.nan]],
        [0, 1],
        ScoringOptions(),
        ("logits", 1, 1),
        "not_finite",
        "Expected finite numbers, but logits[1][1] is nan",
    ),
    (
        "float32_range",
        np.array([[1e39, 0.0]]),
        [0],
        ScoringOptions(),
        ("logits", 0, 0),
        "too_large_for_precision",
        'logits[0][0] = 1e+39 is too large for float32; send "precision": "float64"',
    ),
    (
        "label_count",
        [[1.0, 2.0]],
        [0, 1],
        ScoringOptions(),
        ("labels",),
        "bad_length",
        "Expected 1 labels, one per row, but got 2",
    ),
    (
        "label_range",
        [[1.0, 2.0], [1.0, 2.0]],
        [0, 2],
        ScoringOptions(ignore_index=-1),
        ("labels", 1),
        "label_out_of_range",
        "Expected labels in [0, 2) or equal to ignore_index -1, but labels[1] is 2",
    ),
    (
        "weights",
        [[1.0, 2.0]],
        [0],
        ScoringOptions(class_weights=(1.0,)),
        ("class_weights",),
        "bad_length",
        "Expected 2 class_weights, one per class, but got 1",
    ),
    (
        "device",
        [[1.0, 2.0]],
        [0],
        ScoringOptions(device="tpu"),
        ("device",),
        "unknown_device",
        "Unknown device 'tpu'",
    ),
    (
        "overflow",
        [[3e38, -3e38]],
        [1],
        ScoringOptions(),
        ("logits", 0),
        "not_finite_result",
        "The cross-entropy of row 0 overflows float32",
    ),
]


@pytest.mark.parametrize(
    ("logits", "labels", "options", "loc", "kind", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_BATCHES],
)
def test_each_fault_is_one_input_error(
    logits: Any, labels: Any, options: ScoringOptions, loc: Any, kind: str, message: str
) -> None:
    with pytest.raises(InputError) as raised:
        score_batch(np.asarray(logits), np.asarray(labels, dtype=np.int64), options)
    assert (raised.value.loc, raised.value.kind) == (loc, kind)
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_an_error_located_under_a_prefix_says_where() -> None:
    error = InputError("Expected finite numbers, but {where} is nan", ("logits", 1, 0), "x")
    moved = error.within("candidates", 2)
    assert moved.loc == ("candidates", 2, "logits", 1, 0)
    assert str(moved) == "Expected finite numbers, but candidates[2].logits[1][0] is nan"


BAD_OPTIONS: list[tuple[dict[str, Any], str, str]] = [
    ({"smooth_max_beta": 0}, "greater_than", "a finite number larger than 0, but got 0"),
    ({"smooth_max_beta": math.inf}, "finite_number", "but got inf"),
    ({"scaling_factor": True}, "float_type", "but got a boolean"),
    ({"scaling_factor": "10"}, "float_type", "but got a string"),
    ({"label_smoothing": 1.5}, "less_than_equal", "a finite number in [0, 1], but got 1.5"),
    ({"label_smoothing": -0.1}, "greater_than_equal", "in [0, 1], but got -0.1"),
    ({"ignore_index": 1.0}, "int_type", "an integer in [-2**63, 2**63) (or null)"),
    ({"ignore_index": 2**63}, "less_than", "but got 9223372036854775808"),
    ({"reduction": "none"}, "literal_error", "to be 'mean' or 'sum', but got 'none'"),
    ({"precision": "float16"}, "literal_error", "'float32' or 'float64', but got 'float16'"),
    ({"device": 0}, "string_type", "a device name, but got the number 0"),
    ({"ece_bins": 0}, "greater_than_equal", "an integer in [1, 1000], but got 0"),
    ({"ece_bins": 1001}, "less_than_equal", "but got 1001"),
    ({"class_weights": "1,2"}, "list_type", "an array of numbers or null, but got a string"),
    ({"class_weights": [1, -1]}, "greater_than_equal", "`class_weights[1]` to be a finite"),
]


@pytest.mark.parametrize(("given", "kind", "message"), BAD_OPTIONS)
def test_each_bad_option_is_named(given: dict[str, Any], kind: str, message: str) -> None:
    with pytest.raises(InputError) as raised:
        ScoringOptions(**given)
    (name,) = given
    assert raised.value.loc[0] == name
    assert raised.value.kind == kind
    assert message in str(raised.value)
    assert str(raised.value).startswith(f"Expected `{name}")


def test_options_normalise_what_they_take() -> None:
    options = ScoringOptions(smooth_max_beta=5, class_weights=[1, 2])
    assert options.smooth_max_beta == 5.0
    assert isinstance(options.smooth_max_beta, float)
    assert options.class_weights == (1.0, 2.0)
    with pytest.raises(TypeError):
        ScoringOptions(temperature=2)  # type: ignore[call-arg]


class _TorchCalls(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Counts the torch operations dispatched while it is active, views and conversions too."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.count += 1
        return func(*args, **(kwargs or {}))


def test_a_small_batch_is_scored_in_one_pass_of_few_torch_calls() -> None:
    """Each torch call costs a small batch microseconds whatever its size, so the one pass of
    `score_batch` (one block: one log-softmax and one max for the loss and the rules, the sums
    and the bins from one matrix) must stay short: 85 calls for 64 x 10 with torch 2.13, two of
    them the check for logits that look like probabilities."""
    logits = np.random.default_rng(0).normal(size=(64, 10))
    labels = np.arange(64) % 10
    score_batch(logits, labels)
    with _TorchCalls() as calls:
        score_batch(logits, labels)
    assert calls.count <= 85
