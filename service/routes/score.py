"""``POST /score`` and ``POST /compare``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from service.admission import Admission
from service.json_codec import Reply, compare_body, score_body
from service.memory import JSON_COST, Reserve
from service.observability import record_batch
from service.payload import reader, require_json
from service.request_schemas import CompareRequest, ScoreRequest
from service.responses import JSONBytes, problems
from service.schemas import CompareResult, ScoreResult
from service.settings import Settings

router = APIRouter(tags=["scoring"])

Handler = Callable[[bytes | bytearray, str, int, Reserve], Reply]
ERRORS = problems(400, 413, 415, 422, 503)


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


async def _answer(request: Request, handler: Handler) -> JSONBytes:
    """``handler`` on the request's body, within the admission limit; the app's state is read
    here rather than through dependencies, which cost a small batch a tenth of its time."""
    state = request.app.state
    settings: Settings = state.settings
    admission: Admission = state.admission
    device: str = state.devices.default
    require_json(request)
    receive, discard = reader(request, settings)
    reply = await admission.compute(
        receive,
        lambda body, reserve: handler(body, device, settings.max_elements, reserve),
        settings.request_timeout_s,
        JSON_COST,
        discard,
    )
    record_batch(request, reply.n, reply.num_classes, reply.device)
    return JSONBytes(reply.body)


@router.post(
    "/score",
    response_model=ScoreResult,
    response_class=JSONBytes,
    responses=ERRORS,
    openapi_extra=_body_doc(ScoreRequest),
    summary="Per-sample cross-entropy, penalty and total of one batch",
)
async def score(request: Request) -> JSONBytes:
    return await _answer(request, score_body)


@router.post(
    "/compare",
    response_model=CompareResult,
    response_class=JSONBytes,
    responses=ERRORS,
    openapi_extra=_body_doc(CompareRequest),
    summary="Score candidates against the same labels, rank them, count superior violations",
)
async def compare(request: Request) -> JSONBytes:
    return await _answer(request, compare_body)
