"""POST /compare: per-candidate scores, rankings, and superior violations against brute force."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest

from tests.conftest import README_EXAMPLE

pytestmark = pytest.mark.anyio

CRITERIA = ("ce", "total", "brier", "pll", "pbs")


async def compare(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/compare", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    result: dict[str, Any] = response.json()
    return result


def brute_force_violations(scores: list[float], correct: list[bool]) -> tuple[int, int]:
    """(count, pairs) by looking at every (correct, wrong) pair."""
    right = [s for s, c in zip(scores, correct, strict=True) if c]
    wrong = [s for s, c in zip(scores, correct, strict=True) if not c]
    return sum(1 for a in right for b in wrong if a > b), len(right) * len(wrong)


async def test_readme_example(client: httpx.AsyncClient) -> None:
    body = {
        "labels": README_EXAMPLE["labels"],
        "candidates": [{"name": "model-a", "logits": README_EXAMPLE["logits"]}],
    }
    result = await compare(client, body)
    assert set(result) == {"candidates", "ranking"}
    [entry] = result["candidates"]
    assert entry["name"] == "model-a"
    violations = entry["violations"]
    assert set(violations) == set(CRITERIA)
    assert violations["ce"] == {"count": 1, "pairs": 1, "examples": [[0, 1]]}
    assert violations["total"] == {"count": 0, "pairs": 1, "examples": []}
    assert result["ranking"] == {criterion: ["model-a"] for criterion in (*CRITERIA, "accuracy")}
    scored = (await client.post("/score", json=README_EXAMPLE)).json()
    assert {k: v for k, v in entry.items() if k not in ("name", "violations")} == scored


async def test_several_candidates_ranked_under_each_criterion(client: httpx.AsyncClient) -> None:
    labels = [0, 1, 2, 0]
    candidates = [
        # Confident and right on every sample: best everywhere.
        {"name": "sharp", "logits": [[5, 0, 0], [0, 5, 0], [0, 0, 5], [5, 0, 0]]},
        # Right on every sample, less sure: no penalty, mean cross-entropy 0.286.
        {"name": "timid", "logits": [[1.8, 0, 0], [0, 1.8, 0], [0, 0, 1.8], [1.8, 0, 0]]},
        # Wrong on one sample by a hair: mean cross-entropy 0.251, but a penalty of 1/3 there.
        {"name": "slip", "logits": [[3, 0, 0], [0, 3, 0], [0, 0, 3], [3, 3.01, 0]]},
    ]
    result = await compare(client, {"labels": labels, "candidates": candidates})
    assert [c["name"] for c in result["candidates"]] == ["sharp", "timid", "slip"]
    by_name = {c["name"]: c for c in result["candidates"]}
    for criterion in CRITERIA:
        means = {name: c["sums"][criterion] / c["sums"]["count"] for name, c in by_name.items()}
        assert result["ranking"][criterion] == sorted(means, key=means.__getitem__), criterion
    assert result["ranking"]["ce"] == ["sharp", "slip", "timid"]
    assert result["ranking"]["total"] == ["sharp", "timid", "slip"]
    assert result["ranking"]["accuracy"] == ["sharp", "timid", "slip"]
    assert by_name["slip"]["metrics"]["accuracy"] == 0.75
    assert by_name["slip"]["per_sample"]["correct"] == [True, True, True, False]
    for criterion in CRITERIA:
        assert by_name["sharp"]["violations"][criterion] == {"count": 0, "pairs": 0, "examples": []}


async def test_violations_match_brute_force(client: httpx.AsyncClient) -> None:
    rng = random.Random(3)
    n, num_classes = 80, 4
    labels = [rng.randrange(num_classes) for _ in range(n)]
    candidates = [
        {
            "name": f"m{k}",
            "logits": [[rng.gauss(0, 2) for _ in range(num_classes)] for _ in range(n)],
        }
        for k in range(3)
    ]
    extra = ["brier", "pll", "pbs"]
    result = await compare(
        client, {"labels": labels, "candidates": candidates, "extra_columns": extra}
    )
    for entry in result["candidates"]:
        correct = entry["per_sample"]["correct"]
        assert 0 < sum(correct) < n
        for criterion in CRITERIA:
            scores = entry["per_sample"][criterion]
            got = entry["violations"][criterion]
            assert (got["count"], got["pairs"]) == brute_force_violations(scores, correct)
            assert len(got["examples"]) == min(got["count"], len(got["examples"])) <= 5
            for i, j in got["examples"]:
                assert correct[i]
                assert not correct[j]
                assert scores[i] > scores[j]
        assert entry["violations"]["total"]["count"] <= entry["violations"]["ce"]["count"]


async def test_ignored_samples_take_no_part(client: httpx.AsyncClient) -> None:
    logits = [[0.34, 0.33, 0.33], [0.49, 0.51, 0.0], [0.9, 0.05, 0.05]]
    body = {
        "labels": [0, 0, -1],
        "ignore_index": -1,
        "candidates": [{"name": "a", "logits": logits}],
    }
    [entry] = (await compare(client, body))["candidates"]
    assert entry["per_sample"]["counted"] == [True, True, False]
    assert entry["violations"]["ce"] == {"count": 1, "pairs": 1, "examples": [[0, 1]]}
    assert entry["sums"]["count"] == 2


async def test_options_apply_to_every_candidate(client: httpx.AsyncClient) -> None:
    logits = README_EXAMPLE["logits"]
    body = {
        "labels": README_EXAMPLE["labels"],
        "candidates": [{"name": "a", "logits": logits}, {"name": "b", "logits": logits[::-1]}],
        "reduction": "sum",
        "precision": "float64",
        "per_sample": False,
        "smooth_max_beta": 10.0,
    }
    result = await compare(client, body)
    for entry in result["candidates"]:
        assert "per_sample" not in entry
        assert entry["precision"] == "float64"
        assert entry["reduced"]["reduction"] == "sum"
        assert entry["reduced"]["total"] == pytest.approx(entry["sums"]["total"], rel=1e-15)
    alone = await client.post(
        "/score",
        json={
            "logits": logits,
            "labels": README_EXAMPLE["labels"],
            "reduction": "sum",
            "precision": "float64",
            "smooth_max_beta": 10.0,
            "per_sample": False,
        },
    )
    assert alone.status_code == 200
    assert result["candidates"][0]["reduced"] == alone.json()["reduced"]


async def test_compare_counts_the_inversion_fairloss_leaves(client: httpx.AsyncClient) -> None:
    """The counter-example to "a correct prediction always scores better": FairLoss orders the
    correct row 0 after the wrong row 1; PLL and PBS do not."""
    body = {
        "labels": [1, 1],
        "candidates": [{"name": "m", "logits": [[0, 0.03, 0], [0.04, 0, -30]]}],
    }
    [entry] = (await compare(client, body))["candidates"]
    assert entry["per_sample"]["correct"] == [True, False]
    assert entry["per_sample"]["total"] == [1.0787126, 1.0466806]
    violations = entry["violations"]
    assert violations["total"] == {"count": 1, "pairs": 1, "examples": [[0, 1]]}
    assert violations["pll"] == {"count": 0, "pairs": 1, "examples": []}
    assert violations["pbs"] == {"count": 0, "pairs": 1, "examples": []}


async def test_the_openapi_description_makes_no_false_claim(client: httpx.AsyncClient) -> None:
    description = (await client.get("/openapi.json")).json()["info"]["description"]
    assert "always score better" not in description
    assert "does not rule it out" in description
