"""The inputs evaluation pipelines have: probabilities, log-probabilities, sample weights and
K-dimensional outputs, in the core and through ``/score`` and ``/compare``, each against an
independent reference (scikit-learn, torch's ``CrossEntropyLoss``, float64 by hand)."""

from __future__ import annotations

import math
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from sklearn.metrics import brier_score_loss, log_loss

from fairloss import FairLoss, InputError, ScoringOptions, score_batch
from fairloss.metrics import superior_violations
from fairloss.predictions import PROBABILITIES_AS_LOGITS

RNG = np.random.default_rng(5)
LOGITS = RNG.normal(size=(300, 4)) * 2
LABELS = RNG.integers(0, 4, size=300)
WEIGHTS = RNG.uniform(0, 3, size=300)
PROBS = np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)


def test_probabilities_and_log_probabilities_score_as_their_logits() -> None:
    options = ScoringOptions(precision="float64")
    want = score_batch(LOGITS, LABELS, options)
    for kind, value in (("probabilities", PROBS), ("log_probabilities", np.log(PROBS))):
        got = score_batch(value, LABELS, options, kind=kind)  # type: ignore[arg-type]
        for name in ("ce", "penalty", "total", "brier", "pll", "pbs"):
            torch.testing.assert_close(got.columns[name], want.columns[name], rtol=1e-9, atol=1e-12)


# Probabilities a random forest and a confident logistic regression give: exact zeros and ones,
# true classes far below float32's epsilon (1.2e-7) and between float64's and float32's.
EDGES = np.array(
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1e-10, 1 - 1e-10, 0.0], [1e-300, 0.5, 0.5],
     [3e-8, 0.2, 0.8 - 3e-8], [0.25, 0.25, 0.5]]
)  # fmt: skip
EDGE_LABELS = np.array([1, 1, 0, 0, 0, 2])


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_probabilities_clip_as_scikit_learns_log_loss_at_their_own_dtypes_epsilon(
    precision: Any, dtype: Any
) -> None:
    """``log_loss`` clips at the epsilon of the array's dtype, whatever the compute precision;
    the renormalising softmax moves a sample by at most C * eps, which float16 (eps 1e-3) shows."""
    p = EDGES.astype(dtype)
    batch = score_batch(p, EDGE_LABELS, ScoringOptions(precision=precision), kind="probabilities")
    want = log_loss(EDGE_LABELS, p, labels=[0, 1, 2])
    rtol = {np.float64: 1e-7, np.float32: 1e-6, np.float16: 1e-2}[dtype]
    assert batch.reduced["ce"] == pytest.approx(want, rel=rtol)
    with np.errstate(divide="ignore"):
        log_p = np.log(p)
    logged = score_batch(
        log_p, EDGE_LABELS, ScoringOptions(precision=precision), kind="log_probabilities"
    )  # -inf where p is 0: predict_log_proba scores as predict_proba does
    assert logged.reduced["ce"] == pytest.approx(want, rel=rtol)


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_one_dimensional_binary_scores_read_as_scikit_learn_reads_them(precision: Any) -> None:
    """(N) scores: decision_function's s are the logits (0, s) (predict_proba is their
    sigmoid, for logistic regression), probabilities p of class 1 are (1 - p, p), as
    ``log_loss`` reads a 1-D ``y_proba``; log-probabilities are log(p)."""
    s = RNG.normal(size=300) * 4
    y = (RNG.uniform(size=300) < 1 / (1 + np.exp(-s))).astype(int)
    p = 1 / (1 + np.exp(-s))
    options = ScoringOptions(precision=precision)
    want = log_loss(y, p)
    rtol = 1e-6 if precision == "float32" else 1e-12
    for kind, value in (("logits", s), ("probabilities", p), ("log_probabilities", np.log(p))):
        batch = score_batch(value, y, options, kind=kind)  # type: ignore[arg-type]
        assert batch.reduced["ce"] == pytest.approx(want, rel=rtol), kind
        assert batch.num_classes == 2
        assert batch.metrics["accuracy"] == pytest.approx(np.mean((s > 0) == y), abs=1e-12)
    with pytest.raises(InputError, match=r"labels in \[0, 2\), but labels\[0\] is 2"):
        score_batch(s, np.r_[2, y[1:]], options)


