"""The API's description: ``/openapi.json`` (OpenAPI 3.1, as FastAPI writes it, made readable
by client generators) and ``/openapi-3.0.json`` (the same API in OpenAPI 3.0's words, for
generators that read only 3.0, such as oapi-codegen before 2.7)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.oip_schemas import InferenceRequest
from service.request_schemas import CompareRequest, ScoreRequest
from service.schemas import Problem
from service.security import document_api_keys

NULL = {"type": "null"}


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, plus the request bodies that the routes parse themselves."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (ScoreRequest, CompareRequest, InferenceRequest, Problem):
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            requests = {**body.pop("$defs", {}), model.__name__: body}
            if model is not Problem:
                requests = {name: optional_by_default(s) for name, s in requests.items()}
            components.update(requests)
        if app.state.settings.api_keys:
            document_api_keys(schema)
        app.openapi_schema = rewritten(schema, lambda node: _double(_inclusive(node)))
    return app.openapi_schema


def openapi_30_document(app: FastAPI) -> dict[str, Any]:
    """`openapi_30` of the app's document, made once."""
    if getattr(app.state, "openapi_30", None) is None:
        app.state.openapi_30 = openapi_30(app.openapi())
    document: dict[str, Any] = app.state.openapi_30
    return document


def rewritten(node: Any, rewrite: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """``node`` with ``rewrite`` applied to each of its objects, innermost first: a new copy,
    ``node`` left as it was. A map of names to schemas (``properties``, the components'
    ``schemas``) is walked into but is not itself rewritten: its keys are names, never
    keywords."""
    if isinstance(node, list):
        return [rewritten(item, rewrite) for item in node]
    if not isinstance(node, dict):
        return node
    found = {
        key: {name: rewritten(value, rewrite) for name, value in value.items()}
        if key in ("properties", "schemas") and isinstance(value, dict)
        else rewritten(value, rewrite)
        for key, value in node.items()
    }
    return rewrite(found)


def optional_by_default(schema: dict[str, Any]) -> dict[str, Any]:
    """A request body's schema with each property's ``default`` said in its description
    instead: openapi-typescript (7, by default) makes a property with a default required, so
    the README's two-field body would not compile; the default stays in plain words."""
    found = dict(schema)
    properties = {}
    for name, spec in schema.get("properties", {}).items():
        spec = dict(spec)
        if "default" in spec:
            default = spec.pop("default")
            if default is not None:
                said = json.dumps(default)
                spec["description"] = f"{spec.get('description', '')} (default {said})".strip()
        properties[name] = spec
    if properties:
        found["properties"] = properties
    return found


def _inclusive(found: dict[str, Any]) -> dict[str, Any]:
    """Each exclusive bound written as the inclusive bound that admits the same numbers:
    ``exclusiveMinimum: 0`` as ``minimum: 5e-324`` (the least positive float64),
    ``exclusiveMaximum: 1`` as ``maximum`` 1 - 2**-53, an integer's as the next integer. OpenAPI
    3.1 writes an exclusive bound as a number and 3.0 as a flag beside ``minimum``; tools of
    either (kin-openapi 0.110 refuses 3.1's) read an inclusive bound alike."""
    integer = found.get("type") == "integer"
    for exclusive, inclusive, step in (
        ("exclusiveMinimum", "minimum", 1),
        ("exclusiveMaximum", "maximum", -1),
    ):
        bound = found.pop(exclusive, None)
        if isinstance(bound, int | float) and not isinstance(bound, bool):
            found[inclusive] = bound + step if integer else math.nextafter(bound, step * math.inf)
    return found


def _double(found: dict[str, Any]) -> dict[str, Any]:
    """``format: double`` on a number that names no format: every number the API reads or
    writes is a JSON number read as float64, and generators that map a bare ``number`` to
    float32 (oapi-codegen does) would otherwise round the logits and losses."""
    if found.get("type") == "number" and "format" not in found:
        found["format"] = "double"
    return found


def openapi_30(document: dict[str, Any]) -> dict[str, Any]:
    """The 3.1 ``document`` written in OpenAPI 3.0.3's words, for generators that read only
    3.0: a ``{"type": "null"}`` branch of ``anyOf`` becomes ``nullable: true``, ``prefixItems``
    becomes ``items`` (with the length bounds already there), a schema's ``examples`` its one
    ``example``; ``propertyNames`` (the length bounds of a map's keys, which 3.0 cannot say)
    is left to the descriptions and the server's checks. An array of nullable numbers says
    ``x-go-type: "[]*float64"``, as oapi-codegen (1.12 and 2.x on 3.0) drops ``nullable`` on
    an array's items. A nullable ``$ref`` is ``allOf: [$ref]`` with the ``type`` of what it
    names beside ``nullable`` (3.0 reads ``nullable`` only beside a ``type``), and a union of
    types keeps ``nullable`` beside ``anyOf``: generators read both as nullable, but 3.0 cannot
    say either exactly, and a strict validator lets the branches refuse null (the server
    takes a null there as absent)."""
    schemas = document.get("components", {}).get("schemas", {})
    types = {f"#/components/schemas/{name}": s.get("type") for name, s in schemas.items()}
    return {**rewritten(document, lambda node: _as_30(node, types)), "openapi": "3.0.3"}


def _as_30(found: dict[str, Any], types: dict[str, Any]) -> dict[str, Any]:
    branches = found.get("anyOf")
    if isinstance(branches, list) and NULL in branches:
        rest = [branch for branch in branches if branch != NULL]
        del found["anyOf"]
        if len(rest) > 1:
            found["anyOf"] = rest
        elif "$ref" in rest[0]:
            found["allOf"] = rest  # 3.0 ignores whatever stands beside a $ref
            if types.get(rest[0]["$ref"]):
                found["type"] = types[rest[0]["$ref"]]
        else:
            found = {**rest[0], **found}
        found["nullable"] = True
    items = found.pop("prefixItems", None)
    if items is not None:
        found["items"] = items[0] if all(item == items[0] for item in items) else {"anyOf": items}
    found.pop("propertyNames", None)
    item = found.get("items", {}) if found.get("type") == "array" else {}
    if item.get("nullable") is True and item.get("type") == "number":
        found["x-go-type"] = "[]*float64"  # oapi-codegen reads a null item as 0 otherwise
    examples = found.get("examples")
    if isinstance(examples, list) and examples:
        found["example"] = found.pop("examples")[0]
    return found
