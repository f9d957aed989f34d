"""Every bad input to /score and /compare: a problem+json answer with the right status and place.

Each row of API.md's error table has a test here; `assert_problem` also checks that no error body
leaks a traceback, a file path or an internal module name.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import orjson
import pytest

from service.settings import Settings
from tests.conftest import README_EXAMPLE, assert_no_leak

pytestmark = pytest.mark.anyio

JSON = {"content-type": "application/json"}
LEAKS = ("Traceback", "/work", ".py", "service.", "fairloss.")
GOOD_ROWS = '"logits": [[1.0, 2.0], [3.0, 0.5]]'


def assert_problem(
    response: httpx.Response,
    status: int,
    *,
    loc: list[str | int] | None = None,
    kind: str | None = None,
    detail: str | None = None,
) -> dict[str, Any]:
    """Check the problem+json shape; ``loc``/``kind`` are those of the first validation error."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    for leak in LEAKS:
        assert leak not in response.text, response.text
    assert_no_leak(response.text)
    body: dict[str, Any] = response.json()
    assert set(body) <= {"type", "title", "status", "detail", "errors"}
    assert body["status"] == status
    assert body["type"].startswith("/problems/")
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    if detail is not None:
        assert detail in body["detail"], body["detail"]
    if status == 422:
        assert body["title"] == "Invalid request"
        assert body["errors"], body
        for error in body["errors"]:
            assert set(error) == {"loc", "msg", "type"}
            assert isinstance(error["msg"], str)
    if loc is not None:
        assert body["errors"][0]["loc"] == loc, body["errors"]
    if kind is not None:
        assert body["errors"][0]["type"] == kind, body["errors"]
    return body


def score_body(fields: str) -> bytes:
    """A /score body from raw JSON members, so that invalid JSON can be written too."""
    return ("{" + fields + "}").encode()


