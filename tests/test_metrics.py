"""Scoring rules, calibration, mergeable sums and superior violations."""

from __future__ import annotations

import decimal
import math
import random
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from fairloss import (
    ScoreSums,
    expected_calibration_error,
    fair_loss_terms,
    sample_scores,
    score_sums,
    superior_violations,
)
from fairloss.metrics import above_first_bin, bin_index, calibration_bins

LN2, LN3 = math.log(2), math.log(3)

# logits, label, predicted, correct, confidence, log loss, Brier (summed over classes), beaten
HAND_CASES: list[tuple[str, list[float], int, int, bool, float, float, float, bool]] = [
    ("even_binary", [0.0, 0.0], 0, 0, True, 0.5, LN2, 0.5, False),
    ("beaten_binary", [0.0, LN3], 0, 1, False, 0.75, 2 * LN2, 0.75**2 * 2, True),
    ("beaten_three", [0.0, LN2, 0.0], 0, 1, False, 0.5, 2 * LN2, 0.75**2 + 0.5**2 + 0.25**2, True),
    ("tie_is_not_beaten", [LN2, LN2, 0.0], 1, 0, False, 0.4, math.log(2.5), 0.56, False),
    ("confident_four", [LN3, 0.0, 0.0, 0.0], 0, 0, True, 0.5, LN2, 0.25 + 3 / 36, False),
]


@pytest.mark.parametrize(
    ("row", "label", "predicted", "correct", "confidence", "log_loss", "brier", "beaten"),
    [case[1:] for case in HAND_CASES],
    ids=[case[0] for case in HAND_CASES],
)
def test_sample_scores_match_hand_computed_values(
    row: list[float],
    label: int,
    predicted: int,
    correct: bool,
    confidence: float,
    log_loss: float,
    brier: float,
    beaten: bool,
) -> None:
    scores = sample_scores(torch.tensor([row], dtype=torch.float64), torch.tensor([label]))
    num_classes = len(row)
    assert scores.predicted.tolist() == [predicted]
    assert scores.correct.tolist() == [correct]
    assert scores.confidence.item() == pytest.approx(confidence, abs=1e-12)
    assert scores.log_loss.item() == pytest.approx(log_loss, abs=1e-12)
    assert scores.brier.item() == pytest.approx(brier, abs=1e-12)
    pll = log_loss + (math.log(num_classes) if beaten else 0.0)
    pbs = brier + ((num_classes - 1) / num_classes if beaten else 0.0)
    assert scores.pll.item() == pytest.approx(pll, abs=1e-12)
    assert scores.pbs.item() == pytest.approx(pbs, abs=1e-12)


def test_sample_scores_match_a_plain_python_loop_with_ties() -> None:
    generator = torch.Generator().manual_seed(3)
    logits = torch.randint(-2, 3, (200, 4), generator=generator).double()
    target = torch.randint(0, 4, (200,), generator=generator)
    scores = sample_scores(logits, target)
    for i, (row, label) in enumerate(zip(logits.tolist(), target.tolist(), strict=True)):
        exps = [math.exp(z) for z in row]
        probs = [e / math.fsum(exps) for e in exps]
        brier = math.fsum((p - (c == label)) ** 2 for c, p in enumerate(probs))
        beaten = max(row) > row[label]
        assert scores.predicted[i].item() == row.index(max(row))
        assert scores.brier[i].item() == pytest.approx(brier, abs=1e-12)
        log_loss = -math.log(probs[label])
        assert scores.pll[i].item() == pytest.approx(log_loss + beaten * math.log(4), abs=1e-12)
        assert scores.pbs[i].item() == pytest.approx(brier + beaten * 0.75, abs=1e-12)


def test_predicted_is_the_logits_argmax_where_float32_probabilities_tie() -> None:
    """Logits one float32 step apart whose probabilities round to one value: the predicted
    class is the larger logit's (the argmax of the probabilities would say class 0), so a
    correct sample is never also beaten, and the confidence is still the largest probability."""
    logits = torch.tensor([[0.15796369314193726, 0.15796370804309845]])
    probs = torch.log_softmax(logits, dim=1).exp()
    assert probs.argmax().item() == 0
    scores = sample_scores(logits, torch.tensor([1]))
    assert (scores.predicted.item(), scores.correct.item()) == (1, True)
    assert scores.pll.item() == scores.log_loss.item()  # not beaten
    assert scores.confidence.item() == probs.max().item()


def decimal_brier(row: list[float], label: int) -> float:
    """Brier summed over classes, from the float logits, in 50-digit decimal arithmetic."""
    with decimal.localcontext() as context:
        context.prec = 50
        top = max(row)
        exps = [(decimal.Decimal(z) - decimal.Decimal(top)).exp() for z in row]
        total = sum(exps)
        return float(sum((e / total - (c == label)) ** 2 for c, e in enumerate(exps)))


