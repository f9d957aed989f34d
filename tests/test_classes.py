"""Per-class metrics (``per_class``): against scikit-learn and float64 numpy, merged across
chunks, and through the service and the client."""

from __future__ import annotations

import base64
import json
from functools import reduce
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from fairloss.classes import class_report, classwise_ece
from fairloss.options import ScoringOptions
from fairloss.scoring import score_batch
from fairloss.sums import ScoreSums
from fairloss_client import Client
from tests.test_client import scripted

IGNORED = -100
OPTIONS = ScoringOptions(ignore_index=IGNORED, precision="float64", ece_bins=10)


def dataset(seed: int, n: int = 600, classes: int = 7) -> tuple[Any, Any, Any]:
    """Logits, labels (some ignored; class 6 never the truth) and weights (some 0)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes - 1, n)
    labels[rng.random(n) < 0.05] = IGNORED
    logits = rng.normal(scale=1.5, size=(n, classes))
    logits[np.arange(n), np.maximum(labels, 0)] += 1.0
    weight = rng.uniform(0.0, 2.0, n)
    weight[rng.random(n) < 0.05] = 0.0
    return logits, labels, weight


def by_hand(logits: Any, labels: Any, weight: Any, n_bins: int) -> dict[str, Any]:
    """Per-class means and one-vs-rest calibration errors in float64 numpy."""
    batch = score_batch(logits, labels, OPTIONS, sample_weight=weight)
    keep = labels != IGNORED
    w, y = weight[keep], labels[keep]
    classes = logits.shape[1]
    found: dict[str, Any] = {}
    for name in ("ce", "total", "pll", "pbs"):
        values = batch.columns[name].numpy()[keep]
        found[name] = [
            (w * values)[y == c].sum() / w[y == c].sum() if w[y == c].sum() else np.nan
            for c in range(classes)
        ]
    z = logits[keep]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    errors = []
    for c in range(classes):
        slot = np.clip(np.ceil(p[:, c] * n_bins).astype(int) - 1, 0, n_bins - 1)
        outcome = (y == c).astype(float)
        gap = sum(abs((w * (outcome - p[:, c]))[slot == b].sum()) for b in range(n_bins))
        errors.append(gap / w.sum())
    found["ece"] = errors
    return found


def test_per_class_matches_scikit_learn_and_float64_by_hand() -> None:
    logits, labels, weight = dataset(1)
    batch = score_batch(logits, labels, OPTIONS, sample_weight=weight, per_class=True)
    assert batch.sums.classes is not None
    report = class_report(batch.sums.classes)
    keep = labels != IGNORED
    y, predicted, w = labels[keep], logits[keep].argmax(axis=1), weight[keep]
    classes = list(range(logits.shape[1]))
    precision, recall, f1, support = precision_recall_fscore_support(
        y, predicted, labels=classes, sample_weight=w, zero_division=np.nan
    )
    np.testing.assert_allclose(report["support"], support, rtol=1e-12)
    np.testing.assert_allclose(report["precision"], precision, rtol=1e-12)
    np.testing.assert_allclose(report["recall"], recall, rtol=1e-12)
    np.testing.assert_allclose(report["f1"], f1, rtol=1e-12)
    assert np.isnan(report["recall"][6])  # no sample of class 6: no recall, as scikit-learn
    want = confusion_matrix(y, predicted, labels=classes, sample_weight=w)
    cells = report["confusion"]
    got = np.zeros_like(want)
    got[cells["true"], cells["predicted"]] = cells["count"]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert len(cells["count"]) == np.count_nonzero(want)
    np.testing.assert_allclose(report["predicted"], want.sum(axis=0), rtol=1e-12)
    reference = by_hand(logits, labels, weight, OPTIONS.ece_bins)
    for name in ("ce", "total", "pll", "pbs", "ece"):
        np.testing.assert_allclose(report[name], reference[name], rtol=1e-10, err_msg=name)
    assert batch.metrics["classwise_ece"] == pytest.approx(np.mean(reference["ece"]), rel=1e-10)


def test_chunks_with_classes_missing_merge_into_the_whole() -> None:
    """Chunks of 70 rows, some holding no sample (and no prediction) of a class, merge to the
    whole batch's per-class sums to 1e-12."""
    logits, labels, weight = dataset(2, n=700, classes=12)
    whole = score_batch(logits, labels, OPTIONS, sample_weight=weight, per_class=True)
    parts = [
        score_batch(
            logits[k : k + 70],
            labels[k : k + 70],
            OPTIONS,
            sample_weight=weight[k : k + 70],
            per_class=True,
        ).sums
        for k in range(0, 700, 70)
    ]
    assert any(part.classes is not None and part.classes.values[:, 0].min() == 0 for part in parts)
    merged = reduce(ScoreSums.merge, parts)
    assert merged.classes is not None
    assert whole.sums.classes is not None
    for name in ("values", "bins", "count"):
        np.testing.assert_allclose(
            getattr(merged.classes, name), getattr(whole.sums.classes, name), rtol=1e-12
        )
    np.testing.assert_array_equal(merged.classes.true, whole.sums.classes.true)
    np.testing.assert_array_equal(merged.classes.predicted, whole.sums.classes.predicted)
    assert classwise_ece(merged.classes) == pytest.approx(
        classwise_ece(whole.sums.classes), rel=1e-12
    )
    with pytest.raises(ValueError, match="per-class sums, or none"):
        parts[0].merge(score_batch(logits[:5], labels[:5], OPTIONS).sums)


