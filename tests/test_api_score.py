"""POST /score against known numbers, and the routes around it (health, info, OpenAPI, docs)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import README_EXAMPLE

pytestmark = pytest.mark.anyio

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "fairloss_cases.json").read_text()
)["cases"]
TERMS = ("ce", "penalty", "total")
# Largest deviation from the exact values, relative to max(1, |value|), per precision.
TOLERANCE = {"float32": 1e-6, "float64": 1e-12}


async def score(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/score", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    result: dict[str, Any] = response.json()
    return result


def deviation(got: list[float], want: list[float]) -> float:
    assert len(got) == len(want)
    return max(abs(a - b) / max(1.0, abs(b)) for a, b in zip(got, want, strict=True))


def case_body(case: dict[str, Any], **extra: Any) -> dict[str, Any]:
    keys = ("logits", "labels", "smooth_max_beta", "scaling_factor", "class_weights")
    return {**{k: case[k] for k in keys}, "label_smoothing": case["label_smoothing"], **extra}


async def test_readme_example(client: httpx.AsyncClient) -> None:
    result = await score(client, README_EXAMPLE)
    columns = result["per_sample"]
    assert [round(v, 4) for v in columns["ce"]] == [1.0920, 0.9681]
    assert [round(v, 4) for v in columns["total"]] == [1.0920, 1.3014]
    assert columns["penalty"][0] == pytest.approx(1.5133e-5, abs=1e-7)
    assert columns["penalty"][1] == pytest.approx(1 / 3, abs=1e-6)
    assert columns["predicted"] == [0, 1]
    assert columns["correct"] == [True, False]
    assert set(columns) == {"ce", "penalty", "total", "predicted", "correct"}
    assert {k: result[k] for k in ("n", "num_classes", "device", "precision")} == {
        "n": 2,
        "num_classes": 3,
        "device": "cpu",
        "precision": "float32",
    }
    reduced = result["reduced"]
    assert reduced["reduction"] == "mean"
    assert reduced["total"] == pytest.approx(1.1966818, abs=1e-6)
    for term in TERMS:
        assert reduced[term] == pytest.approx(sum(columns[term]) / 2, rel=1e-6)
    assert result["metrics"]["accuracy"] == 0.5


async def test_readme_example_sum(client: httpx.AsyncClient) -> None:
    result = await score(client, {**README_EXAMPLE, "reduction": "sum"})
    assert result["reduced"]["reduction"] == "sum"
    assert result["reduced"]["total"] == pytest.approx(2.3933637, abs=2e-6)
    for term in TERMS:
        assert result["reduced"][term] == pytest.approx(result["sums"][term], rel=1e-12)


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
async def test_reference_cases(
    client: httpx.AsyncClient, case: dict[str, Any], precision: str
) -> None:
    exact = case["exact_float64"]
    mean = await score(client, case_body(case, precision=precision))
    total = await score(client, case_body(case, precision=precision, reduction="sum"))
    assert mean["precision"] == precision
    for term in TERMS:
        assert deviation(mean["per_sample"][term], exact[term]) < TOLERANCE[precision], term
    assert deviation([mean["reduced"]["total"]], [exact["mean"]]) < TOLERANCE[precision]
    assert deviation([total["reduced"]["total"]], [exact["sum"]]) < TOLERANCE[precision]


async def test_float64_is_tighter_than_float32(client: httpx.AsyncClient) -> None:
    case = next(c for c in CASES if c["name"] == "ten_class")
    exact = case["exact_float64"]["total"]
    single = await score(client, case_body(case))
    double = await score(client, case_body(case, precision="float64"))
    assert deviation(double["per_sample"]["total"], exact) < 1e-12
    assert deviation(single["per_sample"]["total"], exact) > 1e-9


async def test_metrics_are_ratios_of_the_sums(client: httpx.AsyncClient) -> None:
    case = next(c for c in CASES if c["name"] == "ten_class")
    result = await score(client, case_body(case, extra_columns=["log_loss", "brier", "pll", "pbs"]))
    sums, metrics, columns = result["sums"], result["metrics"], result["per_sample"]
    assert sums["count"] == 32
    assert sums["correct"] == sum(columns["correct"])
    assert metrics["accuracy"] == sums["correct"] / 32
    for name in ("log_loss", "brier", "pll", "pbs"):
        assert metrics[name] == pytest.approx(sums[name] / 32, rel=1e-12)
        assert sums[name] == pytest.approx(math.fsum(columns[name]), rel=1e-6)
    for term in TERMS:
        assert sums[term] == pytest.approx(math.fsum(columns[term]), rel=1e-6)
    bins = sums["bins"]
    assert sum(bins["count"]) == 32
    assert sum(bins["correct"]) == sums["correct"]
    gaps = sum(abs(k - c) for k, c in zip(bins["correct"], bins["confidence"], strict=True))
    assert metrics["ece"] == pytest.approx(gaps / 32, rel=1e-12)


def add_sums(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    merged = {k: a[k] + b[k] for k in a if k != "bins"}
    merged["bins"] = {
        k: [x + y for x, y in zip(a["bins"][k], b["bins"][k], strict=True)] for k in a["bins"]
    }
    return merged


async def test_sums_of_two_halves_add_up_to_the_whole(client: httpx.AsyncClient) -> None:
    case = next(c for c in CASES if c["name"] == "ten_class")
    whole = await score(client, case_body(case, per_sample=False))
    halves = [
        await score(
            client,
            {**case_body(case), "logits": case["logits"][part], "labels": case["labels"][part]},
        )
        for part in (slice(0, 13), slice(13, None))
    ]
    merged = add_sums(halves[0]["sums"], halves[1]["sums"])
    want = whole["sums"]
    for key in ("count", "correct"):
        assert merged[key] == want[key]
    assert merged["bins"]["count"] == want["bins"]["count"]
    assert merged["bins"]["correct"] == want["bins"]["correct"]
    assert merged["bins"]["confidence"] == pytest.approx(want["bins"]["confidence"], rel=1e-12)
    for key in (*TERMS, "log_loss", "brier", "pll", "pbs"):
        assert merged[key] == pytest.approx(want[key], rel=1e-12), key
    assert merged["total"] / merged["count"] == pytest.approx(whole["reduced"]["total"], rel=1e-12)


async def test_class_weights_scale_each_cross_entropy(client: httpx.AsyncClient) -> None:
    weights = [2.0, 0.5, 0.0]
    body = {"logits": [*README_EXAMPLE["logits"], [0.1, 0.2, 3.0]], "labels": [0, 0, 2]}
    plain = await score(client, body)
    weighted = await score(client, {**body, "class_weights": weights})
    for i, label in enumerate(body["labels"]):
        want = weights[label] * plain["per_sample"]["ce"][i]
        assert weighted["per_sample"]["ce"][i] == pytest.approx(want, rel=1e-6)
    assert weighted["per_sample"]["penalty"] == plain["per_sample"]["penalty"]
    # The mean divides by the number of samples, not by the sum of their weights.
    assert weighted["reduced"]["ce"] == pytest.approx(sum(weighted["per_sample"]["ce"]) / 3)


async def test_label_smoothing_matches_the_reference(client: httpx.AsyncClient) -> None:
    case = next(c for c in CASES if c["name"] == "label_smoothing")
    assert case["label_smoothing"] == 0.1
    result = await score(client, case_body(case))
    assert deviation(result["per_sample"]["ce"], case["exact_float64"]["ce"]) < 1e-6
    unsmoothed = await score(client, case_body(case, label_smoothing=0.0))
    assert unsmoothed["per_sample"]["ce"] != result["per_sample"]["ce"]


@pytest.mark.parametrize("ignore_index", [-1, -100, 1])
async def test_ignore_index(client: httpx.AsyncClient, ignore_index: int) -> None:
    logits = [[0.34, 0.33, 0.33], [0.49, 0.51, 0.0], [2.0, 0.0, 1.0], [0.0, 0.0, 5.0]]
    labels = [0, ignore_index, 0, ignore_index]
    full = await score(client, {"logits": logits, "labels": [0, 2, 0, 1]})
    result = await score(client, {"logits": logits, "labels": labels, "ignore_index": ignore_index})
    columns = result["per_sample"]
    assert columns["counted"] == [True, False, True, False]
    for term in TERMS:
        assert columns[term][1] == 0.0
        assert columns[term][3] == 0.0
        assert columns[term][0] == full["per_sample"][term][0]
        assert columns[term][2] == full["per_sample"][term][2]
        kept = columns[term][0] + columns[term][2]
        assert result["reduced"][term] == pytest.approx(kept / 2, rel=1e-6)
    assert columns["correct"] == [True, False, True, False]
    assert columns["predicted"] == [0, 1, 0, 2]
    assert result["sums"]["count"] == 2
    assert result["metrics"]["accuracy"] == 1.0
    assert result["n"] == 4


async def test_every_sample_ignored_gives_null_means(client: httpx.AsyncClient) -> None:
    body = {"logits": [[1.0, 2.0], [3.0, 0.5]], "labels": [-1, -1], "ignore_index": -1}
    result = await score(client, body)
    assert result["reduced"] == {"reduction": "mean", "ce": None, "penalty": None, "total": None}
    assert set(result["metrics"].values()) == {None}
    assert result["sums"]["count"] == 0
    summed = await score(client, {**body, "reduction": "sum"})
    assert summed["reduced"] == {"reduction": "sum", "ce": 0.0, "penalty": 0.0, "total": 0.0}


async def test_every_weight_zero_gives_null_means(client: httpx.AsyncClient) -> None:
    body = {"logits": [[1.0, 2.0], [3.0, 0.5]], "labels": [0, 1], "sample_weight": [0, 0]}
    result = await score(client, body)
    assert result["reduced"] == {"reduction": "mean", "ce": None, "penalty": None, "total": None}
    assert set(result["metrics"].values()) == {None}
    assert (result["sums"]["count"], result["sums"]["weight"]) == (2, 0.0)


async def test_ignore_index_without_ignored_labels_has_counted_column(
    client: httpx.AsyncClient,
) -> None:
    result = await score(client, {**README_EXAMPLE, "ignore_index": -1})
    assert result["per_sample"]["counted"] == [True, True]
    plain = await score(client, README_EXAMPLE)
    assert result["per_sample"]["total"] == plain["per_sample"]["total"]


async def test_per_sample_false_returns_aggregates_only(client: httpx.AsyncClient) -> None:
    plain = await score(client, README_EXAMPLE)
    result = await score(client, {**README_EXAMPLE, "per_sample": False})
    assert "per_sample" not in result
    assert result == {k: v for k, v in plain.items() if k != "per_sample"}


async def test_extra_columns(client: httpx.AsyncClient) -> None:
    extra = ["confidence", "log_loss", "brier", "pll", "pbs"]
    result = await score(client, {**README_EXAMPLE, "extra_columns": extra})
    columns = result["per_sample"]
    assert set(columns) == {"ce", "penalty", "total", "predicted", "correct", *extra}
    row = README_EXAMPLE["logits"][1]
    exps = [math.exp(v) for v in row]
    probs = [e / sum(exps) for e in exps]
    assert columns["confidence"][1] == pytest.approx(max(probs), rel=1e-6)
    assert columns["log_loss"] == pytest.approx(columns["ce"], rel=1e-6)
    brier = sum(p * p for p in probs) - 2 * probs[0] + 1
    assert columns["brier"][1] == pytest.approx(brier, rel=1e-6)
    assert columns["pll"][0] == pytest.approx(columns["log_loss"][0], rel=1e-6)
    assert columns["pll"][1] == pytest.approx(columns["log_loss"][1] + math.log(3), rel=1e-6)
    assert columns["pbs"][1] == pytest.approx(brier + 2 / 3, rel=1e-6)


@pytest.mark.parametrize("bins", [1, 4, 15, 1000])
async def test_ece_bins(client: httpx.AsyncClient, bins: int) -> None:
    result = await score(client, {**README_EXAMPLE, "ece_bins": bins, "per_sample": False})
    for column in result["sums"]["bins"].values():
        assert len(column) == bins
    assert sum(result["sums"]["bins"]["count"]) == 2
    assert 0.0 <= result["metrics"]["ece"] <= 1.0


@pytest.mark.parametrize("device", ["cpu", "auto"])
async def test_device_named_in_request(client: httpx.AsyncClient, device: str) -> None:
    info = (await client.get("/info")).json()
    result = await score(client, {**README_EXAMPLE, "device": device})
    want = "cpu" if device == "cpu" else info["default_device"]
    assert result["device"] == want


async def test_integer_and_huge_float64_logits(client: httpx.AsyncClient) -> None:
    ints = await score(client, {"logits": [[0, 1], [2, 0]], "labels": [1, 1]})
    floats = await score(client, {"logits": [[0.0, 1.0], [2.0, 0.0]], "labels": [1, 1]})
    assert ints["per_sample"] == floats["per_sample"]
    body = b'{"logits": [[18446744073709551615, 18446744073709551615]], "labels": [0]}'
    response = await client.post("/score", content=body)
    assert response.status_code == 200, response.text
    assert response.json()["per_sample"]["ce"] == [pytest.approx(math.log(2), rel=1e-6)]


async def test_large_batch_round_trips(client: httpx.AsyncClient) -> None:
    n = 5000
    logits = [[(i % 7) * 0.5, (i % 5) * 0.25, 1.0] for i in range(n)]
    labels = [i % 3 for i in range(n)]
    result = await score(client, {"logits": logits, "labels": labels})
    assert result["n"] == n
    assert all(len(column) == n for column in result["per_sample"].values())
    assert result["sums"]["count"] == n


# The routes around /score.


@pytest.mark.parametrize("precision", ["float32", "float64"])
async def test_certain_rows_give_zero_not_negative_zero(
    client: httpx.AsyncClient, precision: str
) -> None:
    body = {
        "logits": [[100, 0], [0, 100]],
        "labels": [0, 1],
        "precision": precision,
        "extra_columns": ["confidence", "log_loss", "brier", "pll", "pbs"],
    }
    response = await client.post("/score", json=body)
    assert response.status_code == 200
    assert re.search(rb"-0(\.0*)?([eE][-+]?\d+)?[],}]", response.content) is None
    assert response.json()["per_sample"]["ce"] == [0.0, 0.0]
    infer = {
        "inputs": [
            {"name": "logits", "datatype": "FP32", "shape": [2, 2], "data": [100, 0, 0, 100]},
            {"name": "labels", "datatype": "INT64", "shape": [2], "data": [0, 1]},
        ]
    }
    response = await client.post("/v2/models/fairloss/infer", json=infer)
    assert response.status_code == 200
    assert re.search(rb"-0(\.0*)?([eE][-+]?\d+)?[],}]", response.content) is None


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_probes_answer_head_as_uptime_monitors_send_it(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.head(path)
    assert (response.status_code, response.content) == (200, b"")
    assert response.headers["content-type"] == "application/json"


async def test_readyz(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_info(client: httpx.AsyncClient) -> None:
    response = await client.get("/info")
    assert response.status_code == 200
    info = response.json()
    assert info["version"] == "0.2.0"
    assert isinstance(info["torch_version"], str)
    assert info["devices"][0] == "cpu"
    assert info["default_device"] in info["devices"]
    assert info["defaults"]["smooth_max_beta"] == 1000.0
    assert info["defaults"]["scaling_factor"] == 1000.0
    assert info["defaults"]["reduction"] == "mean"
    assert info["defaults"]["precision"] == "float32"
    assert info["limits"]["max_body_bytes"] == 64 * 1024 * 1024
    assert info["limits"]["max_elements"] > 0
    assert info["limits"]["max_concurrency"] > 0


async def test_openapi_documents_the_request_bodies(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    components = schema["components"]["schemas"]
    for model in ("ScoreRequest", "CompareRequest", "ScoreResult", "CompareResult", "Problem"):
        assert model in components, model
    score_example = components["ScoreRequest"]["examples"][0]
    assert score_example == README_EXAMPLE
    compare_example = components["CompareRequest"]["examples"][0]
    assert compare_example["labels"] == README_EXAMPLE["labels"]
    assert compare_example["candidates"][0]["logits"] == README_EXAMPLE["logits"]
    assert components["ScoreRequest"]["additionalProperties"] is False
    for path, request, answer in (
        ("/score", "ScoreRequest", "ScoreResult"),
        ("/compare", "CompareRequest", "CompareResult"),
    ):
        operation = schema["paths"][path]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{request}"}
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{answer}"}
        for status in ("400", "413", "415", "422", "503"):
            content = operation["responses"][status]["content"]
            assert content == {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
            }, (path, status)


async def test_docs_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in response.text


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_their_scripts_from_the_service_not_a_cdn(
    client: httpx.AsyncClient, page: str
) -> None:
    html = (await client.get(page)).text
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources
    assert not [s for s in sources if s.startswith(("http:", "https:", "//"))]
    for source in sources:
        response = await client.get(source)
        assert response.status_code == 200, source