def test_brier_of_a_confident_float32_row_keeps_its_digits() -> None:
    """The field report: ``[[10, 0, 0]]``, label 0, gave 0.0 in float32."""
    scores = sample_scores(torch.tensor([[10.0, 0.0, 0.0]]), torch.tensor([0]))
    assert scores.brier.item() == pytest.approx(1.2364676e-08, rel=1e-6)
    assert scores.pbs.item() == pytest.approx(1.2364676e-08, rel=1e-6)


def confident_rows(scale: float, rows: int, classes: int) -> tuple[Tensor, Tensor]:
    """Logits N(0, scale^2), mostly confident and correct (the case that cancelled); a fifth
    of the labels drawn at random."""
    generator = torch.Generator().manual_seed(int(scale))
    logits = torch.randn(rows, classes, generator=generator) * scale
    target = logits.argmax(dim=1)
    target[::5] = torch.randint(0, classes, (len(target[::5]),), generator=generator)
    return logits, target


@pytest.mark.parametrize("scale", [1.0, 5.0, 10.0, 20.0, 30.0])
def test_float32_brier_and_pbs_within_1e_5_relative_of_a_decimal_reference(scale: float) -> None:
    logits, target = confident_rows(scale, 300, 5)
    scores = sample_scores(logits, target)
    for i, (row, label) in enumerate(zip(logits.tolist(), target.tolist(), strict=True)):
        brier = decimal_brier(row, label)
        beaten = max(row) > row[label]
        assert scores.brier[i].item() == pytest.approx(brier, rel=1e-5, abs=1e-30)
        assert scores.pbs[i].item() == pytest.approx(brier + beaten * 0.8, rel=1e-5, abs=1e-30)


@pytest.mark.parametrize("scale", [100.0, 1000.0])
def test_brier_and_pbs_of_confident_rows_within_1e_5_relative_of_float64(scale: float) -> None:
    """Log-probabilities far below -87, where the other classes' probabilities take their
    floor (e * float32's smallest normal); float64 holds the reference."""
    logits, target = confident_rows(scale, 2000, 20)
    scores = sample_scores(logits, target)
    assert float(torch.log_softmax(logits, dim=1).min()) < -200  # the floor is reached
    probs = torch.softmax(logits.double(), dim=1)
    others = probs.scatter(1, target.unsqueeze(1), 0.0)
    brier = others.sum(dim=1) ** 2 + (others**2).sum(dim=1)
    beaten = logits.double().amax(dim=1) > logits.double().gather(1, target.unsqueeze(1))[:, 0]
    pbs = torch.where(beaten, brier + 19 / 20, brier)
    torch.testing.assert_close(scores.brier.double(), brier, rtol=1e-5, atol=1e-30)
    torch.testing.assert_close(scores.pbs.double(), pbs, rtol=1e-5, atol=1e-30)
    assert math.isfinite(float(scores.brier.sum()))


def test_no_column_holds_negative_zero() -> None:
    """A certain row (log 1 = 0) once gave -0.0 for its cross-entropy and log loss."""
    logits = torch.tensor([[100.0, 0.0], [0.0, 100.0], [0.0, 0.0]])
    target = torch.tensor([0, 1, 0])
    terms = fair_loss_terms(logits, target)
    scores = sample_scores(logits, target)
    columns = [*terms[:3], scores.confidence, scores.log_loss, scores.brier, scores.pll, scores.pbs]
    for column in columns:
        assert not column.signbit().any(), column


# --- Calibration -----------------------------------------------------------------------------


def reference_ece(confidence: list[float], correct: list[bool], n_bins: int) -> float:
    """Bins (b / n, (b + 1) / n], the first one closed at 0, in plain Python."""
    gaps = 0.0
    for b in range(n_bins):
        low, high = b / n_bins, (b + 1) / n_bins
        members = [i for i, c in enumerate(confidence) if low < c <= high or (b == 0 and c <= low)]
        gaps += abs(sum(correct[i] for i in members) - math.fsum(confidence[i] for i in members))
    return gaps / len(confidence)


@pytest.mark.parametrize("n_bins", [1, 2, 5, 10, 15])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ece_matches_plain_python_binning(n_bins: int, dtype: torch.dtype) -> None:
    rng = random.Random(n_bins)
    edges = [b / n_bins for b in range(1, n_bins + 1)] + [0.3, 0.7, 0.1, 1.0]
    confidence = [rng.random() for _ in range(300)] + edges
    correct = [rng.random() < 0.7 for _ in confidence]
    conf = torch.tensor(confidence, dtype=dtype)
    ece = expected_calibration_error(conf, torch.tensor(correct), n_bins)
    assert ece == pytest.approx(reference_ece(conf.double().tolist(), correct, n_bins), abs=1e-12)


