"""The API's description for Go: ``/openapi-3.0.json`` (the API in OpenAPI 3.0's words, which
oapi-codegen before 2.7 reads; ``/openapi.json`` is 3.1) and the Go example
(examples/go), whose client oapi-codegen generates. The documents are checked everywhere; the
example is built and run where ``go`` and ``oapi-codegen`` are installed (neither is in CI:
oapi-codegen comes from the Go module proxy)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import OpenAPIV30SpecValidator, OpenAPIV31SpecValidator, validate

from service.settings import Settings
from tests.conftest import running_server, schema_objects
from tests.examples import check_example_output

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "go"
ONLY_31 = {"prefixItems", "propertyNames", "const", "examples", "$defs", "contentMediaType"}


@pytest.fixture
def settings() -> Settings:
    return Settings(api_keys=["sekrit"])


@pytest.mark.anyio
async def test_both_documents_are_valid_and_need_no_key(client: httpx.AsyncClient) -> None:
    full = await client.get("/openapi.json")
    older = await client.get("/openapi-3.0.json")
    assert (full.status_code, older.status_code) == (200, 200)
    validate(full.json(), cls=OpenAPIV31SpecValidator)
    validate(older.json(), cls=OpenAPIV30SpecValidator)


@pytest.mark.anyio
async def test_the_3_0_document_says_the_same_api_in_3_0_words(client: httpx.AsyncClient) -> None:
    full = (await client.get("/openapi.json")).json()
    older = (await client.get("/openapi-3.0.json")).json()
    assert (full["openapi"], older["openapi"]) == ("3.1.0", "3.0.3")
    assert older["paths"].keys() == full["paths"].keys()
    assert older["components"]["schemas"].keys() == full["components"]["schemas"].keys()
    nodes = schema_objects(older)
    assert not [n for n in nodes if n.get("type") == "null" or isinstance(n.get("type"), list)]
    assert not [n for n in nodes if ONLY_31 & n.keys() and "example" not in n]
    # what could be null still says so
    score = older["components"]["schemas"]["ScoreRequest"]["properties"]
    assert score["logits"]["nullable"] is True
    assert score["bootstrap"]["allOf"] == [{"$ref": "#/components/schemas/BootstrapRequest"}]
    assert (score["bootstrap"]["type"], score["bootstrap"]["nullable"]) == ("object", True)
    # 3.0 reads nullable only beside a type, and a strict reader lets allOf's own constraints
    # refuse null: an omitted field keeps to the document where a null one may not
    root = {"$ref": "#/components/schemas/ScoreRequest", "components": older["components"]}
    OAS30Validator(root).validate({"logits": [[1, 2]], "labels": [1], "device": None})
    pair = older["components"]["schemas"]["PairedDifference"]["properties"]["discordant"]
    assert (pair["items"], pair["minItems"], pair["maxItems"]) == (
        {"type": "integer"},
        2,
        2,
    )


@pytest.mark.anyio
async def test_numbers_are_doubles_and_no_name_collides(client: httpx.AsyncClient) -> None:
    """oapi-codegen reads a bare ``number`` as float32, and names each operation's wrappers
    ``<Operation>Response``, ``<Operation>JSONBody``, ... beside the components' names."""
    for path in ("/openapi.json", "/openapi-3.0.json"):
        document = (await client.get(path)).json()
        numbers = [n for n in schema_objects(document) if n.get("type") == "number"]
        assert numbers
        assert {n.get("format") for n in numbers} == {"double"}
        operations = [
            op["operationId"] for item in document["paths"].values() for op in item.values()
        ]
        pascal = [re.sub(r"(?:^|_)(\w)", lambda m: m.group(1).upper(), op) for op in operations]
        made = {
            name + suffix
            for name in pascal
            for suffix in ("Response", "JSONBody", "JSONRequestBody", "Params", "RequestBody")
        }
        assert not made & document["components"]["schemas"].keys()