@pytest.mark.parametrize(
    ("kind", "value", "loc", "words"),
    [
        ("probabilities", [[0.5, 0.6]], ("probabilities", 0), "sums to 1.1"),
        (
            "probabilities",
            [[1.5, -0.5]],
            ("probabilities", 0, 0),
            "in [0, 1], but probabilities[0][0] is 1.5",
        ),
        ("log_probabilities", [[0.1, -2.0]], ("log_probabilities", 0, 0), "<= 0"),
        (
            "log_probabilities",
            [[-1.0, -1.0]],
            ("log_probabilities", 0),
            "exponentiates to 0.735759",
        ),
        ("log_probabilities", [[-math.inf, -math.inf]], ("log_probabilities", 0), "to 0\n"),
        ("log_probabilities", [[math.inf, 0.0]], ("log_probabilities", 0, 0), "finite"),
        ("log_probabilities", [[math.nan, 0.0]], ("log_probabilities", 0, 0), "is nan"),
        ("probabilities", [[math.nan, 1.0]], ("probabilities", 0, 0), "is nan"),
        ("probabilities", [1.5], ("probabilities", 0), "in [0, 1], but probabilities[0] is 1.5"),
        ("log_probabilities", [0.5], ("log_probabilities", 0), "<= 0"),
    ],
)
def test_predictions_that_are_not_distributions_name_the_sample(
    kind: Any, value: Any, loc: tuple[Any, ...], words: str
) -> None:
    with pytest.raises(InputError) as raised:
        score_batch(np.array(value), np.array([0]), kind=kind)
    assert raised.value.loc == loc
    assert words in str(raised.value) + "\n"


def test_weighted_means_match_scikit_learn() -> None:
    batch = score_batch(PROBS, LABELS, ScoringOptions(precision="float64"), kind="probabilities",
                        sample_weight=WEIGHTS)  # fmt: skip
    assert batch.metrics["log_loss"] == pytest.approx(
        log_loss(LABELS, PROBS, sample_weight=WEIGHTS, labels=range(4)), rel=1e-9
    )
    # scikit-learn's multiclass Brier score sums the squared errors over the classes, as ours
    assert batch.metrics["brier"] == pytest.approx(
        brier_score_loss(LABELS, PROBS, sample_weight=WEIGHTS, labels=range(4)), rel=1e-9
    )
    correct = PROBS.argmax(axis=1) == LABELS
    assert batch.metrics["accuracy"] == pytest.approx(np.average(correct, weights=WEIGHTS))
    assert batch.sums.weight == pytest.approx(WEIGHTS.sum())
    assert batch.sums.count == 300


def test_weights_of_one_change_nothing_and_zero_weights_reduce_to_nan() -> None:
    plain = score_batch(LOGITS, LABELS)
    ones = score_batch(LOGITS, LABELS, sample_weight=np.ones(300))
    assert ones.metrics == plain.metrics
    assert ones.reduced == plain.reduced
    zeros = score_batch(LOGITS, LABELS, sample_weight=np.zeros(300))
    assert all(math.isnan(v) for v in zeros.reduced.values())


def test_weighted_violations_sum_the_products_of_weights_over_the_pairs() -> None:
    scores = torch.tensor([0.5, 0.2, 0.9, 0.1, 0.3])
    correct = torch.tensor([True, False, True, False, True])
    weight = torch.tensor([1.0, 2.0, 3.0, 0.5, 4.0], dtype=torch.float64)
    found = superior_violations(scores, correct, sample_weight=weight)
    pairs = [(i, j) for i in range(5) for j in range(5) if correct[i] and not correct[j]]
    violating = [(i, j) for i, j in pairs if scores[i] > scores[j]]
    assert found.count == len(violating)
    assert found.pairs == len(pairs)
    assert found.weighted_count == pytest.approx(
        sum(float(weight[i] * weight[j]) for i, j in violating)
    )
    assert found.weighted_pairs == pytest.approx(
        sum(float(weight[i] * weight[j]) for i, j in pairs)
    )


K_LOGITS = torch.randn(3, 4, 5, 2, generator=torch.Generator().manual_seed(2))
K_LABELS = torch.randint(0, 4, (3, 5, 2), generator=torch.Generator().manual_seed(3))