def test_calibration_bins_put_an_upper_edge_in_the_lower_bin() -> None:
    confidence = torch.tensor([0.1, 0.3, 0.7, 1.0, 0.0], dtype=torch.float64)
    count, conf_sum, correct = calibration_bins(confidence, torch.ones(5, dtype=torch.bool), 10)
    assert count.tolist() == [2, 0, 1, 0, 0, 0, 1, 0, 0, 1]
    assert conf_sum.tolist() == pytest.approx([0.1, 0, 0.3, 0, 0, 0, 0.7, 0, 0, 1.0], abs=1e-15)
    assert correct.tolist() == count.tolist()


@pytest.mark.parametrize("n_bins", [0, -1, 2.5])
def test_calibration_rejects_bad_bin_count(n_bins: Any) -> None:
    with pytest.raises(ValueError, match="Expected `n_bins` to be an integer larger than 0"):
        expected_calibration_error(torch.tensor([0.5]), torch.tensor([True]), n_bins)


# --- Mergeable sums --------------------------------------------------------------------------


def sums_of(logits: Tensor, target: Tensor, n_bins: int = 15) -> ScoreSums:
    terms = fair_loss_terms(logits, target, ignore_index=-1, smooth_max_beta=20.0)
    scores = sample_scores(logits, torch.where(terms.counted, target, 0))
    return score_sums(terms, scores, n_bins)


def random_batch(num_samples: int = 500, seed: int = 0) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(num_samples, 6, generator=generator) * 2
    target = torch.randint(0, 6, (num_samples,), generator=generator)
    target[::7] = -1
    return logits, target


FLOAT_SUMS = ("ce", "penalty", "total", "log_loss", "brier", "pll", "pbs")


@pytest.mark.parametrize(
    "sizes", [[500], [250, 250], [1, 99, 400], [37] * 13 + [19], [0, 500]], ids=str
)
def test_merged_chunk_sums_equal_the_sums_of_the_whole(sizes: list[int]) -> None:
    logits, target = random_batch()
    whole = sums_of(logits, target)
    merged = ScoreSums()
    start = 0
    for size in sizes:
        merged = merged.merge(sums_of(logits[start : start + size], target[start : start + size]))
        start += size
    assert merged.count == whole.count == 500 - 72
    assert merged.correct == whole.correct
    assert merged.bin_count == whole.bin_count
    assert merged.bin_correct == whole.bin_correct
    assert merged.bin_confidence == pytest.approx(whole.bin_confidence, rel=1e-12)
    for name in FLOAT_SUMS:
        assert getattr(merged, name) == pytest.approx(getattr(whole, name), rel=1e-12), name
        assert merged.mean(name) == pytest.approx(whole.mean(name), rel=1e-12), name
    assert merged.accuracy == whole.accuracy
    assert merged.ece == pytest.approx(whole.ece, rel=1e-12)


def test_sums_match_the_batch_aggregates() -> None:
    logits, target = random_batch()
    sums = sums_of(logits, target)
    counted = target != -1
    scores = sample_scores(logits[counted], target[counted])
    assert sums.count == int(counted.sum())
    assert sums.accuracy == pytest.approx(float(scores.correct.double().mean()), rel=1e-12)
    assert sums.mean("pll") == pytest.approx(float(scores.pll.double().mean()), rel=1e-6)
    ece = expected_calibration_error(scores.confidence, scores.correct)
    assert sums.ece == pytest.approx(ece, rel=1e-12)
    loss = fair_loss_terms(logits, target, ignore_index=-1, smooth_max_beta=20.0).total
    assert sums.mean("total") == pytest.approx(float(loss.double().sum()) / sums.count, rel=1e-12)


def test_merge_with_empty_sums_is_identity() -> None:
    sums = sums_of(*random_batch(50))
    assert sums.merge(ScoreSums()) == sums
    assert ScoreSums().merge(sums) == sums
    assert ScoreSums().merge(ScoreSums()) == ScoreSums()


def test_merge_rejects_mismatched_bin_counts() -> None:
    logits, target = random_batch(50)
    with pytest.raises(ValueError, match="same number of calibration bins, but got 15 and 10"):
        sums_of(logits, target, 15).merge(sums_of(logits, target, 10))


def test_empty_sums_have_nan_aggregates() -> None:
    empty = ScoreSums()
    assert math.isnan(empty.accuracy)
    assert math.isnan(empty.ece)
    assert math.isnan(empty.mean("total"))