# (id, raw body, status, loc of the first error, error type, fragment of the detail)
BAD_SCORE_BODIES: list[tuple[str, bytes, int, list[str | int] | None, str | None, str]] = [
    ("not_json", b'{"logits": [[1, 2]', 400, None, None, "not valid JSON"),
    ("empty_body", b"", 400, None, None, "not valid JSON"),
    ("trailing_data", b'{"labels": [0]} {}', 400, None, None, "not valid JSON"),
    ("array", b"[[1, 2], [3, 4]]", 400, None, None, "must be a JSON object"),
    ("string", b'"logits"', 400, None, None, "must be a JSON object"),
    ("number", b"42", 400, None, None, "must be a JSON object"),
    ("null", b"null", 400, None, None, "must be a JSON object"),
    ("invalid_utf8", b'{"logits": "\xff\xfe", "labels": [0]}', 400, None, None, "not UTF-8"),
    (
        "nan",
        score_body('"logits": [[1.0, 2.0], [NaN, 0.5]], "labels": [0, 1]'),
        422,
        ["logits", 1, 0],
        "not_finite",
        "logits[1][0] is nan",
    ),
    (
        "infinity",
        score_body('"logits": [[1.0, Infinity], [3.0, 0.5]], "labels": [0, 1]'),
        422,
        ["logits", 0, 1],
        "not_finite",
        "logits[0][1] is inf",
    ),
    (
        "minus_infinity",
        score_body('"logits": [[1.0, 2.0], [3.0, -Infinity]], "labels": [0, 1]'),
        422,
        ["logits", 1, 1],
        "not_finite",
        "logits[1][1] is -inf",
    ),
    (
        "overflowing_literal",
        score_body('"logits": [[1.0, 2.0], [3.0, 1e400]], "labels": [0, 1]'),
        422,
        ["logits", 1, 1],
        "not_finite",
        "logits[1][1]",
    ),
    (
        "too_large_for_float32",
        score_body('"logits": [[1.0, 2.0], [3.0, -1e39]], "labels": [0, 1]'),
        422,
        ["logits", 1, 1],
        "too_large_for_precision",
        "too large for float32",
    ),
    (
        "ragged_longer",
        score_body('"logits": [[1.0, 2.0], [3.0, 0.5, 1.0]], "labels": [0, 1]'),
        422,
        ["logits", 1],
        "ragged_row",
        "logits[1] has 3 numbers, row 0 has 2",
    ),
    (
        "ragged_shorter",
        score_body('"logits": [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [3.0, 0.5]], "labels": [0, 1, 2]'),
        422,
        ["logits", 2],
        "ragged_row",
        "logits[2] has 2 numbers, row 0 has 3",
    ),
    (
        "row_is_a_number",
        score_body('"logits": [[1.0, 2.0], 3.0], "labels": [0, 1]'),
        422,
        ["logits", 1],
        "not_a_row",
        "got the number 3.0",
    ),
    (
        "first_row_is_a_number",  # read as binary scores (N), one of which is not a number
        score_body('"logits": [3.0, [1.0, 2.0]], "labels": [0, 1]'),
        422,
        ["logits", 1],
        "not_a_number",
        "Expected a number at logits[1], but got an array",
    ),
    (
        "row_is_an_object",
        score_body('"logits": [[1.0, 2.0], {"a": 1}], "labels": [0, 1]'),
        422,
        ["logits", 1],
        "not_a_row",
        "got an object",
    ),
    (
        "binary_scores_with_a_label_past_class_1",
        score_body('"logits": [1.0, 2.0], "labels": [0, 2]'),
        422,
        ["labels", 1],
        "label_out_of_range",
        "Expected labels in [0, 2), but labels[1] is 2",
    ),
    (
        "k_dim_logits_with_flat_labels",
        score_body('"logits": [[[1.0], [2.0]], [[3.0], [0.5]]], "labels": [0, 1]'),
        422,
        ["labels"],
        "bad_length",
        "Expected labels of shape [2, 1], but got [2]",
    ),
    (
        "nested_array_inside_a_row",
        score_body('"logits": [[1.0, 2.0], [3.0, [0.5]]], "labels": [0, 1]'),
        422,
        ["logits", 1, 1],
        "not_a_number",
        "got an array",
    ),
    (
        "logits_not_an_array",
        score_body('"logits": {"a": [1, 2]}, "labels": [0]'),
        422,
        ["logits"],
        "not_an_array",
        "array of rows",
    ),
    (
        "empty_batch",
        score_body('"logits": [], "labels": []'),
        422,
        ["logits"],
        "empty_batch",
        "at least one row",
    ),
    (
        "single_class",
        score_body('"logits": [[1.0], [2.0]], "labels": [0, 0]'),
        422,
        ["logits", 0],
        "too_few_classes",
        "at least 2 classes",
    ),
    (
        "no_class",
        score_body('"logits": [[], []], "labels": [0, 0]'),
        422,
        ["logits", 0],
        "too_few_classes",
        "at least 2 classes",
    ),
    (
        "boolean_logits",
        score_body('"logits": [[true, false], [false, true]], "labels": [0, 1]'),
        422,
        ["logits", 0, 0],
        "not_a_number",
        "got a boolean",
    ),
    (
        "boolean_among_numbers",
        score_body('"logits": [[1.0, 2.0], [3.0, true]], "labels": [0, 1]'),
        422,
        ["logits", 1, 1],
        "not_a_number",
        "got a boolean",
    ),
    (
        "string_logit",
        score_body('"logits": [[1.0, "2.0"], [3.0, 0.5]], "labels": [0, 1]'),
        422,
        ["logits", 0, 1],
        "not_a_number",
        "got a string",
    ),
    (
        "null_logit",
        score_body('"logits": [[1.0, 2.0], [null, 0.5]], "labels": [0, 1]'),
        422,
        ["logits", 1, 0],
        "not_a_number",
        "got null",
    ),
    (
        "float_label",
        score_body(GOOD_ROWS + ', "labels": [0, 1.0]'),
        422,
        ["labels", 1],
        "not_an_integer",
        "got the number 1.0",
    ),
    (
        "fractional_label",
        score_body(GOOD_ROWS + ', "labels": [0.5, 1]'),
        422,
        ["labels", 0],
        "not_an_integer",
        "got the number 0.5",
    ),
    (
        "boolean_label",
        score_body(GOOD_ROWS + ', "labels": [0, true]'),
        422,
        ["labels", 1],
        "not_an_integer",
        "got a boolean",
    ),
    (
        "string_label",
        score_body(GOOD_ROWS + ', "labels": ["0", 1]'),
        422,
        ["labels", 0],
        "not_an_integer",
        "got a string",
    ),
    (
        "null_label",
        score_body(GOOD_ROWS + ', "labels": [0, null]'),
        422,
        ["labels", 1],
        "not_an_integer",
        "got null",
    ),
    (
        "nested_labels_for_2d_logits",
        score_body(GOOD_ROWS + ', "labels": [[0], [1]]'),
        422,
        ["labels"],
        "bad_length",
        "Expected labels of shape [2], but got [2, 1]",
    ),
    (
        "labels_not_an_array",
        score_body(GOOD_ROWS + ', "labels": {"0": 1}'),
        422,
        ["labels"],
        "not_an_array",
        "array of integers",
    ),
    (
        "label_out_of_range",
        score_body(GOOD_ROWS + ', "labels": [0, 2]'),
        422,
        ["labels", 1],
        "label_out_of_range",
        "Expected labels in [0, 2), but labels[1] is 2",
    ),
    (
        "negative_label",
        score_body(GOOD_ROWS + ', "labels": [-1, 0]'),
        422,
        ["labels", 0],
        "label_out_of_range",
        "labels[0] is -1",
    ),
    (
        "label_of_2_to_the_64",
        score_body(GOOD_ROWS + ', "labels": [0, 18446744073709551616]'),
        422,
        ["labels", 1],
        "label_out_of_range",
        "Expected labels in [0, 2), but labels[1] is 1.8446744073709552e+19",
    ),
    (
        "label_of_2_to_the_64_minus_1",
        score_body(GOOD_ROWS + ', "labels": [18446744073709551615, 0]'),
        422,
        ["labels", 0],
        "label_out_of_range",
        "Expected labels in [0, 2), but labels[0] is 18446744073709551615",
    ),
    (
        "label_below_int64",
        score_body(GOOD_ROWS + ', "labels": [0, -9223372036854775809]'),
        422,
        ["labels", 1],
        "label_out_of_range",
        "Expected labels in [0, 2), but labels[1] is -9.223372036854776e+18",
    ),
    (
        "label_beside_ignore_index",
        score_body(GOOD_ROWS + ', "labels": [-1, 3], "ignore_index": -1'),
        422,
        ["labels", 1],
        "label_out_of_range",
        "or equal to ignore_index -1, but labels[1] is 3",
    ),
    (
        "too_few_labels",
        score_body(GOOD_ROWS + ', "labels": [0]'),
        422,
        ["labels"],
        "bad_length",
        "Expected 2 labels, one per row, but got 1",
    ),
    (
        "too_many_labels",
        score_body(GOOD_ROWS + ', "labels": [0, 1, 0]'),
        422,
        ["labels"],
        "bad_length",
        "Expected 2 labels, one per row, but got 3",
    ),
    ("missing_logits", score_body('"labels": [0]'), 422, ["logits"], "missing", "'logits'"),
    ("missing_labels", score_body(GOOD_ROWS), 422, ["labels"], "missing", "'labels'"),
    ("empty_object", b"{}", 422, ["logits"], "missing", "'logits'"),
    (
        "unknown_field",
        score_body(GOOD_ROWS + ', "labels": [0, 1], "temperature": 2.0'),
        422,
        ["temperature"],
        "extra_forbidden",
        "temperature",
    ),
    (
        "misspelt_field",
        score_body(GOOD_ROWS + ', "labels": [0, 1], "smoothmax_beta": 5'),
        422,
        ["smoothmax_beta"],
        "extra_forbidden",
        "smoothmax_beta",
    ),
    (
        "zero_beta",
        score_body(GOOD_ROWS + ', "labels": [0, 1], "smooth_max_beta": 0'),
        422,
        ["smooth_max_beta"],
        "greater_than",
        "smooth_max_beta",
    ),
    (
        "negative_scaling_factor",
        score_body(GOOD_ROWS + ', "labels": [0, 1], "scaling_factor": -1.5'),
        422,
        ["scaling_factor"],
        "greater_than",
        "scaling_factor",
    ),
    (
        "nan_beta",
        score_body(GOOD_ROWS + ', "labels": [0, 1], "smooth_max_beta": NaN'),
        422,
        ["smooth_max_beta"],
        "finite_number",
        "smooth_max_beta",
    ),
    (
        "infinite_scaling_factor",
        score_body(GOOD_ROWS + ', "labels": [0, 1], "scaling_factor": Infinity'),
        422,
        ["scaling_factor"],
        "finite_number",
        "scaling_factor",
    ),
    (
        "label_smoothing_above_one",
        score_body(GOOD_ROWS + ', "labels": [0, 1], "label_smoothing": 1.5'),
        422,
        ["label_smoothing"],
        "less_than_equal",
        "label_smoothing",
    ),
    (
        "negative_label_smoothing",
        score_body(GOOD_ROWS + ', "labels": [0, 1], "label_smoothing": -0.1'),
        422,
        ["label_smoothing"],
        "greater_than_equal",
        "label_smoothing",
    ),
    (
        "nan_label_smoothing",
        score_body(GOOD_ROWS + ', "labels": [0, 1], "label_smoothing": NaN'),
        422,
        ["label_smoothing"],
        None,
        "label_smoothing",
    ),
    (
        "string_number",
        score_body(GOOD_ROWS + ', "labels": [0, 1], "scaling_factor": "10"'),
        422,
        ["scaling_factor"],
        "float_type",
        "finite number larger than 0, but got a string",
    ),
    (
        "boolean_number",
        score_body(GOOD_ROWS + ', "labels": [0, 1], "smooth_max_beta": true'),
        422,
        ["smooth_max_beta"],
        "float_type",
        "finite number larger than 0, but got a boolean",
    ),
    (
        "float_ignore_index",
        score_body(GOOD_ROWS + ', "labels": [0, 1], "ignore_index": 1.0'),
        422,
        ["ignore_index"],
        "int_type",
        "ignore_index",
    ),
    (
        "boolean_ignore_index",
        score_body(GOOD_ROWS + ', "labels": [0, 1], "ignore_index": false'),
        422,
        ["ignore_index"],
        "int_type",
        "ignore_index",
    ),
    (
        "class_weights_too_short",
        score_body(GOOD_ROWS + ', "labels": [0, 1], "class_weights": [1.0]'),
        422,
        ["class_weights"],
        "bad_length",
        "Expected 2 class_weights, one per class, but got 1",
    ),
    (
        "class_weights_too_long",
        score_body(GOOD_ROWS + ', "labels": [0, 1], "class_weights": [1.0, 1.0, 1.0]'),
        422,
        ["class_weights"],
        "bad_length",
        "but got 3",
    ),
    (
        "negative_class_weight",
        score_body(GOOD_ROWS + ', "labels": [0, 1], "class_weights": [1.0, -0.5]'),
        422,
        ["class_weights", 1],
        "greater_than_equal",
        "class_weights[1]",
    ),
    (
        "nan_class_weight",
        score_body(GOOD_ROWS + ', "labels": [0, 1], "class_weights": [NaN, 1.0]'),
        422,
        ["class_weights", 0],
        "finite_number",
        "class_weights[0]",
    ),
    (
        "unknown_reduction",
        score_body(GOOD_ROWS + ', "labels": [0, 1], "reduction": "none"'),
        422,
        ["reduction"],
        "literal_error",
        "'mean' or 'sum'",
    ),
    (
        "float16_precision",
        score_body(GOOD_ROWS + ', "labels": [0, 1], "precision": "float16"'),
        422,
        ["precision"],
        "literal_error",
        "'float32' or 'float64'",
    ),
    (
        "unknown_device",
        score_body(GOOD_ROWS + ', "labels": [0, 1], "device": "tpu"'),
        422,
        ["device"],
        "unknown_device",
        "Unknown device 'tpu'",
    ),
    (
        "device_not_a_string",
        score_body(GOOD_ROWS + ', "labels": [0, 1], "device": 0'),
        422,
        ["device"],
        "string_type",
        "device",
    ),
    (
        "unknown_extra_column",
        score_body(GOOD_ROWS + ', "labels": [0, 1], "extra_columns": ["entropy"]'),
        422,
        ["extra_columns", 0],
        "literal_error",
        "extra_columns.0",
    ),
    (
        "zero_ece_bins",
        score_body(GOOD_ROWS + ', "labels": [0, 1], "ece_bins": 0'),
        422,
        ["ece_bins"],
        "greater_than_equal",
        "ece_bins",
    ),
    (
        "logits_too_far_apart_for_float32",
        score_body('"logits": [[1.0, 2.0], [3e38, -3e38]], "labels": [0, 1]'),
        422,
        ["logits", 1],
        "not_finite_result",
        'row 1 overflows float32 (logits too far apart or class weight too large); send "pre',
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "loc", "kind", "detail"),
    [pytest.param(*row[1:], id=row[0]) for row in BAD_SCORE_BODIES],
)
async def test_score_rejects_bad_body(
    client: httpx.AsyncClient,
    body: bytes,
    status: int,
    loc: list[str | int] | None,
    kind: str | None,
    detail: str,
) -> None:
    response = await client.post("/score", content=body, headers=JSON)
    problem = assert_problem(response, status, loc=loc, kind=kind, detail=detail)
    if status == 400:
        assert problem["title"] == "Bad request"
        assert "errors" not in problem


