"""Liveness, readiness and what this server is."""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any

import torch
from fastapi import APIRouter, Request

import fairloss
from fairloss.options import ScoringOptions
from service.deps import DevicesDep, SettingsDep
from service.errors import ProblemError
from service.memory import Ledger
from service.request_schemas import ResponseOptions
from service.responses import problems

router = APIRouter(tags=["health"])


# HEAD as well, as uptime monitors probe (outside the schema: one operation per route).
@router.head("/healthz", include_in_schema=False)
@router.get("/healthz", summary="Live: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.head("/readyz", include_in_schema=False)
@router.get("/readyz", summary="Ready: devices prepared, taking requests", responses=problems(503))
async def readyz(request: Request) -> dict[str, str]:
    if not getattr(request.app.state, "ready", False):
        raise ProblemError(503, "Not ready", "The server is starting or shutting down.")
    return {"status": "ready"}


@router.get("/info", summary="Version, devices, defaults, limits, memory budget and workers")
async def info(request: Request, settings: SettingsDep, devices: DevicesDep) -> dict[str, Any]:
    """``limits`` hold in each worker process; ``memory`` is the budget the workers share, in
    bytes, and what their requests hold of it now; ``server`` says how many workers there are
    (``0``: not known, for an app not served by ``python -m service``), which one answered
    (``worker_pid``) and its torch threads."""
    options = {k: v for k, v in asdict(ScoringOptions()).items() if k != "device"}
    ledger: Ledger = request.app.state.admission.ledger
    return {
        "version": fairloss.__version__,
        "torch_version": torch.__version__,
        "devices": devices.available,
        "default_device": devices.default,
        "defaults": {**options, **ResponseOptions().model_dump()},
        "limits": {
            "max_body_bytes": settings.max_body_bytes,
            "max_elements": settings.max_elements,
            "max_concurrency": settings.max_concurrency,
        },
        "memory": {"budget_bytes": ledger.budget, "held_bytes": ledger.held()},
        "server": {
            "workers": settings.workers,
            "worker_pid": os.getpid(),
            "torch_threads": torch.get_num_threads(),
        },
    }
