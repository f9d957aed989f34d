"""KServe's own Python client (``kserve.InferenceRESTClient``, v2 protocol) against a real server:
health, readiness and inference as a KServe user calls them, unchanged. Its client sends
``model_name`` in the body and parses the health routes' bodies as JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import torch
from kserve.inference_client import InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

from fairloss import fair_loss_terms
from tests.conftest import running_server

pytestmark = pytest.mark.anyio
LOGITS = np.array([[0.34, 0.33, 0.33], [0.49, 0.51, 0.0], [2.0, -1.0, 0.5]], dtype=np.float32)
LABELS = np.array([0, 0, 2], dtype=np.int64)


@pytest.fixture(scope="module")
def url() -> Any:
    with running_server() as server:
        yield server.url


@pytest.fixture
async def client() -> AsyncIterator[InferenceRESTClient]:
    kserve = InferenceRESTClient(RESTConfig(protocol="v2", verbose=False))
    yield kserve
    await kserve.close()


def _inputs(binary: bool) -> list[InferInput]:
    logits = InferInput("logits", list(LOGITS.shape), "FP32")
    logits.set_data_from_numpy(LOGITS, binary_data=binary)
    labels = InferInput("labels", list(LABELS.shape), "INT64")
    labels.set_data_from_numpy(LABELS, binary_data=binary)
    return [logits, labels]


def _expected() -> dict[str, np.ndarray[Any, Any]]:
    terms = fair_loss_terms(torch.from_numpy(LOGITS), torch.from_numpy(LABELS))
    return {name: getattr(terms, name).numpy() for name in ("ce", "penalty", "total")}


async def test_health_and_readiness_as_kserve_reads_them(
    client: InferenceRESTClient, url: str
) -> None:
    assert await client.is_server_live(url) is True
    assert await client.is_server_ready(url) is True
    assert await client.is_model_ready(url, "fairloss") is True


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
async def test_infer_as_kserve_sends_it(
    client: InferenceRESTClient, url: str, binary: bool
) -> None:
    request = InferRequest(model_name="fairloss", infer_inputs=_inputs(binary), request_id="k1")
    response = await client.infer(url, request, model_name="fairloss")
    assert response.id == "k1"
    got = {output.name: output.as_numpy() for output in response.outputs}
    for name, want in _expected().items():
        np.testing.assert_array_equal(got[name], want, err_msg=name)


async def test_a_listed_output_as_binary(client: InferenceRESTClient, url: str) -> None:
    outputs = [RequestedOutput("total", parameters={"binary_data": True}), RequestedOutput("ce")]
    request = InferRequest(
        model_name="fairloss", infer_inputs=_inputs(True), request_outputs=outputs
    )
    response = await client.infer(url, request, model_name="fairloss")
    got = {output.name: output.as_numpy() for output in response.outputs}
    assert list(got) == ["total", "ce"]
    np.testing.assert_array_equal(got["total"], _expected()["total"])
    np.testing.assert_array_equal(got["ce"], _expected()["ce"])