@pytest.mark.anyio
@pytest.mark.parametrize("arrays", ["json", "base64"])
async def test_score_and_compare_return_classes(client: httpx.AsyncClient, arrays: str) -> None:
    logits, labels, weight = dataset(3, n=200, classes=5)
    body = {
        "logits": logits.tolist(),
        "labels": labels.tolist(),
        "sample_weight": weight.tolist(),
        "ignore_index": IGNORED,
        "precision": "float64",
        "ece_bins": 10,
        "per_class": True,
        "response_arrays": arrays,
    }
    response = await client.post("/score", json=body)
    assert response.status_code == 200, response.text
    scored = response.json()
    batch = score_batch(logits, labels, OPTIONS, sample_weight=weight, per_class=True)
    assert batch.sums.classes is not None
    want = class_report(batch.sums.classes)
    for name, values in want.items():
        if name == "confusion":
            assert scored["classes"][name] == values
            continue
        got = [np.nan if v is None else v for v in scored["classes"][name]]
        np.testing.assert_allclose(got, values, rtol=1e-15, err_msg=name)
    assert scored["metrics"]["classwise_ece"] == batch.metrics["classwise_ece"]
    assert "classes" in scored["sums"]
    compare = {k: v for k, v in body.items() if k != "logits"}
    compare["candidates"] = [{"name": "a", "logits": logits.tolist()}]
    compared = (await client.post("/compare", json=compare)).json()
    assert compared["candidates"][0]["classes"] == scored["classes"]
    plain = (await client.post("/score", json={**body, "per_class": False})).json()
    assert "classes" not in plain
    assert "classwise_ece" not in plain["metrics"]


@pytest.mark.anyio
async def test_fifty_thousand_classes_answer_with_a_sparse_confusion(
    client: httpx.AsyncClient,
) -> None:
    """C = 50,000 with 100 samples: the confusion holds at most 100 cells, not C**2 (the
    benchmark sends 2,000 through the client)."""
    rng = np.random.default_rng(4)
    n, classes = 100, 50_000
    labels = rng.integers(0, classes, n)
    logits = {"dtype": "float32", "shape": [n, classes], "data": None}
    values = rng.normal(size=(n, classes)).astype(np.float32)
    values[np.arange(n)[: n // 2], labels[: n // 2]] += 8.0  # half right
    logits["data"] = base64.b64encode(values.tobytes()).decode()
    body = {"logits": logits, "labels": labels.tolist(), "per_class": True, "per_sample": False}
    response = await client.post("/score", json=body)
    assert response.status_code == 200, response.text[:300]
    found = response.json()["classes"]
    assert len(found["support"]) == classes
    cells = found["confusion"]
    assert len(cells["count"]) <= n
    assert sum(cells["count"]) == n
    # the sums grow with the data, not with C: dense bins alone would be 50,000 x 45 numbers
    sums = response.json()["sums"]["classes"]
    assert len(json.dumps(sums)) < 1_500_000
    assert len(sums["cells"]) < 10 * n
    right = sum(
        c
        for t, p, c in zip(cells["true"], cells["predicted"], cells["count"], strict=True)
        if t == p
    )
    assert right >= n // 2


def test_the_client_merges_chunks_of_700_rows_into_one_requests_classes() -> None:
    logits, labels, weight = dataset(5, n=2_500, classes=6)
    with Client("http://fake", transport=scripted([], []), max_chunk_rows=700) as client:
        scored = client.score(
            logits, labels, sample_weight=weight, per_class=True, ignore_index=IGNORED
        )
        compared = client.compare(
            {"a": logits, "b": logits[::-1].copy()},
            labels,
            sample_weight=weight,
            per_class=True,
            ignore_index=IGNORED,
        )
    assert scored.chunks == 4
    whole = score_batch(
        logits, labels, ScoringOptions(ignore_index=IGNORED), sample_weight=weight, per_class=True
    )
    assert whole.sums.classes is not None
    want = class_report(whole.sums.classes)
    for result in (scored, compared.candidates[0]):
        got = result.classes
        assert got is not None
        for name in ("true", "predicted", "count"):
            np.testing.assert_allclose(got["confusion"][name], want["confusion"][name], 1e-12)
        for name in want:
            if name != "confusion":
                np.testing.assert_allclose(got[name], want[name], rtol=1e-12, err_msg=name)
    assert compared.candidates[1].classes is not None