async def test_not_finite_error_names_the_element(client: httpx.AsyncClient) -> None:
    body = score_body('"logits": [[1.0, 2.0], [3.0, 0.5], [NaN, 1.0]], "labels": [0, 1, 0]')
    problem = assert_problem(await client.post("/score", content=body, headers=JSON), 422)
    assert problem["detail"] == "Expected finite numbers, but logits[2][0] is nan"
    assert problem["errors"] == [
        {"loc": ["logits", 2, 0], "msg": problem["detail"], "type": "not_finite"}
    ]


async def test_unknown_field_lists_every_unknown_field(client: httpx.AsyncClient) -> None:
    body = {**README_EXAMPLE, "temperature": 2.0, "weights": [1, 2, 3]}
    problem = assert_problem(await client.post("/score", json=body), 422)
    assert sorted(e["loc"] for e in problem["errors"]) == [["temperature"], ["weights"]]
    assert {e["type"] for e in problem["errors"]} == {"extra_forbidden"}


async def test_float64_takes_numbers_too_large_for_float32(client: httpx.AsyncClient) -> None:
    body = score_body(
        '"logits": [[1.0, 2.0], [3.0, -1e39]], "labels": [0, 1], "precision": "float64"'
    )
    response = await client.post("/score", content=body, headers=JSON)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["precision"] == "float64"
    assert result["per_sample"]["ce"][1] == pytest.approx(1e39 + 3.0, rel=1e-12)