def test_k_dim_fair_loss_matches_flattening_and_torch_cross_entropy() -> None:
    none = FairLoss(reduction="none")(K_LOGITS, K_LABELS)
    assert none.shape == K_LABELS.shape
    flat_logits = K_LOGITS.movedim(1, -1).reshape(-1, 4)
    flat = FairLoss(reduction="none")(flat_logits, K_LABELS.reshape(-1))
    torch.testing.assert_close(none.reshape(-1), flat)
    ce = torch.nn.CrossEntropyLoss(reduction="none")(K_LOGITS, K_LABELS)
    batch = score_batch(K_LOGITS, K_LABELS)
    assert batch.shape == (3, 5, 2)
    assert batch.n == 30
    torch.testing.assert_close(batch.columns["ce"], ce.reshape(-1))
    mean = FairLoss()(K_LOGITS, K_LABELS)
    torch.testing.assert_close(mean, flat.mean())


def test_k_dim_ignore_index_counts_only_the_kept_positions() -> None:
    labels = K_LABELS.clone()
    labels[0, 0, 0] = -100
    loss = FairLoss()(K_LOGITS, labels)
    keep = labels != -100
    per_position = FairLoss(reduction="none")(K_LOGITS, labels)
    torch.testing.assert_close(loss, per_position[keep].mean())
    torch.testing.assert_close(
        torch.nn.CrossEntropyLoss(reduction="none")(K_LOGITS, labels)[keep],
        score_batch(K_LOGITS, labels, ScoringOptions(ignore_index=-100)).columns["ce"][
            keep.reshape(-1)
        ],
    )


@pytest.mark.anyio
async def test_score_takes_probabilities_and_weights(client: httpx.AsyncClient) -> None:
    body = {
        "probabilities": PROBS.tolist(),
        "labels": LABELS.tolist(),
        "sample_weight": WEIGHTS.tolist(),
        "precision": "float64",
    }
    result = (await client.post("/score", json=body)).json()
    assert result["metrics"]["log_loss"] == pytest.approx(
        log_loss(LABELS, PROBS, sample_weight=WEIGHTS, labels=range(4)), rel=1e-9
    )
    assert result["sums"]["weight"] == pytest.approx(WEIGHTS.sum())
    assert result["shape"] == [300]


@pytest.mark.anyio
async def test_score_takes_k_dim_outputs_and_returns_flat_columns(
    client: httpx.AsyncClient,
) -> None:
    body = {"logits": K_LOGITS.tolist(), "labels": K_LABELS.tolist()}
    result = (await client.post("/score", json=body)).json()
    assert result["shape"] == [3, 5, 2]
    assert result["n"] == 30
    ce = torch.nn.CrossEntropyLoss(reduction="none")(K_LOGITS, K_LABELS).reshape(-1)
    np.testing.assert_allclose(result["per_sample"]["ce"], ce.numpy(), rtol=1e-6)


@pytest.mark.anyio
async def test_compare_takes_any_prediction_kind_and_weighted_violations(
    client: httpx.AsyncClient,
) -> None:
    body = {
        "labels": LABELS.tolist(),
        "sample_weight": WEIGHTS.tolist(),
        "candidates": [
            {"name": "p", "probabilities": PROBS.tolist()},
            {"name": "z", "logits": LOGITS.tolist()},
        ],
    }
    result = (await client.post("/compare", json=body)).json()
    p, z = result["candidates"]
    assert p["metrics"]["accuracy"] == pytest.approx(z["metrics"]["accuracy"])
    assert p["violations"]["ce"]["weighted_pairs"] == pytest.approx(
        z["violations"]["ce"]["weighted_pairs"]
    )
    assert set(p["violations"]["ce"]) == {
        "count",
        "pairs",
        "examples",
        "weighted_count",
        "weighted_pairs",
    }


BAD: list[tuple[str, dict[str, Any], list[Any], str]] = [
    ("two_kinds", {"logits": [[1, 2]], "probabilities": [[0.5, 0.5]], "labels": [0]},
     ["probabilities"], "Expected exactly one of 'logits', 'probabilities' or 'log_probabilities'"),
    ("no_kind", {"labels": [0]}, ["logits"], "Field 'logits' is required"),
    ("not_normalised", {"probabilities": [[0.5, 0.5], [0.2, 0.2]], "labels": [0, 1]},
     ["probabilities", 1], "the sample at probabilities[1] sums to 0.4"),
    ("negative_weight", {"logits": [[1, 2]], "labels": [0], "sample_weight": [-1]},
     ["sample_weight", 0], "Expected finite weights >= 0, but sample_weight[0] is -1.0"),
    ("weight_shape", {"logits": [[1, 2]], "labels": [0], "sample_weight": [1, 2]},
     ["sample_weight"], "Expected sample_weight of the labels' shape [1], but got [2]"),
    ("ragged_k_dim", {"logits": [[[1], [2]], [[3], [4, 5]]], "labels": [[0], [1]]},
     ["logits", 1, 1], "Ragged rows: logits[1][1] has 2 numbers, logits[0][0] has 1"),
]  # fmt: skip


