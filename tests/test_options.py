"""One list of options: the same names, and the same numbers, on every surface.

The JSON schema of ``/score``, the Open Inference Protocol's parameters, the client's keyword
arguments and the command line's flags all come from `fairloss.ScoringOptions`. Each option,
set to a value other than its default, gives the numbers the core gives, on each surface.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from asgi_lifespan import LifespanManager

from fairloss import ScoringOptions, score_batch
from fairloss.options import OPTION_NAMES
from fairloss_client import AsyncClient
from fairloss_client.cli import _parser, main
from service.app import create_app
from service.request_schemas import ResponseOptions
from service.settings import Settings

pytestmark = pytest.mark.anyio

RNG = np.random.default_rng(7)
LOGITS = RNG.normal(size=(40, 3)).astype(np.float32)
LABELS = RNG.integers(0, 3, size=40)
# Each option away from its default (ignore_index 2 leaves out the samples labelled 2).
NOT_DEFAULT: dict[str, Any] = {
    "smooth_max_beta": 5.0,
    "scaling_factor": 3.0,
    "class_weights": [1.0, 2.0, 0.5],
    "label_smoothing": 0.1,
    "ignore_index": 2,
    "reduction": "sum",
    "precision": "float64",
    "device": "cpu",
    "ece_bins": 7,
}
CHANGES_TOTALS = {
    "smooth_max_beta",
    "scaling_factor",
    "class_weights",
    "label_smoothing",
    "ignore_index",
}
ARRAY_FLAGS = {"labels", "url", "api_key", "output", "concurrency", "progress", "file", "help"}
ARRAY_FLAGS |= {"bootstrap", "confidence_level", "seed"}  # resampling, not a scoring option
ARRAY_FLAGS |= {"groups", "per_class"}  # where: classes and slices, not scoring options
ARRAY_FLAGS |= {"kind", "predictions_key", "labels_key", "weight_key"}  # what the files hold


@pytest.fixture
async def transport() -> AsyncIterator[httpx.ASGITransport]:
    app = create_app(Settings())
    async with LifespanManager(app) as manager:
        yield httpx.ASGITransport(app=manager.app)


@pytest.fixture
async def http(transport: httpx.ASGITransport) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_the_four_option_sets_are_one(http: httpx.AsyncClient) -> None:
    schema = (await http.get("/openapi.json")).json()["components"]["schemas"]["ScoreRequest"]
    inputs = {"logits", "probabilities", "log_probabilities", "labels", "sample_weight"}
    inputs |= {"bootstrap", "row_offset", "groups", "group_counts"}  # not scoring options
    json_options = set(schema["properties"]) - inputs - set(ResponseOptions.model_fields)
    (commands,) = (a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    cli_flags = {a.dest for a in commands.choices["score"]._actions} - ARRAY_FLAGS
    client_kwargs = {f.name for f in fields(ScoringOptions)}  # Client.score(**options)
    oip = {name for name in NOT_DEFAULT if await _oip_accepts(http, name)}
    assert json_options == cli_flags == client_kwargs == oip == set(OPTION_NAMES)
    assert set(NOT_DEFAULT) == set(OPTION_NAMES)
    assert not await _oip_accepts(http, "temperature")


async def _oip_accepts(http: httpx.AsyncClient, name: str) -> bool:
    """Whether OIP takes ``name`` as an option: answered, and not named among the ignored."""
    response = await http.post(
        "/v2/models/fairloss/infer", json=_infer({name: NOT_DEFAULT.get(name, 1)})
    )
    ignored = response.json().get("parameters", {}).get("ignored", [])
    return response.status_code == 200 and f"parameters.{name}" not in ignored


def _infer(parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "logits",
                "datatype": "FP32",
                "shape": list(LOGITS.shape),
                "data": LOGITS.ravel().tolist(),
            },
            {
                "name": "labels",
                "datatype": "INT64",
                "shape": [len(LABELS)],
                "data": LABELS.tolist(),
            },
        ],
        "outputs": [{"name": name} for name in ("total", "reduced", "ece")],
        "parameters": parameters,
    }


def _flags(name: str, value: Any) -> list[str]:
    shown = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return [f"--{name.replace('_', '-')}", shown]


@pytest.mark.parametrize("name", list(NOT_DEFAULT))
async def test_each_option_gives_the_core_numbers_on_every_surface(
    http: httpx.AsyncClient, transport: httpx.ASGITransport, tmp_path: Path, name: str
) -> None:
    value = NOT_DEFAULT[name]
    want = score_batch(LOGITS, LABELS, ScoringOptions(**{name: value}))
    total = want.columns["total"].numpy()
    reduced_total = want.reduced["total"]
    default = score_batch(LOGITS, LABELS)
    if name in CHANGES_TOTALS:  # the option is seen in the numbers compared below
        assert not np.allclose(total, default.columns["total"].numpy())
    if name in ("reduction", "ece_bins"):
        assert (reduced_total, want.metrics["ece"]) != (
            default.reduced["total"],
            default.metrics["ece"],
        )

    body = {"logits": LOGITS.tolist(), "labels": LABELS.tolist(), name: value}
    scored = (await http.post("/score", json=body)).json()
    np.testing.assert_allclose(scored["per_sample"]["total"], total, rtol=1e-6)
    assert scored["reduced"]["total"] == pytest.approx(reduced_total, rel=1e-12)
    assert scored["metrics"]["ece"] == pytest.approx(want.metrics["ece"], rel=1e-12)

    outputs = (await http.post("/v2/models/fairloss/infer", json=_infer({name: value}))).json()
    by_name = {o["name"]: o["data"] for o in outputs["outputs"]}
    np.testing.assert_allclose(by_name["total"], total, rtol=1e-6)
    assert by_name["reduced"][2] == pytest.approx(reduced_total, rel=1e-12)
    assert by_name["ece"][0] == pytest.approx(want.metrics["ece"], rel=1e-12)

    async with AsyncClient("http://test", transport=transport) as client:
        result = await client.score(LOGITS, LABELS, **{name: value})
    np.testing.assert_allclose(result.per_sample["total"], total, rtol=1e-6)
    assert result.reduced["total"] == pytest.approx(reduced_total, rel=1e-12)
    assert result.metrics["ece"] == pytest.approx(want.metrics["ece"], rel=1e-12)

    data, output = tmp_path / "x.npz", tmp_path / "out.json"
    np.savez(data, logits=LOGITS, labels=LABELS)
    assert main(["score", str(data), "--output", str(output), *_flags(name, value)]) == 0
    written = json.loads(output.read_text())
    np.testing.assert_allclose(written["per_sample"]["total"], total, rtol=1e-6)
    assert written["reduced"]["total"] == pytest.approx(reduced_total, rel=1e-12)
    assert written["metrics"]["ece"] == pytest.approx(want.metrics["ece"], rel=1e-12)