async def test_float64_still_refuses_numbers_beyond_float64(client: httpx.AsyncClient) -> None:
    body = score_body('"logits": [[1.0, 1e400]], "labels": [0], "precision": "float64"')
    assert_problem(
        await client.post("/score", content=body, headers=JSON),
        422,
        loc=["logits", 0, 1],
        kind="not_finite",
    )


async def test_huge_beta_in_float32_is_a_clear_422(client: httpx.AsyncClient) -> None:
    body = {**README_EXAMPLE, "smooth_max_beta": 1e300}
    assert_problem(
        await client.post("/score", json=body),
        422,
        loc=["smooth_max_beta"],
        kind="not_finite_result",
        detail='"precision": "float64"',
    )
    response = await client.post("/score", json={**body, "precision": "float64"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
async def test_cuda_without_gpu_names_the_devices_that_exist(
    client: httpx.AsyncClient, device: str
) -> None:
    info = (await client.get("/info")).json()
    if info["devices"] != ["cpu"]:
        pytest.skip("this machine has a GPU")
    problem = assert_problem(
        await client.post("/score", json={**README_EXAMPLE, "device": device}),
        422,
        loc=["device"],
        kind="device_unavailable",
    )
    assert problem["detail"] == (
        f"Device {device!r} does not exist on this server. Devices here: cpu"
    )


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""],
)
async def test_score_refuses_other_content_types(
    client: httpx.AsyncClient, content_type: str
) -> None:
    body = json.dumps(README_EXAMPLE).encode()
    response = await client.post("/score", content=body, headers={"content-type": content_type})
    problem = assert_problem(response, 415)
    assert problem["title"] == "Unsupported media type"
    assert "application/json" in problem["detail"]


