"""KServe's own V2 REST tests, restated for our model, against a real server.

Two files of KServe 0.21 (``python/kserve/test``) hold them:

- ``test_inference_client.py``, whose v2 cases run KServe's ``InferenceRESTClient`` (it sends
  ``model_name`` in the body and parses the health routes' bodies as JSON): here unchanged;
- ``test_server.py::TestV2Endpoints``, which posts bodies built by KServe's ``InferRequest``.

Each case keeps its point; the model's name, inputs, shapes and datatypes are ours. Where KServe
echoes a request's parameters, we name them as ignored (API.md, the Open Inference Protocol).
Cases that do not apply to a one-model scorer are left out: v1 routes, ``GET /v2/models`` (a
KServe extension, not in the protocol), load and unload, a model not yet ready, datetime and
FP16 outputs (we have none), cloud events, Ray and multiprocess serving.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from kserve.inference_client import InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse, RequestedOutput

from tests.conftest import running_server
from tests.test_v2 import expected as core_terms

pytestmark = pytest.mark.anyio
LOGITS = np.array([[0.34, 0.33, 0.33], [0.49, 0.51, 0.0], [2.0, -1.0, 0.5]], dtype=np.float32)
LABELS = np.array([0, 0, 2], dtype=np.int32)
HEADER_LENGTH = "inference-header-content-length"
PARAMETERS = {"test-str": "dummy", "test-bool": True, "test-int": 100, "test-float": 1.3}


@pytest.fixture(scope="module")
def url() -> Any:
    with running_server() as server:
        yield server.url


@pytest.fixture
async def kserve() -> AsyncIterator[InferenceRESTClient]:
    client = InferenceRESTClient(RESTConfig(protocol="v2", verbose=False))
    yield client
    await client.close()


@pytest.fixture
async def http(url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url) as client:
        yield client


def expected(logits: np.ndarray[Any, Any] = LOGITS) -> dict[str, np.ndarray[Any, Any]]:
    """The core's ce, penalty and total of ``logits`` and `LABELS`."""
    return core_terms(logits, LABELS)


def inputs(*, binary: bool, logits: np.ndarray[Any, Any] = LOGITS) -> list[InferInput]:
    datatype = {"float16": "FP16", "float32": "FP32"}[logits.dtype.name]
    made = [InferInput("logits", list(logits.shape), datatype), InferInput("labels", [3], "INT32")]
    made[0].set_data_from_numpy(logits, binary_data=binary)
    made[1].set_data_from_numpy(LABELS, binary_data=binary)
    return made


def outputs_of(response: InferResponse) -> dict[str, np.ndarray[Any, Any]]:
    return {output.name: output.as_numpy() for output in response.outputs}


def assert_scores(
    got: dict[str, np.ndarray[Any, Any]], want: dict[str, np.ndarray[Any, Any]]
) -> None:
    assert got.keys() == want.keys()
    for name, values in want.items():
        np.testing.assert_array_equal(got[name], values, err_msg=name)


async def post(http: httpx.AsyncClient, request: InferRequest) -> httpx.Response:
    body, json_length = request.to_rest()
    if json_length is None:
        return await http.post("/v2/models/fairloss/infer", json=body)
    headers = {HEADER_LENGTH: str(json_length), "content-type": "application/octet-stream"}
    return await http.post("/v2/models/fairloss/infer", content=body, headers=headers)


def parsed(response: httpx.Response) -> InferResponse:
    assert response.status_code == 200, response.text
    length = int(response.headers.get(HEADER_LENGTH, len(response.content)))
    return InferResponse.from_bytes(response.content, length)


# --- test_inference_client.py: KServe's InferenceRESTClient, unchanged ------------------------


async def test_is_server_ready_and_live(kserve: InferenceRESTClient, url: str) -> None:
    assert await kserve.is_server_ready(url, timeout=5) is True
    assert await kserve.is_server_live(url, timeout=5) is True


async def test_is_model_ready(kserve: InferenceRESTClient, url: str) -> None:
    assert await kserve.is_model_ready(url + "/", "fairloss", timeout=5) is True
    assert await kserve.is_model_ready(url, "NotReadyModel", timeout=5) is False


