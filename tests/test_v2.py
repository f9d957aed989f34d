"""The Open Inference Protocol: tritonclient against a real server, and bad requests in process."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import torch
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

import fairloss
from fairloss import fair_loss_terms
from fairloss.bootstrap import CRITERIA, Bootstrap
from fairloss.uncertainty import intervals
from service.settings import Settings

INFER = "/v2/models/fairloss/infer"
LIMIT = 4096
ELEMENTS = 200
LOGITS = [[0.34, 0.33, 0.33], [0.49, 0.51, 0.0]]


def expected(logits: Any, labels: Any, **options: Any) -> dict[str, np.ndarray]:
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float32)
    terms = fair_loss_terms(z, torch.as_tensor(np.asarray(labels), dtype=torch.int64), **options)
    return {k: getattr(terms, k).numpy() for k in ("ce", "penalty", "total")}


def tensor(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def json_request(**extra: Any) -> dict[str, Any]:
    return {
        "inputs": [
            tensor("logits", "FP64", [2, 3], [v for row in LOGITS for v in row]),
            tensor("labels", "INT64", [2], [0, 0]),
        ],
        **extra,
    }


def binary_request(
    logits: np.ndarray, labels: np.ndarray, datatypes: tuple[str, str] = ("FP32", "INT64")
) -> tuple[bytes, dict[str, str]]:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "datatype": datatype,
                    "shape": list(array.shape),
                    "parameters": {"binary_data_size": array.nbytes},
                }
                for name, datatype, array in zip(
                    ("logits", "labels"), datatypes, (logits, labels), strict=True
                )
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    body = header + logits.tobytes() + labels.tobytes()
    return body, {"Inference-Header-Content-Length": str(len(header))}


# --- the ecosystem's own client against a real server ------------------------------------------


def inputs(logits: np.ndarray, labels: np.ndarray, *, binary: bool) -> list[triton.InferInput]:
    made = []
    for name, array, datatype in (("logits", logits, None), ("labels", labels, None)):
        datatype = {"float32": "FP32", "float64": "FP64", "int32": "INT32", "int64": "INT64"}[
            array.dtype.name
        ]
        item = triton.InferInput(name, list(array.shape), datatype)
        item.set_data_from_numpy(array, binary_data=binary)
        made.append(item)
    return made


def test_tritonclient_binary_tensors_match_the_core(triton_client):
    rng = np.random.default_rng(5)
    logits = rng.normal(scale=3.0, size=(300, 7)).astype(np.float32)
    labels = rng.integers(0, 7, 300).astype(np.int64)
    result = triton_client.infer("fairloss", inputs(logits, labels, binary=True), request_id="b1")
    response = result.get_response()
    assert response["id"] == "b1"
    assert response["model_name"] == "fairloss"
    assert [o["name"] for o in response["outputs"]] == ["ce", "penalty", "total"]
    assert all(o["parameters"] == {"binary_data_size": 1200} for o in response["outputs"])
    for name, values in expected(logits, labels).items():
        got = result.as_numpy(name)
        assert got.dtype == np.float32
        assert got.shape == (300,)
        np.testing.assert_allclose(got, values, rtol=1e-6, atol=1e-6)


def test_tritonclient_json_tensors_with_parameters_and_chosen_outputs(triton_client):
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(40, 4))
    labels = rng.integers(0, 4, 40).astype(np.int32)
    labels[3] = -1
    outputs = [triton.InferRequestedOutput(n, binary_data=False) for n in ("total", "ce")]
    parameters = {"label_smoothing": 0.2, "ignore_index": -1, "smooth_max_beta": 10.0}
    result = triton_client.infer(
        "fairloss", inputs(logits, labels, binary=False), outputs=outputs, parameters=parameters
    )
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == ["total", "ce"]
    assert all("data" in o and "parameters" not in o for o in response["outputs"])
    assert result.as_numpy("penalty") is None
    want = expected(logits, labels, label_smoothing=0.2, ignore_index=-1, smooth_max_beta=10.0)
    for name in ("total", "ce"):
        np.testing.assert_allclose(result.as_numpy(name), want[name], rtol=1e-6, atol=1e-6)
    assert result.as_numpy("total")[3] == 0.0


def test_tritonclient_health_and_metadata(triton_client):
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready("fairloss")
    assert not triton_client.is_model_ready("other")
    server = triton_client.get_server_metadata()
    assert server["name"] == "fairloss-service"
    assert "binary_tensor_data" in server["extensions"]
    model = triton_client.get_model_metadata("fairloss")
    assert model["inputs"] == [
        {"name": "logits", "datatype": "FP32", "shape": [-1, -1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, -1], "optional": True},
        {"name": "log_probabilities", "datatype": "FP32", "shape": [-1, -1], "optional": True},
        {"name": "labels", "datatype": "INT64", "shape": [-1]},
        {"name": "sample_weight", "datatype": "FP32", "shape": [-1], "optional": True},
    ]
    assert [o["name"] for o in model["outputs"]] == [
        "ce",
        "penalty",
        "total",
        "reduced",
        "ece",
        "intervals",
    ]


def test_tritonclient_sees_the_error_message(triton_client):
    logits = np.zeros((3, 2), dtype=np.float32)
    labels = np.array([0, 2, 1], dtype=np.int64)
    with pytest.raises(InferenceServerException) as caught:
        triton_client.infer("fairloss", inputs(logits, labels, binary=True))
    assert caught.value.message() == "Expected labels in [0, 2), but labels[1] is 2"
    assert caught.value.status() == "400"


# --- in process --------------------------------------------------------------------------------


@pytest.fixture
def settings() -> Settings:
    return Settings(max_body_bytes=LIMIT, max_elements=ELEMENTS)


async def post(client: httpx.AsyncClient, body: Any, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return await client.post(INFER, content=content, headers=headers)


@pytest.mark.anyio
async def test_json_without_content_type_is_answered(client):
    response = await post(client, json_request(id="req-7"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in response.headers
    body = response.json()
    want = expected(LOGITS, [0, 0])
    assert body == {
        "model_name": "fairloss",
        "id": "req-7",
        "outputs": [
            {"name": k, "datatype": "FP32", "shape": [2], "data": body["outputs"][i]["data"]}
            for i, k in enumerate(("ce", "penalty", "total"))
        ],
    }
    for output in body["outputs"]:
        np.testing.assert_allclose(output["data"], want[output["name"]], rtol=1e-6)


@pytest.mark.anyio
async def test_nested_json_data_and_one_binary_output(client):
    request = json_request(outputs=[{"name": "penalty", "parameters": {"binary_data": True}}])
    request["inputs"][0]["data"] = LOGITS
    response = await post(client, request, **{"Content-Type": "application/json"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    split = int(response.headers["inference-header-content-length"])
    header = orjson.loads(response.content[:split])
    assert header == {
        "model_name": "fairloss",
        "outputs": [
            {
                "name": "penalty",
                "datatype": "FP32",
                "shape": [2],
                "parameters": {"binary_data_size": 8},
            }
        ],
    }
    penalty = np.frombuffer(response.content[split:], dtype="<f4")
    np.testing.assert_allclose(penalty, expected(LOGITS, [0, 0])["penalty"], rtol=1e-6)


@pytest.mark.anyio
@pytest.mark.parametrize("datatypes", [("FP32", "INT64"), ("FP64", "INT32")])
async def test_binary_tensors_by_hand(client, datatypes):
    logits = np.asarray(LOGITS, dtype="<f4" if datatypes[0] == "FP32" else "<f8")
    labels = np.asarray([0, 1], dtype="<i8" if datatypes[1] == "INT64" else "<i4")
    body, headers = binary_request(logits, labels, datatypes)
    response = await post(client, body, **headers)
    assert response.status_code == 200
    split = int(response.headers["inference-header-content-length"])
    values = np.frombuffer(response.content[split:], dtype="<f4").reshape(3, 2)
    want = expected(LOGITS, [0, 1])
    np.testing.assert_allclose(values, [want["ce"], want["penalty"], want["total"]], rtol=1e-6)


@pytest.mark.anyio
async def test_metadata_and_health_routes(client):
    """Health bodies as KServe answers them (its client parses them); Triton's client reads the
    status alone (`test_tritonclient_health_and_metadata`)."""
    live = await client.get("/v2/health/live")
    assert (live.status_code, live.json()) == (200, {"live": True})
    ready = await client.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    ready = await client.get("/v2/models/fairloss/ready")
    assert (ready.status_code, ready.json()) == (200, {"name": "fairloss", "ready": True})
    ready = await client.get("/v2/models/fairloss/versions/1/ready")
    assert (ready.status_code, ready.json()) == (200, {"name": "fairloss", "ready": True})
    metadata = (await client.get("/v2/models/fairloss")).json()
    assert (await client.get("/v2/models/fairloss/versions/1")).json() == metadata
    assert metadata["versions"] == ["1"]
    version = await client.get("/v2/models/fairloss/versions/2")
    assert version.status_code == 404
    assert version.json() == {"error": "Unknown version '2' of 'fairloss'; it has '1'"}
    server = await client.get("/v2")
    assert server.json() == {
        "name": "fairloss-service",
        "version": "0.2.0",
        "extensions": ["binary_tensor_data"],
    }
    unknown = await client.get("/v2/models/resnet")
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "Unknown model 'resnet'; this server has 'fairloss'"}


def with_input(index: int, **changes: Any) -> dict[str, Any]:
    request = json_request()
    request["inputs"][index].update(changes)
    return request


ERRORS: list[tuple[str, Any, str]] = [
    (
        "not json",
        b"{",
        "The body is not valid JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)",
    ),
    ("not an object", [1], "The body must be a JSON object."),
    (
        "unknown field",
        json_request(model="x"),
        "The request has unknown field(s) 'model'; expected id, inputs, model_name, "
        "model_version, outputs, parameters",
    ),
    (
        "unknown input",
        with_input(1, name="targets"),
        "Unknown input(s) 'targets'; expected logits (or probabilities or log_probabilities), "
        "labels and optionally sample_weight",
    ),
    (
        "wrong logits datatype",
        with_input(0, datatype="INT64"),
        "Input 'logits' has datatype 'INT64'; expected FP16, BF16, FP32 or FP64",
    ),
    (
        "float labels",
        with_input(1, datatype="FP32"),
        "Input 'labels' has datatype 'FP32'; expected INT32 or INT64",
    ),
    (
        "labels holding floats",
        with_input(1, data=[0.0, 1.0]),
        "Input 'labels' (INT64) must hold integers in its 'data' array",
    ),
    (
        "boolean in logits",
        with_input(0, data=[0.1, True, 0.3, 0.4, 0.5, 0.6]),
        "Input 'logits' (FP64) must hold numbers in its 'data' array",
    ),
    (
        "ragged nested data",
        with_input(0, shape=[2, 3], data=[[0.1, 0.2, 0.3], [0.4, 0.5]]),
        "Input 'logits' has ragged 'data': its nested arrays differ in length; send 6 values "
        "for shape [2, 3], flat in row-major order or nested",
    ),
    (
        "wrong rank",
        with_input(0, shape=[]),
        "Input 'logits' has shape []; expected [N, C] or [N, C, d1, ..., dk], or [N] binary scores",
    ),
    (
        "one class",
        with_input(0, shape=[6, 1]),
        "Expected at least 2 classes, but logits[0] has 1",
    ),
    (
        "data not matching shape",
        with_input(0, shape=[3, 3]),
        "Input 'logits' holds 6 values in 'data'; shape [3, 3] takes 9",
    ),
    (
        "labels not one per row",
        with_input(1, shape=[3], data=[0, 0, 0]),
        "Expected 2 labels, one per row, but got 3",
    ),
    (
        "label out of range",
        with_input(1, data=[0, 3]),
        "Expected labels in [0, 3), but labels[1] is 3",
    ),
    (
        "label of 2 to the 64",
        b'{"inputs": [{"name": "logits", "datatype": "FP64", "shape": [1, 2], "data": [0, 1]},'
        b'{"name": "labels", "datatype": "INT64", "shape": [1], "data": [18446744073709551616]}]}',
        "Input 'labels' holds a value too large for INT64",
    ),
    (
        "label below int64",
        b'{"inputs": [{"name": "logits", "datatype": "FP64", "shape": [1, 2], "data": [0, 1]},'
        b'{"name": "labels", "datatype": "INT64", "shape": [1], "data": [-9223372036854775809]}]}',
        "Input 'labels' holds a value too large for INT64",
    ),
    (
        "non-finite logit",
        b'{"inputs": [{"name": "logits", "datatype": "FP64", "shape": [1, 2], "data": [0, NaN]},'
        b'{"name": "labels", "datatype": "INT64", "shape": [1], "data": [0]}]}',
        "Expected finite numbers, but logits[0][1] is nan",
    ),
    (
        "too large for FP32",
        with_input(0, datatype="FP32", data=[1e39, 0, 0, 0, 0, 0]),
        "Input 'logits' holds a value too large for FP32",
    ),
    (
        "bad parameter value",
        json_request(parameters={"smooth_max_beta": -1}),
        "Expected `smooth_max_beta` to be a finite number larger than 0, but got -1",
    ),
    (
        "class weights not one per class",
        json_request(parameters={"class_weights": [1.0, 2.0]}),
        "Expected 3 class_weights, one per class, but got 2",
    ),
    (
        "unknown output",
        json_request(outputs=[{"name": "accuracy"}]),
        "outputs[0] names 'accuracy'; expected one of ce, penalty, total, reduced, ece, "
        "intervals, each at most once",
    ),
    (
        "both data and binary size",
        with_input(1, parameters={"binary_data_size": 16}),
        "Input 'labels' needs either 'data' or binary_data_size, not both",
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("body", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
async def test_bad_requests_get_400_and_an_error_message(client, body, message):
    response = await post(client, body)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": message}


def binary_with(header_changes: dict[str, Any], tail: bytes = b"") -> tuple[bytes, dict[str, str]]:
    body, headers = binary_request(np.zeros((2, 3), "<f4"), np.zeros(2, "<i8"))
    split = int(headers["Inference-Header-Content-Length"])
    header = orjson.loads(body[:split])
    for index, parameters in header_changes.items():
        header["inputs"][index]["parameters"] = parameters
    new = orjson.dumps(header)
    return new + body[split:] + tail, {"Inference-Header-Content-Length": str(len(new))}


BINARY_ERRORS: list[tuple[str, dict[Any, Any], bytes, str]] = [
    (
        "size not matching the shape",
        {1: {"binary_data_size": 8}},
        b"",
        "Input 'labels' has binary_data_size 8; INT64 [2] takes 16 bytes",
    ),
    (
        "bytes left over",
        {},
        b"\0" * 4,
        "The inputs' binary_data_size add up to 40 bytes, but 44 bytes follow the JSON header",
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("changes", "tail", "message"),
    [e[1:] for e in BINARY_ERRORS],
    ids=[e[0] for e in BINARY_ERRORS],
)
async def test_binary_sizes_must_add_up(client, changes, tail, message):
    body, headers = binary_with(changes, tail)
    response = await post(client, body, **headers)
    assert response.status_code == 400
    assert response.json() == {"error": message}


@pytest.mark.anyio
async def test_binary_data_cut_short(client):
    body, headers = binary_request(np.zeros((2, 3), "<f4"), np.zeros(2, "<i8"))
    response = await post(client, body[:-8], **headers)
    assert response.status_code == 400
    assert response.json() == {
        "error": "Input 'labels' needs 16 bytes of binary data; only 8 are left in the body"
    }


@pytest.mark.anyio
async def test_header_length_past_the_body(client):
    response = await post(client, json_request(), **{"Inference-Header-Content-Length": "99999"})
    assert response.status_code == 400
    assert response.json()["error"].startswith("Inference-Header-Content-Length is '99999'")


@pytest.mark.anyio
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/json"]
)
async def test_any_content_type_is_read_as_triton_reads_it(client, content_type):
    """Triton ignores Content-Type on infer (``curl -d`` sends a form's type): the body is JSON,
    or binary where Inference-Header-Content-Length says so."""
    expected = await post(client, json_request())
    response = await post(client, json_request(), **{"Content-Type": content_type})
    assert response.status_code == 200, response.text
    assert response.content == expected.content


@pytest.mark.anyio
async def test_unknown_parameters_are_taken_and_named_as_ignored(client):
    """As KServe and Triton take them; the response names each, so a misspelt option shows."""
    plain = (await post(client, json_request())).json()
    body = json_request(parameters={"temperature": 2, "smooth_max_beta": 1000.0})
    body["inputs"][0]["parameters"] = {"content_type": "str"}
    body["outputs"] = [{"name": "ce", "parameters": {"classification": 2}}, {"name": "total"}]
    answer = (await post(client, body)).json()
    assert answer["parameters"] == {
        "ignored": [
            "parameters.temperature",
            "inputs.logits.parameters.content_type",
            "outputs.ce.parameters.classification",
        ]
    }
    by_name = {output["name"]: output["data"] for output in plain["outputs"]}
    assert [o["data"] for o in answer["outputs"]] == [by_name["ce"], by_name["total"]]
    assert "parameters" not in plain  # nothing ignored, nothing said


@pytest.mark.anyio
async def test_binary_data_output_is_for_the_outputs_not_listed(client):
    """A listed output follows its own binary_data, JSON without one, as both peers do."""
    body = json_request(parameters={"binary_data_output": True})
    binary = await post(client, body)
    assert binary.headers["content-type"] == "application/octet-stream"
    body["outputs"] = [{"name": "ce"}, {"name": "total", "parameters": {"binary_data": True}}]
    mixed = await post(client, body)
    split = int(mixed.headers["inference-header-content-length"])
    header = orjson.loads(mixed.content[:split])
    ce, total = header["outputs"]
    assert "data" in ce
    assert "parameters" not in ce
    assert total["parameters"] == {"binary_data_size": len(mixed.content) - split}


@pytest.mark.anyio
async def test_the_version_route_and_model_name_in_the_body(client):
    """KServe's InferenceRESTClient puts model_name (and model_version) in the body too."""
    expected = await post(client, json_request())
    named = json_request(model_name="fairloss", model_version="1")
    for path in ("/v2/models/fairloss/infer", "/v2/models/fairloss/versions/1/infer"):
        response = await client.post(path, json=named)
        assert response.status_code == 200, response.text
        assert response.content == expected.content
    other = await client.post("/v2/models/fairloss/infer", json=json_request(model_name="resnet"))
    assert other.status_code == 400
    assert other.json() == {"error": "The request names model 'resnet'; this is 'fairloss'"}
    version = await client.post("/v2/models/fairloss/versions/7/infer", json=json_request())
    assert version.status_code == 404


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v2/models/fairloss/infer", 405),
        ("POST", "/v2/health/live", 405),
        ("GET", "/v2/no/such/path", 404),
        ("DELETE", "/v2/models/fairloss", 405),
    ],
)
async def test_every_error_on_a_protocol_path_is_its_error_form(client, method, path, status):
    response = await client.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"error"}