async def test_form_encoded_body_is_refused(client: httpx.AsyncClient) -> None:
    """What `curl -d` sends without a Content-Type header: the answer says which to send."""
    response = await client.post("/compare", data={"labels": "0"})
    assert_problem(
        response,
        415,
        detail="This endpoint takes application/json, not application/x-www-form-urlencoded: "
        "send the header Content-Type: application/json (curl's -d sends a form's type "
        "without -H 'Content-Type: application/json'), or none.",
    )


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json; charset=utf-8", "Application/JSON", "application/vnd.api+json"],
)
async def test_score_takes_json_and_missing_content_types(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    request = client.build_request("POST", "/score", content=json.dumps(README_EXAMPLE).encode())
    assert "content-type" not in request.headers
    if content_type is not None:
        request.headers["content-type"] = content_type
    response = await client.send(request)
    assert response.status_code == 200, response.text
    assert response.json()["n"] == 2


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post("/scores", json=README_EXAMPLE), 404)
    assert_problem(await client.get("/score"), 405)


# /compare

ROWS = [[1.0, 2.0], [3.0, 0.5]]


def candidate(name: str, logits: Any = ROWS) -> dict[str, Any]:
    return {"name": name, "logits": logits}


BAD_COMPARE_BODIES: list[tuple[str, dict[str, Any], list[str | int], str, str]] = [
    (
        "duplicate_names",
        {"labels": [0, 1], "candidates": [candidate("a"), candidate("b"), candidate("a")]},
        ["candidates", 2, "name"],
        "duplicate_name",
        "'a' appears twice",
    ),
    (
        "different_widths",
        {"labels": [0, 1], "candidates": [candidate("a"), candidate("b", [[1, 2, 3], [1, 2, 3]])]},
        ["candidates", 1, "logits"],
        "shape_mismatch",
        "candidates[1] is 2 x 3, candidates[0] is 2 x 2",
    ),
    (
        "different_lengths",
        {"labels": [0, 1], "candidates": [candidate("a"), candidate("b", [[1, 2]])]},
        ["candidates", 1, "logits"],
        "shape_mismatch",
        "candidates[1] is 1 x 2",
    ),
    (
        "empty_candidates",
        {"labels": [0, 1], "candidates": []},
        ["candidates"],
        "not_an_array",
        "non-empty array",
    ),
    (
        "missing_candidates",
        {"labels": [0, 1]},
        ["candidates"],
        "not_an_array",
        "non-empty array",
    ),
    (
        "candidates_not_a_list",
        {"labels": [0, 1], "candidates": candidate("a")},
        ["candidates"],
        "not_an_array",
        "non-empty array",
    ),
    (
        "candidate_without_name",
        {"labels": [0, 1], "candidates": [{"logits": ROWS}]},
        ["candidates", 0, "name"],
        "missing",
        "candidates.0.name: Field required",
    ),
    (
        "candidate_without_logits",
        {"labels": [0, 1], "candidates": [candidate("a"), {"name": "b"}]},
        ["candidates", 1, "logits"],
        "missing",
        "Field 'candidates[1].logits' is required (or 'probabilities' or 'log_probabilities' "
        "instead)",
    ),
    (
        "candidate_with_extra_key",
        {"labels": [0, 1], "candidates": [{**candidate("a"), "epoch": 3}]},
        ["candidates", 0, "epoch"],
        "extra_forbidden",
        "candidates.0.epoch: Extra inputs are not permitted",
    ),
    (
        "candidate_not_an_object",
        {"labels": [0, 1], "candidates": [ROWS]},
        ["candidates", 0],
        "bad_candidate",
        "candidates[0]",
    ),
    (
        "empty_name",
        {"labels": [0, 1], "candidates": [candidate("")]},
        ["candidates", 0, "name"],
        "bad_name",
        "non-empty string",
    ),
    (
        "numeric_name",
        {"labels": [0, 1], "candidates": [{"name": 7, "logits": ROWS}]},
        ["candidates", 0, "name"],
        "bad_name",
        "non-empty string",
    ),
    (
        "ragged_candidate",
        {"labels": [0, 1], "candidates": [candidate("a"), candidate("b", [[1, 2], [1, 2, 3]])]},
        ["candidates", 1, "logits", 1],
        "ragged_row",
        "candidates[1].logits[1] has 3 numbers",
    ),
    (
        "boolean_in_candidate",
        {"labels": [0, 1], "candidates": [candidate("a", [[1.0, True], [3.0, 0.5]])]},
        ["candidates", 0, "logits", 0, 1],
        "not_a_number",
        "got a boolean",
    ),
    (
        "missing_labels",
        {"candidates": [candidate("a")]},
        ["labels"],
        "missing",
        "'labels'",
    ),
    (
        "label_out_of_range",
        {"labels": [0, 5], "candidates": [candidate("a")]},
        ["labels", 1],
        "label_out_of_range",
        "labels[1] is 5",
    ),
    (
        "top_level_logits",
        {"labels": [0, 1], "logits": ROWS, "candidates": [candidate("a")]},
        ["logits"],
        "extra_forbidden",
        "logits",
    ),
    (
        "unknown_field",
        {"labels": [0, 1], "candidates": [candidate("a")], "baseline": "a"},
        ["baseline"],
        "extra_forbidden",
        "baseline",
    ),
    (
        "bad_parameter",
        {"labels": [0, 1], "candidates": [candidate("a")], "scaling_factor": 0},
        ["scaling_factor"],
        "greater_than",
        "scaling_factor",
    ),
    (
        "cuda_without_gpu",
        {"labels": [0, 1], "candidates": [candidate("a")], "device": "cuda:7"},
        ["device"],
        "device_unavailable",
        "Devices here: cpu",
    ),
]


