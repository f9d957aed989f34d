"""Liveness, readiness and what this server is."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from fastapi import APIRouter, Request

import fairloss
from fairloss.options import ScoringOptions
from service.deps import DevicesDep, SettingsDep
from service.errors import ProblemError
from service.responses import problems
from service.schemas import ResponseOptions

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Live: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Ready: devices prepared, taking requests", responses=problems(503))
async def readyz(request: Request) -> dict[str, str]:
    if not getattr(request.app.state, "ready", False):
        raise ProblemError(503, "Not ready", "The server is starting or shutting down.")
    return {"status": "ready"}


@router.get("/info", summary="Version, devices, defaults and limits")
async def info(settings: SettingsDep, devices: DevicesDep) -> dict[str, Any]:
    options = {k: v for k, v in asdict(ScoringOptions()).items() if k != "device"}
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
    }
