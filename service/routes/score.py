"""``POST /score`` and ``POST /compare``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from service.deps import AdmissionDep, DevicesDep, SettingsDep
from service.json_codec import Reply, compare_body, score_body
from service.observability import record_batch
from service.payload import read_body, require_json
from service.responses import JSONBytes, problems
from service.schemas import CompareRequest, CompareResponse, ScoreRequest, ScoreResponse

router = APIRouter(tags=["scoring"])

Handler = Callable[[bytes | bytearray, str, int], Reply]
ERRORS = problems(400, 413, 415, 422, 503)


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


async def _answer(
    request: Request,
    settings: SettingsDep,
    admission: AdmissionDep,
    devices: DevicesDep,
    handler: Handler,
) -> JSONBytes:
    require_json(request)
    reply = await admission.compute(
        lambda: read_body(request, settings.max_body_bytes),
        lambda body: handler(body, devices.default, settings.max_elements),
        settings.request_timeout_s,
    )
    record_batch(request, reply.n, reply.num_classes, reply.device)
    return JSONBytes(reply.body)


@router.post(
    "/score",
    response_model=ScoreResponse,
    response_class=JSONBytes,
    responses=ERRORS,
    openapi_extra=_body_doc(ScoreRequest),
    summary="Per-sample cross-entropy, penalty and total of one batch",
)
async def score(
    request: Request, settings: SettingsDep, admission: AdmissionDep, devices: DevicesDep
) -> JSONBytes:
    return await _answer(request, settings, admission, devices, score_body)


@router.post(
    "/compare",
    response_model=CompareResponse,
    response_class=JSONBytes,
    responses=ERRORS,
    openapi_extra=_body_doc(CompareRequest),
    summary="Score candidates against the same labels, rank them, count superior violations",
)
async def compare(
    request: Request, settings: SettingsDep, admission: AdmissionDep, devices: DevicesDep
) -> JSONBytes:
    return await _answer(request, settings, admission, devices, compare_body)