@pytest.mark.anyio
@pytest.mark.parametrize(("body", "loc", "words"), [pytest.param(*c[1:], id=c[0]) for c in BAD])
async def test_bad_inputs_are_named(
    client: httpx.AsyncClient, body: dict[str, Any], loc: list[Any], words: str
) -> None:
    response = await client.post("/score", json=body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["errors"][0]["loc"] == loc
    assert words in problem["detail"]
    assert (await client.get("/healthz")).status_code == 200


def test_an_ignored_sample_scores_zero_under_every_rule() -> None:
    batch = score_batch(LOGITS[:3], np.array([0, -100, 1]), ScoringOptions(ignore_index=-100))
    for name in ("ce", "penalty", "total", "log_loss", "brier", "pll", "pbs"):
        assert float(batch.columns[name][1]) == 0.0, name
    assert float(batch.columns["confidence"][1]) > 0  # not about the label: still shown


def test_the_largest_float32_as_float32_prints_it_is_taken_in_float32() -> None:
    batch = score_batch(np.array([[3.4028235e38, 3.4028235e38]]), np.array([0]))
    # two equal logits: ce = ln 2, gap = ln(2) / beta, penalty = tanh(s * gap / 2) / 2
    want = math.log(2) + math.tanh(math.log(2) / 2) / 2
    assert float(batch.columns["total"][0]) == pytest.approx(want, rel=1e-6)
    with pytest.raises(InputError, match="too large for float32"):
        score_batch(np.array([[3.5e38, 0.0]]), np.array([0]))


@pytest.mark.anyio
@pytest.mark.parametrize("weights", [[1e30, 1e30], [2e19, 1.0], [1e308, 0.0]])
async def test_weights_past_64_bits_are_answered(
    client: httpx.AsyncClient, weights: list[float]
) -> None:
    """A weighted bin count past 2**64 was written as an int orjson refuses: a 500."""
    body = {
        "logits": [[0.34, 0.33, 0.33], [0.49, 0.51, 0.0]],
        "labels": [0, 0],
        "sample_weight": weights,
    }
    response = await client.post("/score", json=body)
    assert response.status_code == 200, response.text
    sums = response.json()["sums"]  # in units of 2**scale past 2**959
    assert math.ldexp(sums["weight"], sums.get("scale", 0)) == pytest.approx(sum(weights))


def test_a_k_dim_sample_that_is_no_distribution_is_named_with_its_class_axis_spanned() -> None:
    probs = np.full((3, 4, 5), 0.25)
    probs[1, 2, 3] = 0.35  # item 1, position 3: sums to 1.1
    with pytest.raises(InputError) as raised:
        score_batch(probs, np.zeros((3, 5), dtype=np.int64), kind="probabilities")
    assert raised.value.loc == ("probabilities", 1)
    assert "the sample at probabilities[1][:][3] sums to 1.1" in str(raised.value)


@pytest.mark.anyio
async def test_class_weights_may_be_a_typed_array(client: httpx.AsyncClient) -> None:
    from fairloss_wire.typed_arrays import encode

    body = {"logits": LOGITS[:20].tolist(), "labels": LABELS[:20].tolist()}
    weights = np.array([1.0, 2.0, 0.5, 1.0])
    typed = await client.post("/score", json={**body, "class_weights": encode(weights)})
    plain = await client.post("/score", json={**body, "class_weights": weights.tolist()})
    assert typed.status_code == 200, typed.text
    assert typed.json() == plain.json()


def test_logits_that_look_like_probabilities_get_a_warning() -> None:
    """Probabilities saved as logits are scored through a softmax without complaint, so the
    answer says what they look like: 10 samples or more, all in [0, 1], each summing to 1."""
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=30)
    labels = rng.integers(0, 4, 30)
    warned = score_batch(p, labels)
    assert warned.warnings == (PROBABILITIES_AS_LOGITS,)
    assert score_batch(p, labels, kind="probabilities").warnings == ()
    assert score_batch(np.log(p), labels).warnings == ()
    assert score_batch(p[:9], labels[:9]).warnings == ()  # too few to tell from an example
    shifted = p.copy()
    shifted[0, 0] += 0.01  # one sample off by more than the tolerance
    assert score_batch(shifted, labels).warnings == ()
