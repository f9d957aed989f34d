"""The Open Inference Protocol (KServe V2 / Triton): health, metadata and ``infer``.

The protocol's errors are ``{"error": "..."}``, so this router's routes are `OipRoute`s: they
write every `ProblemError` (the service's one domain error, raised by the shared body, admission
and device code too) in that form instead of problem+json. The protocol has no 422: a request
that cannot run is a 400.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from fairloss.errors import InputError
from service.deps import AdmissionDep, DevicesDep, SettingsDep
from service.errors import ProblemError, error_json
from service.observability import record_batch
from service.oip import HEADER_LENGTH, MODEL, MODEL_METADATA, SERVER_METADATA, Answer, infer
from service.payload import read_body
from service.responses import JSONBytes

log = logging.getLogger("service.v2")
ACCEPTED_MEDIA = ("application/json", "application/octet-stream")
ERROR_DOC = {"content": {"application/json": {"example": {"error": "..."}}}}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = error_json({"error": message})
    return Response(body, status, headers, media_type="application/json")


class OipRoute(APIRoute):
    """A route whose errors are written the protocol's way."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except ProblemError as exc:
                status = 400 if exc.status == 422 else exc.status
                return error_response(status, exc.detail, exc.headers)
            except InputError as exc:
                return error_response(400, exc.message)
            except Exception:
                log.exception("unhandled error on %s %s", request.method, request.url.path)
                return error_response(500, "The server failed to answer this request.")

        return handle


router = APIRouter(prefix="/v2", tags=["open inference protocol"], route_class=OipRoute)


def _model(name: str) -> None:
    if name != MODEL:
        raise ProblemError(404, "Not found", f"Unknown model {name!r}; this server has {MODEL!r}")


def _ready(request: Request) -> Response:
    if not getattr(request.app.state, "ready", False):
        raise ProblemError(400, "Not ready", "The server is starting or shutting down.")
    return Response(status_code=200)


@router.get("", summary="Server metadata")
async def server_metadata() -> JSONBytes:
    return JSONBytes(SERVER_METADATA)


EMPTY_DOC: dict[int | str, dict[str, Any]] = {200: {"content": {}, "description": "Empty body"}}


@router.get(
    "/health/live",
    summary="Live: 200 with an empty body",
    response_class=Response,
    responses=EMPTY_DOC,
)
async def live() -> Response:
    return Response(status_code=200)


@router.get(
    "/health/ready",
    summary="Ready: 200 with an empty body, else 400",
    response_class=Response,
    responses={**EMPTY_DOC, 400: ERROR_DOC},
)
async def ready(request: Request) -> Response:
    return _ready(request)


@router.get("/models/{model_name}", summary="Model metadata", responses={404: ERROR_DOC})
async def model_metadata(model_name: str) -> JSONBytes:
    _model(model_name)
    return JSONBytes(MODEL_METADATA)


@router.get(
    "/models/{model_name}/ready",
    summary="Model ready: 200 with an empty body",
    response_class=Response,
    responses={**EMPTY_DOC, 400: ERROR_DOC, 404: ERROR_DOC},
)
async def model_ready(model_name: str, request: Request) -> Response:
    _model(model_name)
    return _ready(request)


@router.post(
    "/models/{model_name}/infer",
    summary="Per-sample ce, penalty and total, JSON or binary tensors",
    response_class=JSONBytes,
    responses=dict.fromkeys((400, 404, 413, 415, 503), ERROR_DOC),
)
async def model_infer(
    model_name: str,
    request: Request,
    settings: SettingsDep,
    admission: AdmissionDep,
    devices: DevicesDep,
) -> Response:
    _model(model_name)
    content_type = request.headers.get("content-type")
    media = (content_type or "application/json").split(";", 1)[0].strip().lower()
    if media not in ACCEPTED_MEDIA:
        raise ProblemError(
            415,
            "Unsupported media type",
            f"Expected application/json, application/octet-stream or none, not {media}",
        )
    header_length = request.headers.get(HEADER_LENGTH)

    def work(body: bytearray) -> Answer:
        return infer(body, header_length, devices.default, settings.max_elements)

    answer = await admission.compute(
        lambda: read_body(request, settings.max_body_bytes), work, settings.request_timeout_s
    )
    record_batch(request, answer.n, answer.num_classes, answer.device)
    if answer.header_length is None:
        return JSONBytes(answer.body)
    return Response(
        answer.body,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(answer.header_length)},
    )
