"""The layers: the core imports no web stack; the client no server; one list of options."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

# A finder that refuses these modules, so that importing one fails loudly instead of working.
# Its spec has no origin, so a probe such as torch._dynamo's `find_spec` passes it by; any import
# of it raises ImportError.
BLOCK = """
import sys
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec

BLOCKED = {blocked!r}

class Refuse(MetaPathFinder, Loader):
    def find_spec(self, name, path=None, target=None):
        return ModuleSpec(name, self) if name.split(".")[0] in BLOCKED else None

    def create_module(self, spec):
        raise ImportError(f"{{spec.name}} is blocked in this test")

sys.meta_path.insert(0, Refuse())
"""
WEB_STACK = (
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "orjson",
    "simdjson",
    "tqdm",
    "pydantic",
    "pydantic_settings",
    "prometheus_client",
    "tenacity",
    "anyio",
    "service",
    "fairloss_client",
)
SERVER = ("fastapi", "starlette", "uvicorn", "pydantic", "simdjson", "prometheus_client")
HTTP = ("httpx", "tenacity", "tqdm")


def run_blocked(blocked: tuple[str, ...], code: str) -> str:
    script = BLOCK.format(blocked=set(blocked)) + textwrap.dedent(code)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_core_imports_and_trains_with_the_web_stack_blocked() -> None:
    out = run_blocked(
        WEB_STACK,
        """
        import torch
        from fairloss import FairLoss, ScoringOptions, score_batch

        model = torch.nn.Linear(4, 3)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
        loss = FairLoss()(model(x), y)
        loss.backward()
        optimizer.step()
        batch = score_batch(model(x).detach(), y, ScoringOptions(reduction="sum"))
        print(round(float(loss), 6) > 0, batch.n, sorted(batch.reduced))
        """,
    )
    assert out.split() == ["True", "8", "['ce',", "'penalty',", "'total']"]


def test_the_client_imports_without_the_server() -> None:
    """Nor the service's own code: the wire format both share is `fairloss_wire`."""
    out = run_blocked(
        (*SERVER, "service"),
        """
        from fairloss_client import AsyncClient, Client
        from fairloss_client.cli import main
        print("imported")
        """,
    )
    assert out.strip() == "imported"


def test_the_command_line_scores_files_without_the_http_stack(tmp_path) -> None:
    """In process, `fairloss score` needs the core, numpy and orjson: not httpx, not the server."""
    path = tmp_path / "x.npz"
    np.savez(path, logits=np.array([[0.34, 0.33, 0.33], [0.49, 0.51, 0.0]]), labels=[0, 0])
    out = run_blocked(
        (*SERVER, *HTTP, "service"),
        f"""
        from fairloss_client.cli import main
        assert main(["score", {str(path)!r}]) == 0
        """,
    )
    assert "total (mean)    1.196682" in out


def test_the_service_imports_without_the_client() -> None:
    out = run_blocked(
        ("fairloss_client", "tqdm", "tenacity"),
        """
        from service.app import create_app
        create_app()
        print("imported")
        """,
    )
    assert out.strip() == "imported"
