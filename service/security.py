"""Optional API keys (``Authorization: Bearer <key>``), as a pure ASGI middleware.

With no keys configured the middleware is not installed. With keys, every route but the health
probes, the dashboard's page and the API's description needs one; keys are compared in
constant time, and each request is compared with every key, so the time taken says nothing
about which key came close.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import PROBLEM_MEDIA_TYPE, ProblemError, is_oip, respond

# The health probes, which orchestrators call without credentials; the dashboard's page and
# files, which a browser loads without them (its API calls then send the key); and the API's
# description and its pages, from which code generators (openapi-typescript, @hey-api) and
# people read the API before they hold a key (it says which routes need one).
OPEN_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/",
        "/openapi.json",
        "/openapi-3.0.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
    }
)
OPEN_PREFIXES = ("/v2/health/", "/static/")
REALM = 'Bearer realm="fairloss"'


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def bearer_token(authorization: str | None) -> bytes | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip().encode("latin-1")


def matches_any(token: bytes, keys: Sequence[bytes]) -> bool:
    found = False
    for key in keys:
        found |= hmac.compare_digest(token, key)
    return found


def _unauthorized(token_given: bool) -> ProblemError:
    if token_given:
        detail = "The API key is not valid."
        challenge = f'{REALM}, error="invalid_token"'
    else:
        detail = "This server needs an API key: send Authorization: Bearer <key>."
        challenge = REALM
    return ProblemError(401, "Unauthorized", detail, headers={"WWW-Authenticate": challenge})


class BearerAuthMiddleware:
    def __init__(self, app: ASGIApp, keys: Sequence[str]) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        token = bearer_token(Headers(scope=scope).get("authorization"))
        if token is not None and matches_any(token, self.keys):
            await self.app(scope, receive, send)
            return
        response = respond(scope["path"], _unauthorized(token is not None))
        await response(scope, receive, send)


def document_api_keys(schema: dict[str, Any]) -> None:
    """Declare the bearer scheme in an OpenAPI schema, and a 401 on each route that needs it."""
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["apiKey"] = {
        "type": "http",
        "scheme": "bearer",
    }
    problem = {"$ref": "#/components/schemas/Problem"}
    unauthorized = {
        "description": "Missing or wrong API key",
        "content": {PROBLEM_MEDIA_TYPE: {"schema": problem}},
    }
    oip_unauthorized = {  # the protocol's own error form, as every error on its paths
        "description": "Missing or wrong API key",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ProtocolError"}}},
    }
    for path, operations in schema.get("paths", {}).items():
        if is_open(path):
            continue
        for operation in operations.values():
            operation["security"] = [{"apiKey": []}]
            responses = operation.setdefault("responses", {})
            responses["401"] = oip_unauthorized if is_oip(path) else unauthorized