async def test_infer_a_dict(kserve: InferenceRESTClient, url: str) -> None:
    """Request and input parameters KServe's test sends are taken and named as ignored."""
    data = {
        "id": "2ja0ls9j1309",
        "parameters": {"test-param": "abc"},
        "inputs": [
            {
                "name": "logits",
                "datatype": "FP32",
                "shape": [3, 3],
                "data": LOGITS.tolist(),
                "parameters": {"test-param": "abc"},
            },
            {"name": "labels", "datatype": "INT32", "shape": [3], "data": LABELS.tolist()},
        ],
    }
    response = await kserve.infer(url, data, model_name="fairloss", timeout=5)
    assert response.id == "2ja0ls9j1309"
    assert response.parameters == {
        "ignored": ["parameters.test-param", "inputs.logits.parameters.test-param"]
    }
    assert_scores(outputs_of(response), expected())


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
async def test_infer_an_infer_request(kserve: InferenceRESTClient, url: str, binary: bool) -> None:
    request = InferRequest(
        model_name="fairloss",
        request_id="2ja0ls9j1309",
        infer_inputs=inputs(binary=binary),
        parameters={"test-param": "abc"},
    )
    response = await kserve.infer(url, request, model_name="fairloss", timeout=5)
    assert response.id == "2ja0ls9j1309"
    assert_scores(outputs_of(response), expected())


async def test_infer_with_all_binary_data(kserve: InferenceRESTClient, url: str) -> None:
    """FP16 binary logits, and every output binary: the client decodes them."""
    logits = LOGITS.astype(np.float16)
    request = InferRequest(
        model_name="fairloss",
        request_id="2ja0ls9j1309",
        infer_inputs=inputs(binary=True, logits=logits),
        parameters={"test-param": "abc", "binary_data_output": True},
    )
    headers: dict[str, str] = {}
    response = await kserve.infer(
        url, request, model_name="fairloss", response_headers=headers, timeout=5
    )
    assert headers["content-type"] == "application/octet-stream"
    assert int(headers[HEADER_LENGTH]) < int(headers["content-length"])
    assert_scores(outputs_of(response), expected(logits))


async def test_infer_with_binary_data(kserve: InferenceRESTClient, url: str) -> None:
    """KServe's test sets ``binary_data_output`` on one output, where it is no output parameter:
    ignored and named, and that output comes back as JSON, the only one returned."""
    request = InferRequest(
        model_name="fairloss",
        infer_inputs=inputs(binary=True),
        request_outputs=[RequestedOutput("total", parameters={"binary_data_output": True})],
    )
    response = await kserve.infer(url, request, model_name="fairloss", timeout=5)
    assert response.parameters == {"ignored": ["outputs.total.parameters.binary_data_output"]}
    assert response.outputs[0].parameters is None
    assert_scores(outputs_of(response), {"total": expected()["total"]})


async def test_a_refusal_reaches_the_client_in_its_words(
    kserve: InferenceRESTClient, url: str
) -> None:
    """The client takes ``{"error": ...}`` into its HTTPStatusError, as from KServe's server."""
    request = InferRequest(model_name="fairloss", infer_inputs=inputs(binary=True))
    request.inputs[1].set_data_from_numpy(np.array([0, 0, 3], dtype=np.int32), binary_data=True)
    with pytest.raises(httpx.HTTPStatusError, match=r"labels\[2\] is 3, '400 Bad Request'"):
        await kserve.infer(url, request, model_name="fairloss", timeout=5)
    assert await kserve.is_server_live(url, timeout=5) is True


# --- test_server.py, TestV2Endpoints: bodies built by KServe's InferRequest -----------------


async def test_infer_v2(http: httpx.AsyncClient) -> None:
    body = orjson.dumps(
        {
            "inputs": [
                {"name": "logits", "shape": [3, 3], "datatype": "FP32", "data": LOGITS.tolist()},
                {"name": "labels", "shape": [3], "datatype": "INT32", "data": LABELS.tolist()},
            ]
        }
    )
    headers = {"content-type": "application/json"}
    response = await http.post("/v2/models/fairloss/infer", content=body, headers=headers)
    assert response.headers["content-type"] == "application/json"
    assert_scores(outputs_of(parsed(response)), expected())