@pytest.mark.anyio
async def test_input_over_the_element_limit_names_the_ways_to_send_more(client):
    request = with_input(0, shape=[101, 2], data=[0.5] * 202)
    response = await post(client, request)
    assert response.status_code == 400
    assert response.json() == {
        "error": f"101 x 2 = 202 elements is more than this server's limit of {ELEMENTS}. "
        "To send more: the Python client (Client, in the fairloss_client package) splits any "
        "number "
        "of rows into requests under this server's limits; or raise FAIRLOSS_MAX_ELEMENTS on "
        "the server."
    }


@pytest.mark.anyio
async def test_body_over_the_limit_gets_413(client):
    request = with_input(0, shape=[2, 300], data=[0.123456789] * 600)
    response = await post(client, request)
    assert response.status_code == 413
    error = response.json()["error"]
    assert error.startswith(f"The request body is larger than the limit of {LIMIT} bytes. ")
    assert "the Python client (Client, in the fairloss_client package) splits" in error
    assert error.endswith("or raise FAIRLOSS_MAX_BODY_BYTES on the server.")


@pytest.mark.anyio
async def test_unknown_model_gets_404(client):
    response = await client.post("/v2/models/resnet/infer", content=orjson.dumps(json_request()))
    assert response.status_code == 404
    assert response.json() == {"error": "Unknown model 'resnet'; this server has 'fairloss'"}


