"""Device names: what `auto`, `cpu`, `cuda` and `cuda:K` resolve to, and the 422 otherwise."""

from __future__ import annotations

import httpx
import pytest
import torch
from asgi_lifespan import LifespanManager

from fairloss.devices import available_devices, resolve_device
from fairloss.errors import InputError
from service.app import create_app
from service.errors import input_problem
from service.settings import Settings
from tests.conftest import README_EXAMPLE

CPU_ONLY = ["cpu"]
TWO_GPUS = ["cpu", "cuda:0", "cuda:1"]
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_available_devices_match_torch() -> None:
    devices = available_devices()
    assert devices == ("cpu", *(f"cuda:{k}" for k in range(torch.cuda.device_count())))


@pytest.mark.parametrize(
    ("name", "devices", "want"),
    [
        ("auto", CPU_ONLY, "cpu"),
        ("auto", TWO_GPUS, "cuda:0"),
        ("cpu", CPU_ONLY, "cpu"),
        ("cpu", TWO_GPUS, "cpu"),
        ("cuda", TWO_GPUS, "cuda:0"),
        ("cuda:0", TWO_GPUS, "cuda:0"),
        ("cuda:1", TWO_GPUS, "cuda:1"),
        ("cuda:01", TWO_GPUS, "cuda:1"),
    ],
)
def test_resolve_device(name: str, devices: list[str], want: str) -> None:
    assert resolve_device(name, devices) == want


@pytest.mark.parametrize(
    ("name", "devices", "kind", "detail"),
    [
        ("cuda", CPU_ONLY, "device_unavailable", "Device 'cuda' does not exist on this server"),
        ("cuda:0", CPU_ONLY, "device_unavailable", "Device 'cuda:0' does not exist"),
        ("cuda:2", TWO_GPUS, "device_unavailable", "Device 'cuda:2' does not exist"),
        ("gpu", TWO_GPUS, "unknown_device", "Unknown device 'gpu'"),
        ("CPU", CPU_ONLY, "unknown_device", "Unknown device 'CPU'"),
        ("cuda:", TWO_GPUS, "unknown_device", "Unknown device 'cuda:'"),
        ("cuda:-1", TWO_GPUS, "unknown_device", "Unknown device 'cuda:-1'"),
        (" cpu", CPU_ONLY, "unknown_device", "Unknown device ' cpu'"),
        ("mps", CPU_ONLY, "unknown_device", "Unknown device 'mps'"),
        ("", CPU_ONLY, "unknown_device", "Unknown device ''"),
    ],
)
def test_resolve_device_refuses(name: str, devices: list[str], kind: str, detail: str) -> None:
    with pytest.raises(InputError) as raised:
        resolve_device(name, devices)
    problem = input_problem(raised.value)
    assert problem.status == 422
    assert problem.detail.startswith(detail)
    assert problem.detail.endswith(f"Devices here: {', '.join(devices)}")
    assert problem.errors == [{"loc": ["device"], "msg": problem.detail, "type": kind}]


@pytest.mark.anyio
async def test_server_default_device_that_does_not_exist_stops_startup() -> None:
    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    app = create_app(Settings(device="cuda:7"))
    with pytest.raises(RuntimeError, match=r"FAIRLOSS_DEVICE='cuda:7'.*Devices here: cpu"):
        async with LifespanManager(app):
            pass


@pytest.mark.anyio
async def test_server_default_device_is_used_and_reported() -> None:
    app = create_app(Settings(device="cpu"))
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://test"
        ) as client,
    ):
        info = (await client.get("/info")).json()
        assert info["default_device"] == "cpu"
        assert info["devices"] == list(available_devices())
        response = await client.post("/score", json=README_EXAMPLE)
        assert response.status_code == 200
        assert response.json()["device"] == "cpu"


@needs_gpu
@pytest.mark.anyio
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "auto"])
async def test_score_on_the_gpu_matches_the_cpu(client: httpx.AsyncClient, device: str) -> None:
    cpu = (await client.post("/score", json={**README_EXAMPLE, "device": "cpu"})).json()
    response = await client.post("/score", json={**README_EXAMPLE, "device": device})
    assert response.status_code == 200, response.text
    gpu = response.json()
    assert gpu["device"] == "cuda:0"
    for term in ("ce", "penalty", "total"):
        assert gpu["per_sample"][term] == pytest.approx(cpu["per_sample"][term], rel=1e-5)
    assert gpu["per_sample"]["correct"] == cpu["per_sample"]["correct"]
