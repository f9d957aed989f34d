"""The Open Inference Protocol (KServe V2 / Triton): health, metadata and ``infer``.

The protocol's errors are ``{"error": "..."}``: the app's error handlers write every error on a
``/v2`` path in that form (`service.errors.respond`), whatever raised it (these routes, the
shared body, admission and device code, routing's 404 and 405, the API keys' 401). The protocol
has no 422: a request that cannot run is a 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel
from starlette.responses import Response

from service.admission import Admission
from service.deps import AdmissionDep, Devices, DevicesDep, SettingsDep
from service.errors import ProblemError
from service.memory import BINARY_COST, JSON_COST, Reserve
from service.observability import record_batch
from service.oip import (
    HEADER_LENGTH,
    MODEL,
    MODEL_METADATA,
    SERVER_METADATA,
    VERSIONS,
    Answer,
    infer,
)
from service.oip_schemas import (
    InferenceResponse,
    Live,
    ModelMetadata,
    ModelReady,
    ProtocolError,
    Ready,
    ServerMetadata,
)
from service.payload import reader
from service.responses import JSONBytes
from service.settings import Settings

# Every error of the protocol's paths is {"error": ...} (401 and 413 included); "4XX" also keeps
# FastAPI from listing a 422, which these routes never answer.
ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ProtocolError, "description": "The request cannot run: why"},
    503: {"model": ProtocolError, "description": "Busy or timed out: retry after Retry-After"},
}


def _documented(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model, "description": "OK"}, **ERRORS}


router = APIRouter(prefix="/v2", tags=["open inference protocol"])


def _model(name: str, version: str | None = None) -> None:
    if name != MODEL:
        raise ProblemError(404, "Not found", f"Unknown model {name!r}; this server has {MODEL!r}")
    if version is not None and version not in VERSIONS:
        raise ProblemError(
            404, "Not found", f"Unknown version {version!r} of {MODEL!r}; it has {VERSIONS[0]!r}"
        )


def _ready(request: Request, body: dict[str, Any]) -> Response:
    """``body`` with 200 when ready (KServe's client reads it; Triton's reads the status),
    else 400 with the protocol's error."""
    if not getattr(request.app.state, "ready", False):
        raise ProblemError(400, "Not ready", "The server is starting or shutting down.")
    return JSONBytes(body)


@router.get("", summary="Server metadata", responses=_documented(ServerMetadata))
async def server_metadata() -> JSONBytes:
    return JSONBytes(SERVER_METADATA)


@router.get("/health/live", summary='Live: 200 with {"live": true}', responses=_documented(Live))
async def live() -> JSONBytes:
    return JSONBytes({"live": True})


@router.get(
    "/health/ready",
    summary='Ready: 200 with {"ready": true}, else 400',
    responses=_documented(Ready),
)
async def ready(request: Request) -> Response:
    return _ready(request, {"ready": True})


@router.get("/models/{model_name}", summary="Model metadata", responses=_documented(ModelMetadata))
async def model_metadata(model_name: str) -> JSONBytes:
    _model(model_name)
    return JSONBytes(MODEL_METADATA)


@router.get(
    "/models/{model_name}/versions/{model_version}",
    summary="Model metadata of a version (this model has one, '1')",
    responses=_documented(ModelMetadata),
)
async def version_metadata(model_name: str, model_version: str) -> JSONBytes:
    _model(model_name, model_version)
    return JSONBytes(MODEL_METADATA)


@router.get(
    "/models/{model_name}/ready",
    summary='Model ready: 200 with {"name": "fairloss", "ready": true}, else 400',
    responses=_documented(ModelReady),
)
async def model_ready(model_name: str, request: Request) -> Response:
    _model(model_name)
    return _ready(request, {"name": MODEL, "ready": True})


@router.get(
    "/models/{model_name}/versions/{model_version}/ready",
    summary="Model ready, of a version",
    responses=_documented(ModelReady),
)
async def version_ready(model_name: str, model_version: str, request: Request) -> Response:
    _model(model_name, model_version)
    return _ready(request, {"name": MODEL, "ready": True})


BINARY = (
    "a JSON header (InferenceRequest) of Inference-Header-Content-Length bytes, then each "
    "binary input's bytes in the order of its inputs; the answer likewise where outputs are binary"
)
INFER_DOC = {
    **ERRORS,
    200: {
        "model": InferenceResponse,
        "description": "OK",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
}
INFER_BODY = {
    "requestBody": {
        "required": True,
        "description": "JSON, or binary tensors: " + BINARY,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@dataclass(frozen=True)
class Serving:
    """What an infer request needs of the app."""

    settings: Settings
    admission: Admission
    devices: Devices


async def _serving(settings: SettingsDep, admission: AdmissionDep, devices: DevicesDep) -> Serving:
    return Serving(settings, admission, devices)


ServingDep = Annotated[Serving, Depends(_serving)]


@router.post(
    "/models/{model_name}/infer",
    summary="Per-sample ce, penalty and total, JSON or binary tensors",
    response_class=JSONBytes,
    responses=INFER_DOC,
    openapi_extra=INFER_BODY,
)
async def model_infer(model_name: str, request: Request, serving: ServingDep) -> Response:
    _model(model_name)
    return await _infer(request, serving)


@router.post(
    "/models/{model_name}/versions/{model_version}/infer",
    summary="Inference on a version (this model has one, '1')",
    response_class=JSONBytes,
    responses=INFER_DOC,
    openapi_extra=INFER_BODY,
)
async def version_infer(
    model_name: str, model_version: str, request: Request, serving: ServingDep
) -> Response:
    _model(model_name, model_version)
    return await _infer(request, serving)


async def _infer(request: Request, serving: Serving) -> Response:
    """The body is JSON, or a JSON header and binary tensors where the
    Inference-Header-Content-Length header says so, whatever Content-Type names (as Triton
    reads it: ``curl -d`` sends a form's type)."""
    header_length = request.headers.get(HEADER_LENGTH)
    settings = serving.settings

    def work(body: bytearray, reserve: Reserve) -> Answer:
        return infer(body, header_length, serving.devices.default, settings.max_elements, reserve)

    receive, discard = reader(request, settings)
    answer = await serving.admission.compute(
        receive,
        work,
        settings.request_timeout_s,
        JSON_COST if header_length is None else BINARY_COST,
        discard,
    )
    record_batch(request, answer.n, answer.num_classes, answer.device)
    if answer.header_length is None:
        return JSONBytes(answer.body)
    return Response(
        answer.body,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(answer.header_length)},
    )