@pytest.mark.anyio
async def test_bootstrap_intervals_as_an_output(client):
    rng = np.random.default_rng(4)
    logits, labels = rng.normal(size=(60, 3)), rng.integers(0, 3, 60)
    request = {
        "inputs": [
            tensor("logits", "FP64", [60, 3], logits.ravel().tolist()),
            tensor("labels", "INT64", [60], labels.tolist()),
        ],
        "outputs": [{"name": "intervals"}, {"name": "total"}],
        "parameters": {"bootstrap": {"replicates": 80, "seed": 2}, "row_offset": 7},
    }
    response = await post(client, request)
    assert response.status_code == 200, response.text
    out = {o["name"]: o for o in response.json()["outputs"]}
    assert out["intervals"]["shape"] == [9, 3]
    batch = fairloss.score_batch(logits, labels, bootstrap=Bootstrap(80, seed=2), row_offset=7)
    want = intervals(batch.sums, 0.95)
    got = np.array(out["intervals"]["data"]).reshape(9, 3)
    for row, name in zip(got, CRITERIA, strict=True):
        assert row.tolist() == pytest.approx([want[name][k] for k in ("estimate", "low", "high")])
    without = await post(client, {**request, "parameters": {}})
    assert without.json() == {"error": "Output 'intervals' needs the parameter 'bootstrap'"}
    bad = await post(client, {**request, "parameters": {"bootstrap": {"replicates": 0}}})
    assert bad.status_code == 400
    assert bad.json()["error"].startswith("Expected `bootstrap.replicates` to be an integer")


@pytest.mark.anyio
async def test_an_unexpected_failure_is_a_500_in_the_protocol_s_form(client, monkeypatch):
    """Written by the app's one error mechanism, by path, as its 401, 404 and 405 are."""

    def fail(*_: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("service.routes.v2.infer", fail)
    response = await post(client, json_request())
    assert response.status_code == 500
    assert response.json() == {"error": "The server failed to answer this request."}
