"""Public failure reports replayed against the service: each once answered 500. Now each is a
4xx that names the fault, and the app keeps serving."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.settings import Settings
from tests.conftest import README_EXAMPLE, in_process

pytestmark = pytest.mark.anyio
JSON = {"Content-Type": "application/json"}
OIP = "/v2/models/fairloss/infer"
DEEP = "[" * 1000 + "1" + "]" * 1000  # about 2 KB
CANDIDATES = '[{"name": "a", "logits": [[1, 0]]}, {"name": "b", "logits": [[0, 1]]}]'


async def _after(client: httpx.AsyncClient, path: str, body: str) -> httpx.Response:
    """The answer to ``body``, after checking that the app still answers a good request."""
    response = await client.post(path, content=body.encode("utf-8", "surrogatepass"), headers=JSON)
    assert (await client.post("/score", json=README_EXAMPLE)).status_code == 200
    return response


@pytest.mark.parametrize(
    ("path", "body", "status", "said"),
    [
        (
            "/score",
            '{"logits": [[1, 0]], "labels": [0], "bootstrap": {"seed": ' + DEEP + "}}",
            422,
            "Expected `bootstrap.seed` to be an integer in [0, 2**64), but got an array",
        ),
        (
            "/compare",
            f'{{"labels": [0], "candidates": {CANDIDATES}, "bootstrap": {{"seed": {DEEP}}}}}',
            422,
            "but got an array",
        ),
        ("/score", '{"logits": [[1, 0]], "labels": [0], "a\\u0000": 1}', 422, "a\x00: Extra"),
        ("/score", '{"logits": [[1, 0]], "labels": [0], "a\\ud800": 1}', 422, "a\ud800: Extra"),
        (
            "/compare",
            '{"labels": [0], "candidates": [{"name": "a", "logits": [[1, 0]], "x\\u0000": 1}, '
            '{"name": "b", "logits": [[0, 1]]}]}',
            422,
            "candidates.0.x\x00: Extra",
        ),
        (
            "/score",
            '{"logits": [[1, 0]], "labels": '
            '{"dtype": "int64", "shape": [4611686018427387904, 0], "data": ""}}',
            422,
            "Expected labels.shape to have at most 64 sizes whose product is at most 2**48",
        ),
        (
            OIP,
            '{"inputs": [{"name": "logits", "datatype": "FP32", "shape": '
            '[4611686018427387904, 4611686018427387904, 0], "data": []}, '
            '{"name": "labels", "datatype": "INT64", "shape": [0], "data": []}]}',
            400,
            "its sizes multiply past 2**48",
        ),
        (OIP, '{"inputs": [], "a\\ud800": 1}', 400, "unknown field(s) 'a\\ud800'"),
        (
            "/score",
            '{"logits": [[1, ' + "9" * 5000 + ']], "labels": [0]}',
            422,
            "A number in the body has 5,000 digits; no field takes one past 4,300 digits",
        ),
        (
            OIP,
            '{"inputs": [{"name": "logits", "datatype": "FP64", "shape": [1, 2], "data": [1, '
            + "9" * 5000
            + ']}, {"name": "labels", "datatype": "INT64", "shape": [1], "data": [0]}]}',
            400,
            "A number in the body has 5,000 digits",
        ),
        (
            "/score",
            '{"logits": {"dtype": "float32", "shape": [true, 2], "data": ""}, "labels": [0]}',
            422,
            "to be a list of sizes (integers >= 0), but got [true, 2]",
        ),
        (OIP, '{"inputs": [], "model_version": 1}', 400, "'model_version' must be a string"),
        (
            OIP,
            '{"inputs": [{"name": "logits", "datatype": true, "shape": [1, true], "data": [1]}, '
            '{"name": null}]}',
            400,
            "Unknown input(s) null",
        ),
        (
            OIP,
            '{"inputs": [{"name": "logits", "datatype": "FP32", "shape": [1, true], "data": [1]}, '
            '{"name": "labels", "datatype": "INT64", "shape": [1], "data": [0]}]}',
            400,
            "Input 'logits' has shape [1, true]",
        ),
    ],
    ids=[
        "deep seed /score",
        "deep seed /compare",
        "NUL in a field name",
        "lone surrogate in a field name",
        "NUL in a candidate's field name",
        "typed array shape past numpy's range",
        "OIP shape past numpy's range",
        "OIP lone surrogate",
        "an integer past 4,300 digits",
        "OIP integer past 4,300 digits",
        "a shape spelt as JSON spells it",
        "OIP model_version a number",
        "OIP null spelt as JSON spells it",
        "OIP true spelt as JSON spells it",
    ],
)
async def test_a_field_report_is_a_4xx_that_names_the_fault(
    client: httpx.AsyncClient, path: str, body: str, status: int, said: str
) -> None:
    response = await _after(client, path, body)
    assert response.status_code == status, response.text
    message = response.json()["detail" if status == 422 else "error"]
    assert said in message


SIZES = st.one_of(
    st.integers(0, 4),
    st.integers(2**31 - 2, 2**31 + 2),
    st.integers(2**47, 2**49),
    st.integers(2**62, 2**63 - 1),
)


async def _post_shapes(shapes: list[tuple[str, list[int]]]) -> list[int]:
    async with in_process(Settings()) as client:
        statuses = []
        for field, shape in shapes:
            typed: dict[str, Any] = {"dtype": "float32", "shape": shape, "data": ""}
            body: dict[str, Any] = {"logits": [[1.0, 0.0]], "labels": [0]}
            if field == "labels":
                typed["dtype"] = "int64"
            body[field] = typed
            tensor = {"name": "logits", "datatype": "FP32", "shape": shape, "data": []}
            oip = {"inputs": [tensor, {"name": "labels", "datatype": "INT64", "shape": [0]}]}
            statuses.append((await client.post("/score", json=body)).status_code)
            statuses.append((await client.post(OIP, json=oip)).status_code)
        return statuses


@settings(max_examples=40, deadline=None)
@given(
    shapes=st.lists(
        st.tuples(
            st.sampled_from(["logits", "labels", "sample_weight"]),
            st.lists(SIZES, min_size=0, max_size=70),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_no_shape_near_overflow_reaches_a_5xx(shapes: list[tuple[str, list[int]]]) -> None:
    """Sizes around 2**31, 2**48 and 2**63, with zeros among them, in every typed-array field
    of /score and in OIP tensors: always a 4xx."""
    statuses = anyio.run(_post_shapes, shapes)
    assert all(400 <= status < 500 for status in statuses), statuses


@pytest.mark.parametrize(
    ("data", "said"),
    [
        ("AACAPwAAAAA", "its length, 11, is not a multiple of 4: the '=' padding"),
        ("AACAPw-_AAA=", "it holds '-' at index 6: that is URL-safe base64"),
        ("AACA Pw==", "it holds ' ' at index 4, which is not a base64 character"),
        ("AA=APwAAAAA=", "it holds '=' at index 2, before its end"),
    ],
    ids=["no padding", "url-safe", "a space", "padding inside"],
)
async def test_bad_base64_is_named_for_what_it_is(
    client: httpx.AsyncClient, data: str, said: str
) -> None:
    """pybase64 says "Non-base64 digit found" for all of these."""
    body = {"logits": {"dtype": "float32", "shape": [1, 2], "data": data}, "labels": [0]}
    response = await _after(client, "/score", orjson.dumps(body).decode())
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["logits", "data"]
    assert said in response.json()["detail"]


BIG = "x" * 1_000_000


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/score", {"logits": [[1, 0]], "labels": [0], "reduction": BIG}),
        ("/score", {"logits": [[1, 0]], "labels": [0], "device": BIG}),
        ("/score", {"logits": [[1, 0]], "labels": [0], BIG: 1}),
        (OIP, {"inputs": [], BIG: 1}),
        (OIP, {"inputs": [{"name": BIG, "datatype": "FP32", "shape": [1], "data": [1]}]}),
    ],
    ids=["option value", "device", "unknown field", "OIP unknown field", "OIP input name"],
)
async def test_a_megabyte_value_is_not_echoed_whole(
    client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    response = await _after(client, path, orjson.dumps(body).decode())
    assert 400 <= response.status_code < 500
    assert len(response.content) < 5_000
    assert "characters in all)" in response.text  # the string was cut, and says so


async def test_made_up_methods_share_one_metrics_label(client: httpx.AsyncClient) -> None:
    """uvicorn with h11 passes any token as a method: each made-up one once added a series."""
    for method in ("FOO", "BAR1", "Get"):
        assert (await client.request(method, "/score")).status_code == 405
    text = (await client.get("/metrics")).text
    assert 'method="FOO"' not in text
    assert 'method="Get"' not in text
    assert 'route="/score",status="405"' in text.replace('method="other",', "")


LOGITS_INPUTS = [
    {"name": "logits", "datatype": "FP32", "shape": [1, 2], "data": [1, 0]},
    {"name": "labels", "datatype": "INT64", "shape": [1], "data": [0]},
]


@pytest.mark.parametrize(
    ("path", "body", "status", "said"),
    [
        (
            "/compare",
            '{"labels": [0, 0], "candidates": [{"name": "a\\ud800", "logits": [[1, 0], [0, 1]]}]}',
            422,
            "Expected candidates[0].name to be text, but it holds a lone surrogate, \\ud800",
        ),
        (
            OIP,
            '{"id": "\\ud800", "inputs": ' + orjson.dumps(LOGITS_INPUTS).decode() + "}",
            400,
            "'id' must be text, but it holds a lone surrogate, \\ud800, at index 0",
        ),
    ],
    ids=["candidate name", "OIP id"],
)
async def test_a_lone_surrogate_that_an_answer_would_echo_is_refused(
    client: httpx.AsyncClient, path: str, body: str, status: int, said: str
) -> None:
    """Such answers once failed to be written (500): orjson refuses a lone surrogate."""
    response = await _after(client, path, body)
    assert response.status_code == status, response.text
    assert said in response.text.replace("\\\\", "\\")


async def test_ignored_parameter_names_are_echoed_escaped_and_cut(
    client: httpx.AsyncClient,
) -> None:
    inputs = [dict(LOGITS_INPUTS[0], parameters={"\udfff": 1}), LOGITS_INPUTS[1]]
    body = {"inputs": inputs, "parameters": {"a\udc00": 1, BIG: 1}}
    text = json.dumps(body)  # the standard library writes lone surrogates as escapes
    response = await _after(client, OIP, text)
    assert response.status_code == 200, response.text
    assert len(response.content) < 5_000
    ignored = response.json()["parameters"]["ignored"]
    assert ignored[0] == "parameters.a\\udc00"
    assert ignored[1].endswith("(1,000,000 characters in all)")
    assert ignored[2] == "inputs.logits.parameters.\\udfff"


async def test_nulls_where_kserve_takes_them_are_absent(client: httpx.AsyncClient) -> None:
    """KServe's server reads a null id, model_name, model_version, parameters or outputs (and
    an input's or output's null parameters) as absent; so does this one."""
    plain = await _after(client, OIP, json.dumps({"inputs": LOGITS_INPUTS}))
    inputs = [dict(LOGITS_INPUTS[0], parameters=None), LOGITS_INPUTS[1]]
    nulls = dict.fromkeys(("id", "model_name", "model_version", "parameters", "outputs"))
    response = await _after(client, OIP, json.dumps({"inputs": inputs, **nulls}))
    assert response.status_code == 200, response.text
    assert response.json() == plain.json()
    listed = {"inputs": LOGITS_INPUTS, "outputs": [{"name": "ce", "parameters": None}]}
    response = await _after(client, OIP, json.dumps(listed))
    assert [output["name"] for output in response.json()["outputs"]] == ["ce"]


async def test_a_hundred_ignored_parameters_are_named_then_counted(
    client: httpx.AsyncClient,
) -> None:
    body = {"inputs": LOGITS_INPUTS, "parameters": {f"p{k:05}": 1 for k in range(100_000)}}
    response = await _after(client, OIP, json.dumps(body))
    ignored = response.json()["parameters"]["ignored"]
    assert ignored[:2] == ["parameters.p00000", "parameters.p00001"]
    assert ignored[100:] == ["... (100,000 in all)"]


async def test_a_number_too_long_is_a_422_with_its_errors(client: httpx.AsyncClient) -> None:
    """As every 422: ``errors`` too, so that a generated client's typed Problem has them."""
    body = '{"logits": [[1, 0]], "labels": [' + "9" * 5000 + "]}"
    problem = (await _after(client, "/score", body)).json()
    assert problem["errors"] == [{"loc": [], "msg": problem["detail"], "type": "number_too_long"}]
