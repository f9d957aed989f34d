"""Response classes and the documented error responses shared by the routes."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse

from service.errors import PROBLEM_MEDIA_TYPE
from service.schemas import Problem


class JSONBytes(JSONResponse):
    """A JSON response whose body is already serialised (or is serialised with orjson).

    A `JSONResponse` subclass, so that FastAPI documents the route's ``response_model``.
    """

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error responses, all problem+json (`Problem` is added by the app)."""
    schema = {"$ref": f"#/components/schemas/{Problem.__name__}"}
    return {
        status: {"content": {PROBLEM_MEDIA_TYPE: {"schema": schema}}, "description": "Problem"}
        for status in statuses
    }
