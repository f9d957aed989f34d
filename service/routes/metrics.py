"""``GET /metrics``: the Prometheus text exposition, summed over the server's worker processes
(`service.observability.Metrics.exposition`); with one, of this app's own registry."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from service.observability import Metrics

router = APIRouter(tags=["observability"])
TEXT = {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Metrics"}


@router.get(
    "/metrics",
    summary="Requests, latency, samples scored, computations in flight, rejections",
    response_class=Response,
    responses={200: TEXT},
)
async def metrics(request: Request) -> Response:
    registry: Metrics = request.app.state.metrics
    return Response(registry.exposition(), media_type=CONTENT_TYPE_LATEST)
