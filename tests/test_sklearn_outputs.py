"""scikit-learn's outputs, saved as a pipeline saves them, scored through every surface (the
core, ``/score``, the client, the CLI in process and with ``--url``, from ``.npz``, Parquet and
CSV) at the default precision (float32), each giving scikit-learn's own ``accuracy_score`` and
``log_loss`` of the same outputs. The dashboard's part is in `tests.test_dashboard`."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from fairloss import score_batch
from fairloss_client import Client
from fairloss_client.cli import main
from tests.conftest import running_server
from tests.sklearn_models import Outputs, outputs
from tests.test_oip_inputs import body_of, outputs_of

LOG_LOSS_RTOL = 1e-6  # float32 against scikit-learn's float64
CASES = [(o, kind) for o in outputs() for kind in o.predictions]
IDS = [f"{o.name}-{kind}" for o, kind in CASES]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with running_server() as server:
        yield server.url


def check(metrics: dict[str, Any], want: Outputs) -> None:
    assert metrics["log_loss"] == pytest.approx(want.log_loss, rel=LOG_LOSS_RTOL)
    assert metrics["accuracy"] == pytest.approx(want.accuracy, abs=1e-12)


@pytest.mark.parametrize(("want", "kind"), CASES, ids=IDS)
def test_the_core(want: Outputs, kind: Any) -> None:
    check(score_batch(want.predictions[kind], want.labels, kind=kind).metrics, want)


def typed(array: np.ndarray[Any, Any]) -> dict[str, Any]:
    data = base64.b64encode(np.ascontiguousarray(array, "<f8").tobytes()).decode()
    return {"dtype": "float64", "shape": list(array.shape), "data": data}


@pytest.mark.anyio
@pytest.mark.parametrize(("want", "kind"), CASES, ids=IDS)
async def test_score_route(client: httpx.AsyncClient, want: Outputs, kind: str) -> None:
    """JSON numbers (float64, clipped at float64's epsilon as scikit-learn clips them), and a
    typed float64 array where -inf needs one (JSON numbers cannot be infinite)."""
    values = want.predictions[kind]
    sent = typed(values) if np.isneginf(values).any() else values.tolist()
    body = {kind: sent, "labels": want.labels.tolist(), "per_sample": False}
    response = await client.post("/score", json=body)
    assert response.status_code == 200, response.text
    check(response.json()["metrics"], want)


@pytest.mark.parametrize(("want", "kind"), CASES, ids=IDS)
def test_the_client(server_url: str, want: Outputs, kind: Any) -> None:
    with Client(server_url, progress=False) as client:
        check(client.score(want.predictions[kind], want.labels, kind=kind).metrics, want)
        json_lists = Client(server_url, progress=False, typed_arrays=False)
        with json_lists:  # -inf goes as the lowest float64, which clips the same
            check(json_lists.score(want.predictions[kind], want.labels, kind=kind).metrics, want)


def saved(want: Outputs, kind: str, folder: Path) -> list[Path]:
    """The outputs as .npz, as Parquet (a list column, or a number column for (N) scores) and as
    CSV (columns ``KIND_0 ...`` as ``add_prefix`` names them)."""
    values = want.predictions[kind]
    npz = folder / f"{want.name}.npz"
    np.savez(npz, labels=want.labels, **{kind: values})  # type: ignore[arg-type]
    column = list(values) if values.ndim == 2 else values
    parquet = folder / f"{want.name}.parquet"
    pd.DataFrame({kind: column, "labels": want.labels}).to_parquet(parquet)
    wide = pd.DataFrame(values.reshape(len(values), -1)).add_prefix(f"{kind}_")
    csv = folder / f"{want.name}.csv"
    wide.assign(labels=want.labels).to_csv(csv, index=False)
    return [npz, parquet, csv]


@pytest.mark.parametrize("remote", [False, True], ids=["in-process", "url"])
@pytest.mark.parametrize(("want", "kind"), CASES, ids=IDS)
def test_the_command_line(
    capsys: Any, tmp_path: Path, server_url: str, want: Outputs, kind: str, remote: bool
) -> None:
    url = ["--url", server_url] if remote else []
    for path in saved(want, kind, tmp_path):
        output = tmp_path / "answer.json"
        code = main(["score", str(path), "--output", str(output), "--no-progress", *url])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert err == "", err  # no warning: these are what they say they are
        check(json.loads(output.read_text())["metrics"], want)
        assert f"log_loss        {want.log_loss:.6f}" in out


@pytest.mark.anyio
@pytest.mark.parametrize(("want", "kind"), CASES, ids=IDS)
async def test_open_inference_protocol(client: httpx.AsyncClient, want: Outputs, kind: str) -> None:
    """FP64 binary tensors (which carry -inf), any shape predictions take: the mean
    cross-entropy is scikit-learn's log loss."""
    values = want.predictions[kind]
    tensors = [(kind, "FP64", values), ("labels", "INT64", want.labels)]
    body, headers = body_of(tensors, binary=True, outputs=[{"name": "reduced"}])
    response = await client.post("/v2/models/fairloss/infer", content=body, headers=headers)
    reduced = outputs_of(response)["reduced"]
    assert reduced[0] == pytest.approx(want.log_loss, rel=LOG_LOSS_RTOL)
