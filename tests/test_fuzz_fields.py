"""Any JSON value in any field of any request never reaches a 5xx (Hypothesis): every field of
``/score``, ``/compare`` and a candidate, and of an Open Inference Protocol request, its inputs
and their parameters, is set to arbitrary JSON (nested lists and objects, numbers past 64 bits,
NaN, text) or a typed-array-like object, a few at a time, and the app keeps answering a good
request after each. The counts of requests tried and 5xx seen are printed at the end of the
run and written to ``artifacts/fuzz-fields.txt``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from service.request_schemas import Candidate, CompareRequest, ScoreRequest
from service.settings import Settings
from tests.conftest import README_EXAMPLE, SUMMARY_TABLES, in_process
from tests.strategies import json_values

OIP = "/v2/models/fairloss/infer"
COUNTS = Path(__file__).resolve().parent.parent / "artifacts" / "fuzz-fields.txt"
SEEN = {"requests": 0, "5xx": 0}

JSON = json_values(nan=True, max_list=4, max_leaves=16)
TYPED = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(["float32", "float64", "int32", "int64", "bool", "float16", "x"]),
        "shape": st.lists(st.integers(-2, 2**40) | st.sampled_from([0, 1, 2, 2**63]), max_size=4),
        "data": st.text(alphabet="AB=+/-_ \x00", max_size=16),
    }
)
VALUES = JSON | TYPED
OIP_REQUEST = {
    "inputs": [
        {
            "name": "logits",
            "datatype": "FP32",
            "shape": [2, 3],
            "data": [0.3, 0.3, 0.4, 0.5, 0.5, 0],
        },
        {"name": "labels", "datatype": "INT64", "shape": [2], "data": [0, 0]},
    ]
}
TARGETS = (
    [("score", name) for name in ScoreRequest.model_fields]
    + [("compare", name) for name in CompareRequest.model_fields]
    + [("candidate", name) for name in Candidate.model_fields]
    + [("oip", name) for name in ("id", "inputs", "outputs", "parameters", "model_name")]
    + [("tensor", name) for name in ("name", "datatype", "shape", "data", "parameters")]
    + [("oip-parameter", name) for name in ("reduction", "bootstrap", "binary_data_output", "x")]
)


def _body(target: str, field: str, value: Any) -> tuple[str, dict[str, Any]]:
    logits, labels = README_EXAMPLE["logits"], README_EXAMPLE["labels"]
    if target == "score":
        return "/score", {"logits": logits, "labels": labels, field: value}
    candidate = {"name": "a", "logits": logits}
    if target == "compare":
        return "/compare", {"labels": labels, "candidates": [candidate], field: value}
    if target == "candidate":
        return "/compare", {"labels": labels, "candidates": [{**candidate, field: value}]}
    request = json.loads(json.dumps(OIP_REQUEST))
    if target == "oip":
        request[field] = value
    elif target == "tensor":
        request["inputs"][0][field] = value
    else:
        request["parameters"] = {field: value}
    return OIP, request


async def _post_all(changes: list[tuple[tuple[str, str], Any]]) -> list[int]:
    statuses = []
    async with in_process(Settings()) as client:
        for (target, field), value in changes:
            path, body = _body(target, field, value)
            content = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
            headers = {"Content-Type": "application/json"}
            statuses.append((await client.post(path, content=content, headers=headers)).status_code)
            statuses.append((await client.post("/score", json=README_EXAMPLE)).status_code)
    return statuses


@settings(max_examples=250, deadline=None)
@given(changes=st.lists(st.tuples(st.sampled_from(TARGETS), VALUES), min_size=1, max_size=6))
def test_no_value_in_any_field_reaches_a_5xx(changes: list[tuple[tuple[str, str], Any]]) -> None:
    statuses = anyio.run(_post_all, changes)
    SEEN["requests"] += len(statuses)
    SEEN["5xx"] += sum(status >= 500 for status in statuses)
    said = f"requests tried: {SEEN['requests']}, 5xx seen: {SEEN['5xx']}"
    SUMMARY_TABLES["any JSON in any request field (tests/test_fuzz_fields.py)"] = said
    COUNTS.parent.mkdir(exist_ok=True)
    COUNTS.write_text(said + "\n")
    assert all(status < 500 for status in statuses), statuses
    assert all(status == 200 for status in statuses[1::2])  # the good request, after each
