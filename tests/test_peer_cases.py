"""The cases of Triton's own HTTP tests (server repository, qa/L0_http/http_test.py) that apply
to a model of two inputs, restated for ours: the model's name, inputs, shapes and datatypes
changed, each case's point kept. Where Triton's answer is a server fault (a negative dimension
is its 500), ours is the 400 the protocol's other faults get. After every refused request the
server is still live."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.anyio
INFER = "/v2/models/fairloss/infer"
LOGITS = {
    "name": "logits",
    "datatype": "FP32",
    "shape": [2, 3],
    "data": [0.34, 0.33, 0.33, 0.49, 0.51, 0],
}
LABELS = {"name": "labels", "datatype": "INT64", "shape": [2], "data": [0, 0]}


async def refused(client: httpx.AsyncClient, said: str, **request: Any) -> None:
    response = await client.post(INFER, **request)
    assert response.status_code == 400, response.text
    assert said in response.json()["error"]
    assert (await client.get("/v2/health/live")).status_code == 200


async def test_a_raw_binary_request_needs_a_model_of_one_input(client: httpx.AsyncClient) -> None:
    """Triton's test_multi_inputs: Inference-Header-Content-Length 0 sends one input's bytes
    with no header, which a model of several inputs cannot take."""
    body = np.arange(8, dtype=np.float32).tobytes()
    headers = {"Inference-Header-Content-Length": "0"}
    await refused(client, "a raw binary request", content=body, headers=headers)


async def test_a_chunked_body_is_read_whole(client: httpx.AsyncClient) -> None:
    """Triton's test_content_encoding_chunked_manually: a body sent in chunks."""
    body = json.dumps({"inputs": [LOGITS, LABELS]}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for k in range(0, len(body), 7):
            yield body[k : k + 7]

    plain = await client.post(INFER, content=body)
    chunked = await client.post(INFER, content=chunks())
    assert chunked.status_code == 200, chunked.text
    assert chunked.json() == plain.json()


@pytest.mark.parametrize("shape", [[2**4, 2**60 + 2], [2**2, 2**60 + 2], [2**62, 2**62]])
async def test_a_shape_whose_size_overflows_is_refused(
    client: httpx.AsyncClient, shape: list[int]
) -> None:
    """Triton's test_buffer_size_overflow: sizes whose product, or its bytes, pass 64 bits."""
    tensor = {**LOGITS, "shape": shape, "data": [1.0]}
    await refused(client, "its sizes multiply past 2**48", json={"inputs": [tensor, LABELS]})


async def test_a_negative_dimension_is_refused(client: httpx.AsyncClient) -> None:
    """Triton's test_negative_dimensions (a 500 there)."""
    tensor = {**LOGITS, "shape": [2, -5]}
    await refused(client, "has shape [2, -5]", json={"inputs": [tensor, LABELS]})


async def test_data_nested_too_deep_is_refused(client: httpx.AsyncClient) -> None:
    """Triton's test_json_recursion_depth_limit: ``data`` nested 120 deep."""
    deep: Any = 1.0
    for _ in range(120):
        deep = [deep]
    tensor = {**LOGITS, "shape": [1, 1], "data": deep}
    response = await client.post(INFER, json={"inputs": [tensor, LABELS]})
    assert response.status_code == 400, response.text
    assert "error" in response.json()
    assert (await client.get("/v2/health/live")).status_code == 200


async def test_an_output_named_twice_is_refused(client: httpx.AsyncClient) -> None:
    """Triton's test_duplicate_output_names."""
    outputs = [{"name": "total"}, {"name": "total"}]
    await refused(
        client, "each at most once", json={"inputs": [LOGITS, LABELS], "outputs": outputs}
    )