@pytest.mark.parametrize(
    ("body", "loc", "kind", "detail"),
    [pytest.param(*row[1:], id=row[0]) for row in BAD_COMPARE_BODIES],
)
async def test_compare_rejects_bad_body(
    client: httpx.AsyncClient, body: dict[str, Any], loc: list[str | int], kind: str, detail: str
) -> None:
    response = await client.post("/compare", json=body)
    assert_problem(response, 422, loc=loc, kind=kind, detail=detail)


async def test_compare_names_the_nan_of_a_candidate(client: httpx.AsyncClient) -> None:
    body = (
        b'{"labels": [0, 1], "candidates": [{"name": "a", "logits": [[1, 2], [3, 0.5]]},'
        b' {"name": "b", "logits": [[1, 2], [NaN, 0.5]]}]}'
    )
    problem = assert_problem(
        await client.post("/compare", content=body, headers=JSON),
        422,
        loc=["candidates", 1, "logits", 1, 0],
        kind="not_finite",
    )
    assert problem["detail"] == "Expected finite numbers, but candidates[1].logits[1][0] is nan"


@pytest.mark.parametrize(
    "body", [b"[]", b'"x"', b"{", b"\xff"], ids=["array", "str", "cut", "utf8"]
)
async def test_compare_rejects_bodies_that_are_not_objects(
    client: httpx.AsyncClient, body: bytes
) -> None:
    assert_problem(await client.post("/compare", content=body, headers=JSON), 400)