async def test_infer_parameters_v2(http: httpx.AsyncClient) -> None:
    """Strings, booleans, integers and floats as request and input parameters."""
    made = inputs(binary=False)
    made[0].parameters = dict(PARAMETERS)
    request = InferRequest(
        model_name="fairloss", request_id="123", parameters=PARAMETERS, infer_inputs=made
    )
    response = await post(http, request)
    assert response.headers["content-type"] == "application/json"
    answer = InferResponse.from_rest(orjson.loads(response.content))
    assert (answer.model_name, answer.id) == ("fairloss", "123")
    assert answer.parameters == {
        "ignored": [f"parameters.{key}" for key in sorted(PARAMETERS)]
        + [f"inputs.logits.parameters.{key}" for key in sorted(PARAMETERS)]
    }
    assert_scores(outputs_of(answer), expected())


async def test_fp16_input(http: httpx.AsyncClient) -> None:
    """KServe's test_fp16_input_as_binary_data and test_fp16_input_not_binary_data. The second
    expects a 400, as KServe refuses FP16 sent as JSON numbers (its InferRequest will not even
    build one); we take them, rounded to float16, and score them as the same values sent
    binary."""
    logits = LOGITS.astype(np.float16)
    binary = await post(http, InferRequest("fairloss", inputs(binary=True, logits=logits)))
    assert_scores(outputs_of(parsed(binary)), expected(logits))
    body = {
        "inputs": [
            {"name": "logits", "shape": [3, 3], "datatype": "FP16", "data": LOGITS.tolist()},
            {"name": "labels", "shape": [3], "datatype": "INT32", "data": LABELS.tolist()},
        ]
    }
    as_json = await http.post("/v2/models/fairloss/infer", json=body)
    assert_scores(outputs_of(parsed(as_json)), expected(logits))


async def test_requested_output(http: httpx.AsyncClient) -> None:
    outputs = [RequestedOutput("penalty", parameters={"binary_data": False})]
    request = InferRequest("fairloss", inputs(binary=False), request_outputs=outputs)
    response = await post(http, request)
    assert response.headers["content-type"] == "application/json"
    answer = orjson.loads(response.content)
    assert [output["name"] for output in answer["outputs"]] == ["penalty"]
    assert "parameters" not in answer["outputs"][0]
    assert_scores(outputs_of(parsed(response)), {"penalty": expected()["penalty"]})


async def test_all_output_as_binary_data(http: httpx.AsyncClient) -> None:
    request = InferRequest(
        "fairloss", inputs(binary=False), parameters={"binary_data_output": True}
    )
    response = await post(http, request)
    length = int(response.headers[HEADER_LENGTH])
    header = orjson.loads(response.content[:length])
    sizes = [output["parameters"]["binary_data_size"] for output in header["outputs"]]
    assert sizes == [12, 12, 12]
    assert len(response.content) == length + sum(sizes)
    assert_scores(outputs_of(parsed(response)), expected())


@pytest.mark.parametrize("listed", [{"binary_data": False}, None], ids=["false", "unset"])
async def test_binary_data_parameter_precedence(
    http: httpx.AsyncClient, listed: dict[str, bool] | None
) -> None:
    """KServe's test_fp16_output_as_binary_data and test_binary_data_parameter_precedence: each
    listed output follows its own binary_data, and one without it is JSON (KServe's
    test_fp16_output_not_binary_data is a 400 only because an FP16 output has no JSON form)."""
    outputs = [
        RequestedOutput("ce", parameters={"binary_data": True}),
        RequestedOutput("total", parameters=listed),
    ]
    request = InferRequest(
        "fairloss",
        inputs(binary=False),
        parameters={"binary_data_output": True},
        request_outputs=outputs,
    )
    response = await post(http, request)
    length = int(response.headers[HEADER_LENGTH])
    ce, total = orjson.loads(response.content[:length])["outputs"]
    assert ce["parameters"] == {"binary_data_size": 12}
    assert "data" not in ce
    assert "data" in total
    assert "parameters" not in total
    assert len(response.content) == length + 12
    want = expected()
    assert_scores(outputs_of(parsed(response)), {"ce": want["ce"], "total": want["total"]})
