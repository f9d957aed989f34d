"""The `FairLoss` module: a drop-in for pytorch-fairloss 0.1.1 over the functional core."""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from fairloss import FairLoss, fair_loss, sample_scores, superior_violations

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "fairloss_cases.json").read_text()
)["cases"]
WEIGHT = torch.tensor([2.0, 0.5, 1.0, 3.0])


def batch(seed: int = 0, ignore_index: int | None = None) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(16, 4, generator=generator) * 2
    target = torch.randint(0, 4, (16,), generator=generator)
    if ignore_index is not None:
        target[::3] = ignore_index
    return logits, target


CROSS_ENTROPY_OPTIONS: list[dict[str, Any]] = [
    {},
    {"weight": WEIGHT},
    {"label_smoothing": 0.1},
    {"ignore_index": -1},
    {"ignore_index": 3},
    {"weight": WEIGHT, "label_smoothing": 0.3, "ignore_index": -100},
]
LOSS_OPTIONS: list[dict[str, Any]] = [
    {},
    {"smooth_max_beta": 5.0, "scaling_factor": 10.0},
]


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("loss_options", LOSS_OPTIONS, ids=["default", "soft"])
@pytest.mark.parametrize(
    "ce_options", CROSS_ENTROPY_OPTIONS, ids=["plain", "w", "ls", "ii-1", "ii3", "all"]
)
def test_module_equals_functional(
    ce_options: dict[str, Any], loss_options: dict[str, Any], reduction: Any
) -> None:
    logits, target = batch(ignore_index=ce_options.get("ignore_index"))
    cross_entropy = nn.CrossEntropyLoss(reduction="none", **ce_options)
    module = FairLoss(cross_entropy, reduction=reduction, **loss_options)
    expected = fair_loss(logits, target, reduction=reduction, **ce_options, **loss_options)
    assert torch.equal(module(logits, target), expected)


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_module_reproduces_exact_reference_mean(case: dict[str, Any]) -> None:
    weight = case["class_weights"]
    cross_entropy = nn.CrossEntropyLoss(
        weight=None if weight is None else torch.tensor(weight),
        reduction="none",
        label_smoothing=case["label_smoothing"],
    )
    module = FairLoss(cross_entropy, case["smooth_max_beta"], case["scaling_factor"])
    loss = module(torch.tensor(case["logits"]), torch.tensor(case["labels"]))
    expected = case["exact_float64"]["mean"]
    assert abs(loss.item() - expected) < 1e-6 * max(1.0, abs(expected))


def test_readme_example() -> None:
    loss = FairLoss(reduction="none")
    logits = torch.tensor([[0.34, 0.33, 0.33], [0.49, 0.51, 0.0]])
    values = loss(logits, torch.tensor([0, 0])).round(decimals=4)
    assert torch.equal(values, torch.tensor([1.0920, 1.3014]))