# Encodings other than UTF-8, each with an ASCII name and a non-ASCII one (ASCII text in Latin-1
# is UTF-8, so Latin-1 gets the non-ASCII one only).
NOT_UTF8 = [
    *((encoding, name) for encoding in ("utf-16", "utf-32") for name in ("model", "modèle")),
    *((f"{e}-{o}", n) for e in ("utf-16", "utf-32") for o in ("le", "be") for n in ("m", "mè")),
    ("latin-1", "modèle"),
]


@pytest.mark.parametrize("route", ["/score", "/compare", "/v2/models/fairloss/infer"])
@pytest.mark.parametrize(("encoding", "name"), NOT_UTF8)
async def test_bodies_not_encoded_as_utf8_get_400(
    client: httpx.AsyncClient, route: str, encoding: str, name: str
) -> None:
    """json.loads, given bytes, decodes UTF-16 and UTF-32 by itself: such bodies were scored."""
    text = {
        "/score": '{"logits": [[1, 2]], "labels": [0], "name": "%s"}',
        "/compare": '{"labels": [0], "candidates": [{"name": "%s", "logits": [[1, 2]]}]}',
        "/v2/models/fairloss/infer": '{"id": "%s", "inputs": []}',
    }[route] % name
    body = text.encode(encoding)
    response = await client.post(route, content=body, headers=JSON)
    assert response.status_code == 400
    detail = response.json()["error" if route.startswith("/v2") else "detail"]
    if name.isascii() and not body.startswith((b"\xff", b"\xfe", b"\x00\x00\xfe")):
        assert detail.startswith("The body is not UTF-8 JSON: it holds NUL bytes")
    else:  # a byte order mark, or a non-ASCII letter, is a byte UTF-8 does not allow there
        bad = next(k for k, b in enumerate(body) if b >= 0x80)
        assert detail.startswith(f"The body is not UTF-8: byte {bad} is 0x{body[bad]:02x}.")
    assert detail.endswith("Send JSON encoded as UTF-8.")
    assert (await client.post("/score", json=README_EXAMPLE)).status_code == 200


async def test_a_utf8_byte_order_mark_is_allowed(client: httpx.AsyncClient) -> None:
    """RFC 8259 lets a parser ignore it; the text is still UTF-8."""
    body = b"\xef\xbb\xbf" + orjson.dumps(README_EXAMPLE)
    response = await client.post("/score", content=body, headers=JSON)
    assert response.status_code == 200
    assert response.json()["per_sample"]["total"] == [1.0919719, 1.3013917]