# --- Superior violations ---------------------------------------------------------------------


def brute_force_violations(
    scores: list[float], correct: list[bool], counted: list[bool]
) -> tuple[int, int]:
    count = pairs = 0
    for i, (score_i, right, kept_i) in enumerate(zip(scores, correct, counted, strict=True)):
        for j, (score_j, wrong, kept_j) in enumerate(zip(scores, correct, counted, strict=True)):
            if i != j and kept_i and kept_j and right and not wrong:
                pairs += 1
                count += score_i > score_j
    return count, pairs


def check_violations(
    scores: Tensor, correct: Tensor, counted: Tensor | None, max_examples: int = 5
) -> None:
    kept = [True] * len(scores) if counted is None else counted.tolist()
    found = superior_violations(scores, correct, counted, max_examples)
    values, right = scores.tolist(), correct.tolist()
    assert (found.count, found.pairs) == brute_force_violations(values, right, kept)
    wrong_scores = [s for s, r, k in zip(values, right, kept, strict=True) if k and not r]
    violating = [
        i for i, (s, r, k) in enumerate(zip(values, right, kept, strict=True)) if k and r
        and any(s > w for w in wrong_scores)
    ]  # fmt: skip
    assert len(found.examples) == min(max_examples, len(violating))
    assert len(set(found.examples)) == len(found.examples)
    for i, j in found.examples:
        assert kept[i]
        assert kept[j]
        assert right[i]
        assert not right[j]
        assert values[i] > values[j]


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.lists(st.tuples(st.integers(0, 6), st.booleans(), st.booleans()), max_size=40),
    st.booleans(),
    st.integers(1, 6),
)
def test_superior_violations_match_brute_force(
    rows: list[tuple[int, bool, bool]], use_counted: bool, max_examples: int
) -> None:
    scores = torch.tensor([score / 4 for score, _, _ in rows], dtype=torch.float32)
    correct = torch.tensor([right for _, right, _ in rows], dtype=torch.bool)
    counted = torch.tensor([kept for _, _, kept in rows], dtype=torch.bool)
    check_violations(scores, correct, counted if use_counted else None, max_examples)


@pytest.mark.parametrize("seed", range(5))
def test_superior_violations_match_brute_force_on_rounded_random_scores(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    scores = (torch.rand(300, generator=generator, dtype=torch.float64) * 3).round(decimals=1)
    correct = torch.rand(300, generator=generator) < 0.6
    counted = torch.rand(300, generator=generator) < 0.9
    check_violations(scores, correct, counted)
    check_violations(scores, correct, None)


def test_superior_violations_readme_example() -> None:
    logits = torch.tensor([[0.34, 0.33, 0.33], [0.49, 0.51, 0.0]])
    target = torch.tensor([0, 0])
    terms = fair_loss_terms(logits, target)
    correct = sample_scores(logits, target).correct
    assert correct.tolist() == [True, False]
    ce = superior_violations(terms.ce, correct, terms.counted)
    total = superior_violations(terms.total, correct, terms.counted)
    assert (ce.count, ce.pairs, ce.examples) == (1, 1, [(0, 1)])
    assert (total.count, total.pairs, total.examples) == (0, 1, [])


def test_superior_violations_without_wrong_samples_is_empty() -> None:
    found = superior_violations(torch.tensor([0.3, 0.1]), torch.tensor([True, True]))
    assert (found.count, found.pairs, found.examples) == (0, 0, [])


@pytest.mark.parametrize("n_bins", [1, 2, 3, 7, 10, 15, 100, 1000])
def test_float32_confidences_fall_in_the_bins_of_the_float64_edges(n_bins: int) -> None:
    """`bin_index` bins float32 in float32 against edges rounded down: the same bin as the
    float64 edges give, for the float32 values next to every edge and for random ones."""
    edges = np.arange(1, n_bins + 1) / n_bins
    near = []
    for edge in edges.astype(np.float32):
        value = edge
        for _ in range(3):
            value = np.nextafter(value, np.float32(-1))
        for _ in range(7):
            near.append(value)
            value = np.nextafter(value, np.float32(2))
    edge_values = np.array([*near, 0.0, 1e-30], dtype=np.float32)
    kept = torch.from_numpy(edge_values[(edge_values >= 0) & (edge_values <= 1)])
    random_values = torch.rand(10_000, generator=torch.Generator().manual_seed(n_bins))
    values = torch.cat([kept, random_values])
    assert torch.equal(bin_index(values, n_bins), bin_index(values.double(), n_bins))
    assert torch.equal(above_first_bin(values, n_bins), bin_index(values.double(), n_bins) > 0)