def test_constructor_signature_is_that_of_pytorch_fairloss_0_1_1() -> None:
    parameters = list(inspect.signature(FairLoss.__init__).parameters.values())[1:]
    assert [(p.name, p.default, p.kind) for p in parameters] == [
        ("cross_entropy", None, inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("smooth_max_beta", 1000.0, inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("scaling_factor", 1000.0, inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("reduction", "mean", inspect.Parameter.POSITIONAL_OR_KEYWORD),
    ]
    forward = list(inspect.signature(FairLoss.forward).parameters)
    assert forward == ["self", "output", "target"]


def test_positional_arguments_are_taken_in_0_1_1_order() -> None:
    cross_entropy = nn.CrossEntropyLoss(reduction="none")
    module = FairLoss(cross_entropy, 5.0, 7.0, "sum")
    assert module.cross_entropy is cross_entropy
    assert (module.smooth_max_beta, module.scaling_factor, module.reduction) == (5.0, 7.0, "sum")


def test_default_cross_entropy_is_plain_with_reduction_none() -> None:
    module = FairLoss()
    assert isinstance(module.cross_entropy, nn.CrossEntropyLoss)
    assert module.cross_entropy.reduction == "none"
    assert module.cross_entropy.weight is None
    assert module.cross_entropy.label_smoothing == 0.0
    assert module.cross_entropy.ignore_index == -100
    assert (module.smooth_max_beta, module.scaling_factor, module.reduction) == (
        1000.0,
        1000.0,
        "mean",
    )


@pytest.mark.parametrize(
    "cross_entropy",
    [nn.NLLLoss(reduction="none"), nn.MSELoss(reduction="none"), nn.functional.cross_entropy],
    ids=["NLLLoss", "MSELoss", "function"],
)
def test_rejects_cross_entropy_that_is_not_cross_entropy_loss(cross_entropy: Any) -> None:
    with pytest.raises(TypeError, match=r"Expected `cross_entropy` to be an nn\.CrossEntropyLoss"):
        FairLoss(cross_entropy)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_rejects_cross_entropy_that_reduces(reduction: str) -> None:
    with pytest.raises(ValueError, match=f'reduction="none".*got reduction="{reduction}"'):
        FairLoss(nn.CrossEntropyLoss(reduction=reduction))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"smooth_max_beta": 0.0}, "`smooth_max_beta`"),
        ({"smooth_max_beta": -3.0}, "`smooth_max_beta`"),
        ({"scaling_factor": math.inf}, "`scaling_factor`"),
        ({"reduction": "batchmean"}, "`reduction`"),
        (
            {"cross_entropy": nn.CrossEntropyLoss(reduction="none", label_smoothing=1.5)},
            "`label_smoothing`",
        ),
    ],
    ids=["zero_beta", "negative_beta", "infinite_scaling", "reduction", "smoothing"],
)
def test_rejects_bad_options_at_construction(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FairLoss(**arguments)


def test_module_checks_tensors_per_call() -> None:
    module = FairLoss()
    with pytest.raises(ValueError, match="but got 4 at index 0"):
        module(torch.zeros(2, 4), torch.tensor([4, 0]))
    with pytest.raises(TypeError, match="integer class labels"):
        module(torch.zeros(2, 4), torch.tensor([1.0, 0.0]))


def test_module_takes_weight_smoothing_and_ignore_index_from_cross_entropy() -> None:
    logits, target = batch(ignore_index=-1)
    options: dict[str, Any] = {"weight": WEIGHT, "label_smoothing": 0.2, "ignore_index": -1}
    module = FairLoss(nn.CrossEntropyLoss(reduction="none", **options), reduction="none")
    loss = module(logits, target)
    assert loss[target == -1].tolist() == [0.0] * int((target == -1).sum())
    assert torch.equal(loss, fair_loss(logits, target, reduction="none", **options))
    plain = fair_loss(logits, target, reduction="none", ignore_index=-1)
    assert not torch.allclose(loss, plain)


def test_default_module_ignores_label_minus_100_like_cross_entropy() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    loss = FairLoss()(logits, torch.tensor([0, -100]))
    expected = FairLoss(reduction="none")(logits[:1], torch.tensor([0]))[0]
    torch.testing.assert_close(loss, expected)


def test_to_float64_moves_class_weights_and_computes_in_float64() -> None:
    module = FairLoss(nn.CrossEntropyLoss(weight=WEIGHT, reduction="none")).to(torch.float64)
    assert module.cross_entropy.weight is not None
    assert module.cross_entropy.weight.dtype == torch.float64
    logits, target = batch()
    loss = module(logits.double(), target)
    assert loss.dtype == torch.float64
    expected = fair_loss(logits.double(), target, weight=WEIGHT.double())
    assert torch.equal(loss, expected)


def test_state_dict_holds_only_the_cross_entropy_weight() -> None:
    assert FairLoss().state_dict() == {}
    module = FairLoss(nn.CrossEntropyLoss(weight=WEIGHT, reduction="none"))
    assert list(module.state_dict()) == ["cross_entropy.weight"]
    assert list(module.parameters()) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_to_cuda_computes_on_the_gpu_and_agrees_with_cpu() -> None:
    cpu = FairLoss(nn.CrossEntropyLoss(weight=WEIGHT, reduction="none"), reduction="none")
    gpu = FairLoss(nn.CrossEntropyLoss(weight=WEIGHT, reduction="none"), reduction="none").to(
        "cuda"
    )
    logits, target = batch()
    loss = gpu(logits.cuda(), target.cuda())
    assert loss.device.type == "cuda"
    torch.testing.assert_close(loss.cpu(), cpu(logits, target), rtol=1e-5, atol=1e-6)


def test_training_steps_reduce_the_loss_and_gradients_flow() -> None:
    torch.manual_seed(0)
    inputs = torch.randn(64, 5)
    target = (inputs @ torch.randn(5, 3)).argmax(dim=1)
    model = nn.Linear(5, 3)
    criterion = FairLoss(smooth_max_beta=10.0, scaling_factor=10.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(10):
        optimizer.zero_grad()
        loss = criterion(model(inputs), target)
        loss.backward()
        assert model.weight.grad is not None
        assert bool(model.weight.grad.isfinite().all())
        assert float(model.weight.grad.abs().sum()) > 0
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_a_correct_row_can_still_score_worse_than_a_wrong_one() -> None:
    """FairLoss makes inversions rarer, not impossible: the penalty is at most 1/C, while the
    cross-entropy gap between a barely-correct and a barely-wrong row reaches ln(C/2). The
    paper's PLL and PBS order the same two rows correctly."""
    logits = torch.tensor([[0.0, 0.03, 0.0], [0.04, 0.0, -30.0]])
    labels = torch.tensor([1, 1])
    total = FairLoss(reduction="none")(logits, labels)
    assert total.tolist() == pytest.approx([1.0787126, 1.0466806], rel=1e-6)
    scores = sample_scores(logits, labels)
    assert scores.correct.tolist() == [True, False]
    assert total[0] > total[1]
    assert scores.pll[0] < scores.pll[1]
    assert scores.pbs[0] < scores.pbs[1]
    assert superior_violations(total, scores.correct).count == 1
    assert superior_violations(scores.pll, scores.correct).count == 0