def _run(argv: list[str], folder: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        argv, cwd=folder, capture_output=True, text=True, env=env, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.skipif(
    not (shutil.which("go") and shutil.which("oapi-codegen")),
    reason="go and oapi-codegen are not installed",
)
def test_a_generated_go_client_compiles_and_scores(tmp_path: Path) -> None:
    """``FAIRLOSS_GO_MODULES``: a folder whose go.mod and vendor/ to build with, where the Go
    module proxy cannot be reached; otherwise ``go mod tidy`` fetches the client's runtime."""
    folder = tmp_path / "go"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("fairloss", "fairloss-go"))
    (folder / "fairloss").mkdir()
    env = dict(os.environ)
    modules = os.environ.get("FAIRLOSS_GO_MODULES")
    with running_server({"FAIRLOSS_API_KEYS": "sekrit"}) as server:
        generate = ["oapi-codegen", "-config", "oapi-codegen.yaml"]
        _run([*generate, server.url + "/openapi-3.0.json"], folder, env)
        if modules:
            shutil.copy(Path(modules) / "go.mod", folder / "go.mod")
            shutil.copytree(Path(modules) / "vendor", folder / "vendor")
            env["GOFLAGS"] = "-mod=vendor"
        else:
            _run(["go", "mod", "tidy"], folder, env)
        _run(["go", "vet", "."], folder, env)
        _run(["go", "build", "-o", "fairloss-go", "."], folder, env)
        said = json.loads(
            _run(["./fairloss-go", server.url], folder, env | {"FAIRLOSS_API_KEY": "sekrit"})
        )
    check_example_output(said)
    assert said["oip_total"] == said["per_sample_total"]  # the protocol's route, typed too


@pytest.mark.anyio
async def test_answers_past_float64_keep_to_the_schema(client: httpx.AsyncClient) -> None:
    """Weights of 1e308: per-class support, predicted and confusion counts, in the weights' own
    units, are null past float64's range; the schema says they can be, and the 3.0 document
    has Go read such arrays as pointers (oapi-codegen drops an item's ``nullable``)."""
    document = (await client.get("/openapi.json")).json()
    headers = {"Authorization": "Bearer sekrit"}
    body = {"logits": [[1.0, 0.0], [0.0, 1.0]], "labels": [0, 0], "per_class": True}
    answer = await client.post(
        "/score", json=body | {"sample_weight": [1e308, 1e308]}, headers=headers
    )
    found = answer.json()
    assert found["classes"]["support"] == [None, 0.0]
    schema = {"$ref": "#/components/schemas/ScoreResult", "components": document["components"]}
    Draft202012Validator(schema).validate(found)
    older = (await client.get("/openapi-3.0.json")).json()["components"]["schemas"]
    assert older["Classes"]["properties"]["support"]["x-go-type"] == "[]*float64"
    assert older["Confusion"]["properties"]["count"]["x-go-type"] == "[]*float64"
    seed = older["BootstrapRequest"]["properties"]["seed"]
    assert (seed["format"], seed["maximum"]) == ("uint64", 2**64 - 1)


@pytest.mark.anyio
async def test_the_protocol_routes_are_documented_for_generators(
    client: httpx.AsyncClient,
) -> None:
    """The infer routes' request and answer, the health and metadata bodies, and {"error"} for
    every 4xx (no FastAPI 422, which they never answer); a real request and its answer keep
    to them."""
    document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    for path, item in paths.items():
        if path.startswith("/v2"):
            for operation in item.values():
                assert "422" not in operation["responses"], path
                keyed = ("401",) if "security" in operation else ()  # API keys are on here
                for status in ("4XX", "503", *keyed):
                    said = operation["responses"][status]["content"]["application/json"]
                    assert said["schema"] == {"$ref": "#/components/schemas/ProtocolError"}
    infer = paths["/v2/models/{model_name}/infer"]["post"]
    body_schema = infer["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema == {"$ref": "#/components/schemas/InferenceRequest"}
    live = paths["/v2/health/live"]["get"]["responses"]["200"]["content"]["application/json"]
    assert live["schema"] == {"$ref": "#/components/schemas/Live"}

    def keeps_to(name: str, value: Any) -> None:
        ref = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
        Draft202012Validator(ref).validate(value)

    request = {
        "id": "r1",
        "parameters": {"binary_data_output": False, "temperature": 2},
        "inputs": [
            {"name": "logits", "datatype": "FP64", "shape": [2, 2], "data": [[1, 0], [0, 1]]},
            {"name": "labels", "datatype": "INT64", "shape": [2], "data": [0, 0]},
        ],
        "outputs": [{"name": "total"}, {"name": "reduced"}],
    }
    keeps_to("InferenceRequest", request)
    headers = {"Authorization": "Bearer sekrit"}
    answer = await client.post("/v2/models/fairloss/infer", json=request, headers=headers)
    assert answer.status_code == 200, answer.text
    keeps_to("InferenceResponse", answer.json())
    keeps_to("Live", (await client.get("/v2/health/live")).json())
    keeps_to("ModelMetadata", (await client.get("/v2/models/fairloss", headers=headers)).json())
    refused = await client.post("/v2/models/other/infer", json=request, headers=headers)
    keeps_to("ProtocolError", refused.json())