async def test_every_unknown_field_of_a_candidate_is_named(client: httpx.AsyncClient) -> None:
    """The field report: a candidate's "temperature" was answered without its name."""
    body = {
        "labels": [0],
        "candidates": [
            {"name": "a", "logits": [[1, 2]]},
            {"name": "b", "logits": [[1, 2]], "temperature": 2, "epoch": 3},
        ],
    }
    response = await client.post("/compare", json=body)
    assert response.status_code == 422
    assert response.json() == {
        "type": "/problems/invalid-request",
        "title": "Invalid request",
        "status": 422,
        "detail": "candidates.1.temperature: Extra inputs are not permitted; "
        "candidates.1.epoch: Extra inputs are not permitted",
        "errors": [
            {
                "loc": ["candidates", 1, "temperature"],
                "msg": "Extra inputs are not permitted",
                "type": "extra_forbidden",
            },
            {
                "loc": ["candidates", 1, "epoch"],
                "msg": "Extra inputs are not permitted",
                "type": "extra_forbidden",
            },
        ],
    }
    # worded as an unknown top-level field is
    top = await client.post("/score", json={**README_EXAMPLE, "temperature": 2})
    assert top.json()["errors"] == [
        {"loc": ["temperature"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
    ]


async def test_compare_refuses_text_plain(client: httpx.AsyncClient) -> None:
    response = await client.post("/compare", content=b"{}", headers={"content-type": "text/plain"})
    assert_problem(response, 415)


# Limits: elements, body bytes, concurrency.


TOO_LARGE_2000 = (
    "The request body is larger than the limit of 2000 bytes. To send more: the Python client "
    "(Client, in the fairloss_client package) splits any number of rows into requests under "
    "this server's "
    "limits; binary tensors through the Open Inference Protocol (POST "
    "/v2/models/fairloss/infer) take 4 bytes a float32 logit, against about 20 as JSON text; or "
    "raise FAIRLOSS_MAX_BODY_BYTES on the server."
)


class TestLimits:
    @pytest.fixture
    def settings(self) -> Settings:
        return Settings(max_elements=12, max_body_bytes=2000, max_concurrency=1, retry_after_s=3)

    async def test_elements_up_to_the_limit_are_taken(self, client: httpx.AsyncClient) -> None:
        body = {"logits": [[0.0, 1.0, 2.0]] * 4, "labels": [0, 1, 2, 0]}
        response = await client.post("/score", json=body)
        assert response.status_code == 200, response.text

    async def test_score_over_the_element_limit(self, client: httpx.AsyncClient) -> None:
        body = {"logits": [[0.0, 1.0, 2.0]] * 5, "labels": [0] * 5}
        problem = assert_problem(
            await client.post("/score", json=body), 422, loc=["logits"], kind="too_many_elements"
        )
        assert problem["detail"] == (
            "5 x 3 = 15 elements is more than this server's limit of 12. To send more: the "
            "Python client (Client, in the fairloss_client package) splits any number of rows into "
            "requests under this server's limits; or raise FAIRLOSS_MAX_ELEMENTS on the server."
        )

    async def test_compare_counts_elements_of_all_candidates(
        self, client: httpx.AsyncClient
    ) -> None:
        rows = [[0.0, 1.0, 2.0]] * 3
        body = {"labels": [0, 1, 2], "candidates": [candidate("a", rows), candidate("b", rows)]}
        problem = assert_problem(
            await client.post("/compare", json=body),
            422,
            loc=["candidates", 1, "logits"],
            kind="too_many_elements",
        )
        assert problem["detail"].startswith(
            "3 x 3 = 9 elements after 9 in the arrays before it is more than this server's "
            "limit of 12."
        )

    async def test_body_at_the_limit_is_read(self, client: httpx.AsyncClient) -> None:
        body = json.dumps(README_EXAMPLE).encode()
        body += b" " * (2000 - len(body))
        response = await client.post("/score", content=body, headers=JSON)
        assert response.status_code == 200, response.text

    async def test_body_over_the_limit_with_content_length(self, client: httpx.AsyncClient) -> None:
        body = json.dumps(README_EXAMPLE).encode() + b" " * 2000
        response = await client.post("/score", content=body, headers=JSON)
        assert response.request.headers["content-length"] == str(len(body))
        problem = assert_problem(response, 413)
        assert problem["detail"] == TOO_LARGE_2000

    async def test_chunked_body_over_the_limit(self, client: httpx.AsyncClient) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield json.dumps(README_EXAMPLE).encode()
            for _ in range(10):
                yield b" " * 300

        response = await client.post("/compare", content=chunks(), headers=JSON)
        assert "content-length" not in response.request.headers
        assert response.request.headers["transfer-encoding"] == "chunked"
        assert_problem(response, 413, detail="limit of 2000 bytes")

    async def test_chunked_body_under_the_limit_is_read(self, client: httpx.AsyncClient) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            text = json.dumps(README_EXAMPLE).encode()
            for k in range(0, len(text), 7):
                yield text[k : k + 7]

        response = await client.post("/score", content=chunks(), headers=JSON)
        assert response.status_code == 200, response.text
        assert response.json()["n"] == 2

    async def test_lying_content_length_is_a_problem(self, client: httpx.AsyncClient) -> None:
        request = client.build_request("POST", "/score", content=b"{}", headers=JSON)
        request.headers["content-length"] = "ten"
        assert_problem(await client.send(request), 400, detail="Content-Length")

    async def test_busy_server_answers_503_with_retry_after(
        self, client: httpx.AsyncClient
    ) -> None:
        started, release = anyio.Event(), anyio.Event()
        first: list[httpx.Response] = []

        async def slow_body() -> AsyncIterator[bytes]:
            yield b'{"logits": [[0.34, 0.33, 0.33], [0.49, 0.51, 0.0]],'
            started.set()
            await release.wait()
            yield b' "labels": [0, 0]}'

        async def send_first() -> None:
            first.append(await client.post("/score", content=slow_body(), headers=JSON))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(send_first)
                await started.wait()
                busy = await client.post("/score", json=README_EXAMPLE)
                also_busy = await client.post("/compare", json={"labels": [0], "candidates": []})
                release.set()
        problem = assert_problem(busy, 503)
        assert busy.headers["retry-after"] == "3"
        assert problem["title"] == "Server busy"
        assert_problem(also_busy, 503)
        assert first[0].status_code == 200, first[0].text
        assert first[0].json()["per_sample"]["total"] == pytest.approx(
            [1.0919719, 1.3013917], abs=1e-6
        )
        again = await client.post("/score", json=README_EXAMPLE)
        assert again.status_code == 200, again.text

    async def test_slot_is_freed_after_an_error(self, client: httpx.AsyncClient) -> None:
        for _ in range(3):
            assert_problem(await client.post("/score", json={"labels": [0]}), 422)
            assert_problem(await client.post("/score", content=b"[" * 3000, headers=JSON), 413)
        assert (await client.post("/score", json=README_EXAMPLE)).status_code == 200
