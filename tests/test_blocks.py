"""The scoring pass over blocks of rows (`fairloss.blocks`): the same numbers in any blocks,
cross-entropy bit for bit torch's own, and the penalty as exact as float32 allows where the
exponentials underflow (the Brier score there: `test_metrics.py`)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

import fairloss.blocks
from fairloss import ScoringOptions, fair_loss_terms, score_batch

RNG = np.random.default_rng(20261207)
C = 37
LOGITS = RNG.normal(scale=3.0, size=(1003, C)).astype(np.float32)
LABELS = RNG.integers(0, C, 1003)
OPTIONS = {
    "defaults": {},
    "weights and smoothing": {
        "class_weights": RNG.uniform(0.5, 2.0, C).tolist(),
        "label_smoothing": 0.1,
    },
    "ignore_index": {"ignore_index": 5},
    "float64": {"precision": "float64"},
}


def _in_blocks(monkeypatch: pytest.MonkeyPatch, rows: int) -> None:
    monkeypatch.setattr(fairloss.blocks, "BLOCK_ELEMENTS", rows * C + 3)


@pytest.mark.parametrize("options", OPTIONS.values(), ids=list(OPTIONS))
def test_blocks_of_any_size_give_the_whole_batch_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, Any]
) -> None:
    """1003 rows in blocks of 7 (a short last block) against one block of all of them."""
    weight = RNG.uniform(0.0, 3.0, len(LABELS))
    scoring = ScoringOptions(**options)
    whole = score_batch(LOGITS, LABELS, scoring, sample_weight=weight, violations=True)
    _in_blocks(monkeypatch, 7)
    assert fairloss.blocks.rows_per_block(1003, C, torch.device("cpu")) == 7
    parts = score_batch(LOGITS, LABELS, scoring, sample_weight=weight, violations=True)
    assert whole.columns.keys() == parts.columns.keys()
    for name, column in whole.columns.items():
        assert torch.equal(column, parts.columns[name]), name
    for name in ("weight", "correct", "ce", "penalty", "total", "log_loss", "brier", "pll", "pbs"):
        assert getattr(parts.sums, name) == pytest.approx(getattr(whole.sums, name), rel=1e-12)
    assert parts.sums.count == whole.sums.count
    np.testing.assert_allclose(parts.sums.bin_count, whole.sums.bin_count, rtol=1e-12)
    np.testing.assert_allclose(parts.sums.bin_correct, whole.sums.bin_correct, rtol=1e-12)
    np.testing.assert_allclose(parts.sums.bin_confidence, whole.sums.bin_confidence, rtol=1e-12)
    assert parts.violations == whole.violations


def test_the_loss_alone_in_blocks_gives_the_whole_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = score_batch(LOGITS, LABELS, rules=False)
    _in_blocks(monkeypatch, 10)
    parts = score_batch(LOGITS, LABELS, rules=False)
    for name in ("ce", "penalty", "total", "counted"):
        assert torch.equal(whole.columns[name], parts.columns[name]), name
    assert parts.reduced == pytest.approx(whole.reduced, rel=1e-12)
    assert parts.sums.count == whole.sums.count == len(LABELS)


@pytest.mark.parametrize("rows", [1, 7, 2000])
def test_cross_entropy_is_torch_s_own_bit_for_bit_in_any_blocks(
    monkeypatch: pytest.MonkeyPatch, rows: int
) -> None:
    """With class weights and ignored samples. (With label smoothing the smoothing term is
    summed as `fairloss.functional.cross_entropy` sums it, within 2 ulps of torch's, in one
    block as in many: `test_functional.py` holds it to a float64 loop.)"""
    _in_blocks(monkeypatch, rows)
    weights = OPTIONS["weights and smoothing"]["class_weights"]
    labels = np.where(np.arange(len(LABELS)) % 9 == 0, -100, LABELS)
    options = ScoringOptions(class_weights=weights, ignore_index=-100)
    batch = score_batch(LOGITS, labels, options)
    expected = F.cross_entropy(
        torch.from_numpy(LOGITS),
        torch.from_numpy(labels),
        weight=torch.tensor(weights, dtype=torch.float32),
        ignore_index=-100,
        reduction="none",
    )
    assert torch.equal(batch.columns["ce"], expected)


def test_k_dimensional_cross_entropy_is_torch_s_on_the_rows_moved_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """(N, C, d1, d2) outputs are scored as rows with the class axis last, in blocks."""
    _in_blocks(monkeypatch, 50)
    generator = torch.Generator().manual_seed(3)
    z = torch.randn(8, C, 6, 5, generator=generator) * 2
    y = torch.randint(0, C, (8, 6, 5), generator=generator)
    rows = F.cross_entropy(z.movedim(1, -1).reshape(-1, C), y.reshape(-1), reduction="none")
    assert torch.equal(score_batch(z, y).columns["ce"], rows)


def _edge_rows(beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows whose scaled differences straddle float32's underflow edge: besides the top class,
    classes 80/beta to 110/beta below it (exp of -80 to -110: normal, subnormal and zero in
    float32), near ties a hair below the top, and the true class among all of them."""
    generator = torch.Generator().manual_seed(7)
    rows, classes = 4000, 64
    logits = torch.randn(rows, classes, generator=generator, dtype=torch.float64) - 5.0
    logits[:, 0] = 0.0
    below = torch.rand(rows, 39, generator=generator, dtype=torch.float64) * 30 + 80
    logits[:, 1:40] = -below / beta
    logits[:, 40:44] = -torch.rand(rows, 4, generator=generator, dtype=torch.float64) * 2e-3
    logits = logits.float()
    target = torch.randint(0, 48, (rows,), generator=generator)
    target[::3] = 0  # correct rows: the classes below the edge are all their penalty holds
    return logits, target


