"""Slices (``groups``): per-key numbers against Fairlearn and float64 numpy, keys kept as given,
chunks merged by key (keys missing from some chunks), the service's answers and its refusals."""

from __future__ import annotations

import base64
import json
import math
from functools import partial, reduce
from typing import Any

import anyio
import httpx
import numpy as np
import orjson
import pytest
from fairlearn.metrics import MetricFrame
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss

from fairloss.bootstrap import CRITERIA, FEW_ITEMS, Bootstrap
from fairloss.breakdown import group_report
from fairloss.errors import InputError
from fairloss.options import ScoringOptions
from fairloss.replicates import with_replicates
from fairloss.scoring import BatchScores, score_batch
from fairloss.sums import ScoreSums
from fairloss.uncertainty import differences
from fairloss_client import Client
from scripts.slice_validity import simulate
from service.settings import Settings
from tests.conftest import SUMMARY_TABLES, in_process
from tests.strategies import json_values
from tests.test_client import scripted

F64 = ScoringOptions(precision="float64")
TOLERANCE = 1e-12
JSON = {"content-type": "application/json"}


def softmax(z: Any) -> Any:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def dataset(seed: int, n: int, classes: int) -> tuple[Any, Any, Any, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(scale=1.5, size=(n, classes))
    logits[np.arange(n), labels] += 1.0
    weight = rng.uniform(0.1, 2.0, n)
    groups = {
        "language": rng.choice(["de", "en", "fr", "ja"], n, p=[0.2, 0.5, 0.2, 0.1]).tolist(),
        "source": rng.choice([3, 17, 1000], n).tolist(),
    }
    return logits, labels, weight, groups


def test_slices_match_fairlearns_metric_frame_and_float64_by_hand() -> None:
    logits, labels, weight, groups = dataset(1, 800, 4)
    batch = score_batch(logits, labels, F64, sample_weight=weight, groups=groups)
    assert batch.sums.groups is not None
    report = group_report(batch.sums.groups, batch.sums, "mean", weighted=True)
    p = softmax(logits)
    for column in ("language", "source"):
        losses = MetricFrame(
            metrics={"log_loss": partial(log_loss, labels=list(range(4)))},
            y_true=labels,
            y_pred=p,
            sensitive_features=np.asarray(groups[column]),
            sample_params={"log_loss": {"sample_weight": weight}},
        ).by_group
        accuracy = MetricFrame(
            metrics=accuracy_score,
            y_true=labels,
            y_pred=p.argmax(axis=1),
            sensitive_features=np.asarray(groups[column]),
            sample_params={"sample_weight": weight},
        ).by_group
        keys = [entry["key"] for entry in report[column]]
        assert keys == sorted(set(groups[column]))
        for entry in report[column]:
            mine = np.asarray(groups[column]) == entry["key"]
            assert entry["count"] == mine.sum()
            assert entry["weight"] == pytest.approx(weight[mine].sum(), rel=TOLERANCE)
            assert entry["metrics"]["accuracy"] == pytest.approx(
                accuracy[entry["key"]], rel=TOLERANCE
            )
            assert entry["metrics"]["log_loss"] == pytest.approx(
                losses["log_loss"][entry["key"]], rel=1e-9
            )
            for name in ("ce", "total"):
                column_values = batch.columns[name].numpy()
                want = (weight * column_values)[mine].sum() / weight[mine].sum()
                assert entry["reduced"][name] == pytest.approx(want, rel=TOLERANCE)
            for name in ("pll", "pbs", "brier"):
                column_values = batch.columns[name].numpy()
                want = (weight * column_values)[mine].sum() / weight[mine].sum()
                assert entry["metrics"][name] == pytest.approx(want, rel=TOLERANCE)


def test_binary_brier_per_slice_is_twice_scikit_learns() -> None:
    """The paper's Brier sums over classes: with two classes, twice scikit-learn's
    ``brier_score_loss`` of the positive class, per slice as in Fairlearn's frame."""
    logits, labels, weight, groups = dataset(2, 500, 2)
    batch = score_batch(logits, labels, F64, sample_weight=weight, groups=groups)
    assert batch.sums.groups is not None
    report = group_report(batch.sums.groups, batch.sums, "mean", weighted=True)
    frame = MetricFrame(
        metrics=brier_score_loss,
        y_true=labels,
        y_pred=softmax(logits)[:, 1],
        sensitive_features=np.asarray(groups["language"]),
        sample_params={"sample_weight": weight},
    )
    for entry in report["language"]:
        want = 2 * frame.by_group[entry["key"]]
        assert entry["metrics"]["brier"] == pytest.approx(want, rel=1e-12)


def test_keys_are_kept_as_given_and_ordered() -> None:
    logits, labels, _, _ = dataset(3, 6, 3)
    batch = score_batch(
        logits,
        labels,
        groups={"site": [1000, -3, 7, 7, 1000, -3], "name": ["é", "B", "a", "é", "a", "B"]},
    )
    assert batch.sums.groups is not None
    assert batch.sums.groups["site"].keys == (-3, 7, 1000)
    assert batch.sums.groups["name"].keys == ("B", "a", "é")  # code point order
    assert [s.count for s in batch.sums.groups["site"].sums] == [2, 2, 2]


def chunked(
    candidates: dict[str, Any],
    labels: Any,
    weight: Any,
    groups: dict[str, Any],
    bootstrap: Bootstrap,
    size: int,
) -> list[ScoreSums]:
    """Each candidate's sums merged from chunks of ``size`` rows scored together, with the
    dataset's key counts."""
    counts = {}
    for name, keys in groups.items():
        found, number = np.unique(np.asarray(keys), return_counts=True)
        counts[name] = {"keys": found.tolist(), "counts": number.tolist()}
    parts = []
    for start in range(0, labels.shape[0], size):
        rows = slice(start, start + size)
        chunk_groups = {name: list(keys[rows]) for name, keys in groups.items()}
        batches = [
            score_batch(
                z[rows],
                labels[rows],
                sample_weight=weight[rows],
                groups=chunk_groups,
                group_counts=counts,
            )
            for z in candidates.values()
        ]
        parts.append([b.sums for b in with_replicates(batches, bootstrap, start)])
    return [reduce(ScoreSums.merge, sums) for sums in zip(*parts, strict=True)]


def close(got: Any, want: Any, where: str = "") -> None:
    if isinstance(want, dict):
        assert set(got) == set(want), where
        for key in want:
            close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for k, (g, w) in enumerate(zip(got, want, strict=True)):
            close(g, w, f"{where}[{k}]")
    elif isinstance(want, float) and not (want is None or math.isnan(want)):
        assert got == pytest.approx(want, rel=TOLERANCE, abs=TOLERANCE), where
    elif isinstance(want, float):
        assert got is None or math.isnan(got), where
    else:
        assert got == want, where


def rare_keys(n: int, seed: int) -> tuple[dict[str, Any], dict[str, Any], Any, Any]:
    """Two candidates and groups whose keys ``early`` and ``late`` sit in the first and last
    rows only, so most chunks of 700 lack them."""
    logits, labels, weight, groups = dataset(seed, n, 3)
    language = np.asarray(groups["language"], dtype=object)
    language[:40] = "early"
    language[-30:] = "late"
    other = logits + np.random.default_rng(seed + 1).normal(size=logits.shape)
    return (
        {"a": logits, "b": other},
        {"language": language, "source": np.asarray(groups["source"])},
        labels,
        weight,
    )


def pair_differences(whole: list[BatchScores], sums: list[ScoreSums]) -> list[dict[str, Any]]:
    """The core's differences of candidates a and b, from ``sums`` (the discordant counts
    from the whole batches' columns)."""
    correct = [b.columns["correct"] for b in whole]
    return differences(["a", "b"], sums, correct, whole[0].columns["counted"], 0.95)


def test_chunks_with_keys_missing_merge_into_one_batchs_numbers() -> None:
    candidates, groups, labels, weight = rare_keys(2_500, 4)
    bootstrap = Bootstrap(replicates=200, seed=2**64 - 5)
    whole = with_replicates(
        [score_batch(z, labels, sample_weight=weight, groups=groups) for z in candidates.values()],
        bootstrap,
    )
    merged = chunked(candidates, labels, weight, groups, bootstrap, 700)
    for batch, sums in zip(whole, merged, strict=True):
        assert batch.sums.groups is not None
        assert sums.groups is not None
        want = group_report(batch.sums.groups, batch.sums, "mean", True, 0.95)
        close(group_report(sums.groups, sums, "mean", True, 0.95), want, "groups")
        assert want["language"][0]["key"] == "de"
        assert {e["key"] for e in want["language"]} == {"de", "en", "fr", "ja", "early", "late"}
    want_pairs = pair_differences(whole, [b.sums for b in whole])
    got_pairs = pair_differences(whole, merged)
    close(got_pairs[0]["groups"], want_pairs[0]["groups"], "differences")
    # the tests are not vacuous: some keys' p-values are small, every one is a number
    found = want_pairs[0]["groups"]["language"]
    assert all(e["criteria"]["total"]["p_value"] is not None for e in found)
    assert min(e["criteria"]["total"]["p_adjusted"] for e in found) < 0.05


def test_the_client_in_chunks_of_700_rows_gives_one_requests_slices() -> None:
    candidates, groups, labels, weight = rare_keys(2_100, 5)
    bootstrap = Bootstrap(replicates=150, seed=9)
    with Client("http://fake", transport=scripted([], []), max_chunk_rows=700) as client:
        scored = client.score(
            candidates["a"], labels, sample_weight=weight, groups=groups, bootstrap=bootstrap
        )
        compared = client.compare(
            candidates, labels, sample_weight=weight, groups=groups, bootstrap=bootstrap
        )
    assert scored.chunks == 3
    whole = with_replicates(
        [score_batch(z, labels, sample_weight=weight, groups=groups) for z in candidates.values()],
        bootstrap,
    )
    one = score_batch(
        candidates["a"], labels, sample_weight=weight, groups=groups, bootstrap=bootstrap
    )
    assert one.sums.groups is not None
    want = group_report(one.sums.groups, one.sums, "mean", True, 0.95)
    close(scored.groups, want, "score")
    for result, batch in zip(compared.candidates, whole, strict=True):
        assert batch.sums.groups is not None
        close(result.groups, group_report(batch.sums.groups, batch.sums, "mean", True, 0.95))
    want_pairs = pair_differences(whole, [b.sums for b in whole])
    close(compared.differences[0]["groups"], want_pairs[0]["groups"], "differences")


def _zeros(size: int) -> str:
    return base64.b64encode(bytes(size)).decode()


def body(n: int = 40, **extra: Any) -> dict[str, Any]:
    rng = np.random.default_rng(6)
    return {
        "logits": rng.normal(size=(n, 3)).tolist(),
        "labels": rng.integers(0, 3, n).tolist(),
        "per_sample": False,
        **extra,
    }


@pytest.mark.anyio
async def test_score_and_compare_answer_each_key(client: httpx.AsyncClient) -> None:
    keys = ["b", "a"] * 19 + ["solo", "b"]
    sites = base64.b64encode((np.arange(40, dtype="<i4") % 3).tobytes()).decode()
    request = body(groups={"g": keys, "site": {"dtype": "int32", "shape": [40], "data": sites}})
    request["bootstrap"] = {"replicates": 100, "seed": 3}
    response = await client.post("/score", json=request)
    assert response.status_code == 200, response.text
    found = response.json()["groups"]
    assert [e["key"] for e in found["g"]] == ["a", "b", "solo"]
    assert [e["key"] for e in found["site"]] == [0, 1, 2]
    assert [e["count"] for e in found["g"]] == [19, 20, 1]
    solo = found["g"][2]
    for criterion in CRITERIA:  # one item: no interval, no test, and a note saying why
        assert solo["intervals"][criterion]["note"] == FEW_ITEMS
        assert solo["vs_rest"][criterion]["p_value"] is None
        assert solo["vs_rest"][criterion]["p_adjusted"] is None
        assert found["g"][0]["vs_rest"][criterion]["p_adjusted"] is not None
    compare = {k: v for k, v in request.items() if k != "logits"}
    compare["candidates"] = [
        {"name": "a", "logits": request["logits"]},
        {"name": "b", "logits": request["logits"][::-1]},
    ]
    compared = (await client.post("/compare", json=compare)).json()
    pair = compared["differences"][0]["groups"]
    assert [e["key"] for e in pair["g"]] == ["a", "b", "solo"]
    assert pair["g"][2]["criteria"]["total"]["p_value"] is None
    assert compared["candidates"][0]["groups"] == found


ZEROS_320 = base64.b64encode(bytes(320)).decode()
BAD_GROUPS: list[tuple[Any, list[str | int], str]] = [
    ({"lang": ["de"] * 39}, ["groups", "lang"], "one key per item (40), but got 39"),
    ({"lang": ["de"] * 3 + [None] + ["de"] * 36}, ["groups", "lang", 3], "got null"),
    ({"lang": ["de"] * 5 + [1] + ["de"] * 34}, ["groups", "lang", 5], "a string, as the first"),
    ({"lang": [1] * 5 + ["de"] + [1] * 34}, ["groups", "lang", 5], "an integer, as the first"),
    ({"lang": [True] * 40}, ["groups", "lang", 0], "a string or an integer"),
    ({"lang": [[1]] * 40}, ["groups", "lang", 0], "a string or an integer"),
    ({"lang": ["de"] * 39 + ["\ud800"]}, ["groups", "lang", 39], "lone surrogate"),
    ({"lang": "de"}, ["groups", "lang"], "an array of keys"),
    ({}, ["groups"], "got 0 columns"),
    ({f"c{k}": [0] * 40 for k in range(9)}, ["groups"], "1 to 8 columns"),
    ({"x" * 65: [0] * 40}, ["groups"], "1 to 64 characters"),
    ([1] * 40, ["groups"], "an object of 1 to 8 columns"),
    ({"lang": [2**63] * 40}, ["groups", "lang", 0], "64-bit integer"),
    ({"lang": [1, 2**70] * 20}, ["groups", "lang", 1], "past the 64-bit integers"),
    ({"lang": [1, -(2**63) - 1] * 20}, ["groups", "lang", 1], "past the 64-bit integers"),
    (
        {
            "lang": {
                "dtype": "int64",
                "shape": [40, 1],
                "data": base64.b64encode(bytes(320)).decode(),
            }
        },
        ["groups", "lang"],
        "a one-dimensional array, but got shape [40, 1]",
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("groups", "loc", "phrase"), BAD_GROUPS)
async def test_bad_groups_get_422_naming_column_and_position(
    client: httpx.AsyncClient, groups: Any, loc: list[str | int], phrase: str
) -> None:
    for path in ("/score", "/compare"):
        request = body(groups=groups)
        if path == "/compare":
            request["candidates"] = [{"name": "a", "logits": request.pop("logits")}]
        raw = json.dumps(request).encode()  # ASCII: a lone surrogate as its escape
        response = await client.post(path, content=raw, headers=JSON)
        assert response.status_code == 422, response.text
        [error] = response.json()["errors"]
        assert error["loc"] == loc, error
        assert phrase in error["msg"], error
    assert (await client.post("/score", json=body(groups={"g": [0] * 40}))).status_code == 200


@pytest.mark.anyio
async def test_group_counts_without_groups_and_keys_absent_here(client: httpx.AsyncClient) -> None:
    """group_counts alone is a 422; keys it counts that no item here holds have sums (for the
    pseudo-slices) but no entry in the answer."""
    lone = await client.post("/score", json=body(group_counts={"g": {"keys": [0], "counts": [1]}}))
    assert lone.status_code == 422
    assert lone.json()["errors"][0]["loc"] == ["group_counts"]
    counts = {"g": {"keys": ["a", "b", "elsewhere"], "counts": [20, 20, 5]}}
    request = body(groups={"g": ["a", "b"] * 20}, group_counts=counts)
    request["bootstrap"] = {"replicates": 20, "replicate_sums": True}
    answer = (await client.post("/score", json=request)).json()
    assert [e["key"] for e in answer["groups"]["g"]] == ["a", "b"]
    assert answer["sums"]["groups"]["g"]["keys"] == ["a", "b", "elsewhere"]
    assert answer["sums"]["groups"]["g"]["seen"] == [20, 20, 0]


@pytest.mark.anyio
async def test_too_many_keys_are_refused_with_the_limit(client: httpx.AsyncClient) -> None:
    n = 10_001
    request = body(n=n, groups={"user": list(range(n))})
    response = await client.post("/score", json=request)
    assert response.status_code == 422, response.text[:300]
    assert "at most 10000 distinct keys" in response.json()["detail"]
    few = body(groups={"g": [k % 20 for k in range(40)]}, bootstrap={"replicates": 10_000})
    response = await client.post("/score", json=few)
    assert response.status_code == 422
    assert "keys x replicates x (9 + 3 x ece_bins)" in response.json()["detail"]
    bins = body(groups={"g": [k % 2 for k in range(40)]}, bootstrap={"replicates": 1_000})
    response = await client.post("/score", json={**bins, "ece_bins": 1_000})
    assert response.status_code == 422  # the bins count: 2 x 1,000 x 3,009 sums
    n = 110_000  # 2 keys x 10,000 replicates x 110,000 items: past the work a request may do
    rows = {"logits": {"dtype": "float32", "shape": [n, 2], "data": _zeros(n * 8)}}
    labels = {"dtype": "int32", "shape": [n], "data": _zeros(n * 4)}
    work = {**rows, "labels": labels, "per_sample": False, "groups": {"g": [0, 1] * (n // 2)}}
    response = await client.post("/score", json={**work, "bootstrap": {"replicates": 10_000}})
    assert response.status_code == 422
    assert "send at most 107,374 items a request" in response.json()["detail"]
    fine = body(n=2_000, groups={"user": list(range(2_000))})
    response = await client.post("/score", json=fine)
    assert response.status_code == 200
    assert len(response.json()["groups"]["user"]) == 2_000


BAD_COUNTS: list[tuple[Any, str]] = [
    ({"g": {"keys": [f"k{k}" for k in range(10_001)], "counts": [1] * 10_001}}, "at most 10000"),
    ({"g": {"keys": ["a", "b"], "counts": [20, 20], "x": 1}}, "and nothing else"),
    ({"g": {"keys": ["a", None], "counts": [20, 20]}}, "`group_counts.g.keys[1]`"),
    ({"g": {"keys": ["a", "b"], "counts": [10**30, 20]}}, "integers in [1, 2**63)"),
    ({"other": {"keys": ["a"], "counts": [40]}}, "the columns of `groups`"),
    ({"g": {"keys": ["a", "b"], "counts": [1, 2]}}, "at least 20 times"),
    ({"g": {"keys": ["a", "a"], "counts": [30, 30]}}, "unique"),
    ({"g": {"keys": ["a", "b"], "counts": [30, 0]}}, "integers in [1, 2**63)"),
    ({"g": {"keys": ["a", 1], "counts": [30, 30]}}, "to be text"),
    ({"g": {"keys": [["a"]], "counts": [30]}}, "to be text"),
    ({"g": ["a"]}, "{keys: [...], counts: [...]}"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("counts", "phrase"), BAD_COUNTS)
async def test_bad_group_counts_get_422(
    client: httpx.AsyncClient, counts: Any, phrase: str
) -> None:
    request = body(groups={"g": ["a", "b"] * 20}, group_counts=counts)
    response = await client.post("/score", json=request)
    assert response.status_code == 422, response.text
    assert phrase in response.json()["detail"]
    assert response.json()["errors"][0]["loc"][0] == "group_counts"


def test_slice_tests_keep_their_promise_by_simulation() -> None:
    """With no true difference, slice-versus-rest p < 0.05 in at most 5% of trials (400
    trials: a standard error of 1.1%, so 3 of them allow 8.3%) for slices of 5, 10 and 100
    items, and so does any Holm-adjusted p of ten slices; a real paired difference at N = 2,000
    is found."""
    result = simulate(trials=400)
    SUMMARY_TABLES["slice tests (scripts/slice_validity.py)"] = result.table()
    assert result.worst() <= 0.083, result.table()
    assert result.power >= 0.8, result.table()


def test_the_client_sizes_bootstrapped_chunks_by_the_work_a_request_may_do(monkeypatch) -> None:
    """Items x keys x replicates is bounded per request; the client's chunks stay under it and
    still merge into one batch's numbers."""
    logits, labels, weight, groups = dataset(7, 2_100, 3)
    bootstrap = Bootstrap(replicates=50, seed=1)
    keys = len(set(groups["language"])) + len(set(groups["source"]))
    one = score_batch(logits, labels, sample_weight=weight, groups=groups, bootstrap=bootstrap)
    assert one.sums.groups is not None
    monkeypatch.setattr("fairloss.slices.BOOTSTRAP_WORK", 400 * keys * 50)
    with pytest.raises(InputError, match="send at most 400 items a request"):
        score_batch(logits, labels, groups=groups, bootstrap=bootstrap)
    seen: list[httpx.Request] = []
    with Client("http://fake", transport=scripted([], seen)) as client:
        scored = client.score(
            logits, labels, sample_weight=weight, groups=groups, bootstrap=bootstrap
        )
    assert scored.chunks == 6
    assert max(len(orjson.loads(r.content)["groups"]["language"]) for r in seen) <= 400
    close(scored.groups, group_report(one.sums.groups, one.sums, "mean", True, 0.95), "score")


JSON_VALUES = json_values(nan=False, max_list=8, max_leaves=30)
KEY_COLUMNS = st.lists(st.integers(-3, 3), min_size=6, max_size=6) | st.lists(
    st.sampled_from(["a", "b", "é", ""]), min_size=6, max_size=6
)


@st.composite
def where_fields(draw: st.DrawFn) -> dict[str, Any]:
    """groups, group_counts and per_class: well-formed, nearly so, or any JSON at all."""
    columns = st.dictionaries(
        st.text(min_size=0, max_size=3), KEY_COLUMNS | JSON_VALUES, max_size=3
    )
    fields: dict[str, Any] = {"groups": draw(columns | JSON_VALUES)}
    if draw(st.booleans()):
        fields["group_counts"] = draw(JSON_VALUES)
    if draw(st.booleans()):
        fields["per_class"] = draw(st.booleans() | JSON_VALUES)
    if draw(st.booleans()):
        fields["bootstrap"] = {"replicates": draw(st.integers(1, 30))}
    return fields


async def post_both(fields: dict[str, Any]) -> list[httpx.Response]:
    logits = [[2.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 2.0]] * 2
    labels = [0, 1, 1, 0, 2, 0]
    async with in_process(Settings()) as client:
        score = await client.post("/score", json={"logits": logits, "labels": labels, **fields})
        compare = {"labels": labels, "candidates": [{"name": "a", "logits": logits}], **fields}
        answers = [score, await client.post("/compare", json=compare)]
        answers.append(await client.get("/healthz"))
        return answers


@settings(max_examples=60, deadline=None)
@given(fields=where_fields())
def test_any_groups_group_counts_or_per_class_is_answered_never_a_500(
    fields: dict[str, Any],
) -> None:
    """Whatever JSON the new fields hold, /score and /compare answer 200 or a 422 that names a
    field, and the server keeps serving."""
    score, compare, health = anyio.run(post_both, fields)
    for response in (score, compare):
        assert response.status_code in (200, 422), response.text
        if response.status_code == 422:
            assert response.json()["errors"][0]["loc"], response.text
    assert health.status_code == 200


@pytest.mark.anyio
async def test_the_answer_warns_of_logits_that_look_like_probabilities(
    client: httpx.AsyncClient,
) -> None:
    p = np.random.default_rng(2).dirichlet(np.ones(3), size=12).tolist()
    labels = [0, 1, 2] * 4
    scored = (await client.post("/score", json={"logits": p, "labels": labels})).json()
    assert scored["warnings"][0].startswith("`logits` look like probabilities")
    request = {"labels": labels, "candidates": [{"name": "a", "logits": p}]}
    compared = (await client.post("/compare", json=request)).json()
    assert compared["candidates"][0]["warnings"] == scored["warnings"]
    plain = (await client.post("/score", json={"probabilities": p, "labels": labels})).json()
    assert "warnings" not in plain