@pytest.mark.parametrize("beta", [1000.0, 100.0, 1e4])
def test_the_penalty_straddling_the_underflow_edge_is_within_2_4e_7_of_float64(
    beta: float,
) -> None:
    logits, target = _edge_rows(beta)
    ours = fair_loss_terms(logits, target, smooth_max_beta=beta)
    exact = fair_loss_terms(logits.double(), target, smooth_max_beta=beta)
    assert float((ours.penalty.double() - exact.penalty).abs().max()) <= 2.4e-7
    # The total: no further from float64 than torch's float32 cross-entropy is, plus that,
    # plus the rounding of the float32 sum itself (half an ulp of the total).
    ce_error = (ours.ce.double() - exact.ce).abs()
    rounding = torch.finfo(torch.float32).eps / 2 * 2 ** torch.floor(torch.log2(ours.total))
    bound = ce_error + 2.4e-7 + rounding.double()
    assert bool(((ours.total.double() - exact.total).abs() <= bound).all())
    scored = score_batch(logits, target, ScoringOptions(smooth_max_beta=beta))
    assert torch.equal(scored.columns["penalty"], ours.penalty)


def test_the_penalty_in_float64_matches_a_float64_logsumexp() -> None:
    """The log-softmax form against the definition, ``logsumexp(beta * (z - z_y)) / beta``."""
    logits, target = _edge_rows(1000.0)
    z = logits.double()
    gap = torch.logsumexp(1000.0 * (z - z.gather(1, target.unsqueeze(1))), dim=1) / 1000.0
    expected = torch.tanh(1000.0 * gap / 2) / z.shape[1]
    got = fair_loss_terms(z, target).penalty
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    ("logits", "beta", "precision"),
    [
        ([[0.0, 1e36]], 1000.0, "float32"),  # beta * gap overflows float32
        ([[0.0, 4e35]], 1000.0, "float32"),
        ([[0.0, 1e30]], 1e9, "float32"),
        ([[0.0, 1e306]], 1000.0, "float64"),
    ],
)
def test_a_gap_past_the_dtype_s_range_gives_the_penalty_s_limit(
    logits: list[list[float]], beta: float, precision: Literal["float32", "float64"]
) -> None:
    """The limit 1/C, as logsumexp's +inf gave, not the NaN that log-softmax gives a row
    holding +inf; the loss and its gradient stay finite."""
    dtype = torch.float32 if precision == "float32" else torch.float64
    z = torch.tensor(logits, dtype=dtype)
    y = torch.tensor([0])
    scored = score_batch(z, y, ScoringOptions(smooth_max_beta=beta, precision=precision))
    assert scored.columns["penalty"].tolist() == [0.5]
    assert scored.columns["ce"].tolist() == [float(z[0, 1])]
    leaf = z.clone().requires_grad_()
    terms = fair_loss_terms(leaf, y, smooth_max_beta=beta)
    terms.total.sum().backward()  # type: ignore[no-untyped-call]
    assert terms.penalty.tolist() == [0.5]
    assert leaf.grad is not None
    assert leaf.grad.tolist() == [[-1.0, 1.0]]  # softmax - onehot; the saturated penalty adds 0


def test_blocks_hold_about_a_million_logits_on_the_cpu_and_everything_elsewhere() -> None:
    cpu, meta = torch.device("cpu"), torch.device("meta")
    assert fairloss.blocks.rows_per_block(100_000, 100, cpu) == (1 << 20) // 100
    assert fairloss.blocks.rows_per_block(10, 10**7, cpu) == 1
    assert fairloss.blocks.rows_per_block(100_000, 100, meta) == 100_000
