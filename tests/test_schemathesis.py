"""The app against its own OpenAPI schema (schemathesis): no 5xx, every response as documented."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.conftest import SUMMARY_TABLES, Server, assert_no_leak, running_server

EXAMPLES_PER_OPERATION = 30
Case = schemathesis.Case[Any]
Operation = schemathesis.APIOperation[Any, Any, Any, Any]
# Left out: "a schema-valid request is accepted". The arrays' rules that JSON Schema cannot say
# (labels as long as logits and in [0, C), rows of one length, finite losses) make a 422 the right
# answer to many schema-valid bodies; those answers are still checked against the schema.
pytestmark = pytest.mark.timeout(240)
COUNTS: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
VERDICTS: dict[str, str] = {}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    env = {
        "FAIRLOSS_MAX_BODY_BYTES": str(256 * 1024),
        "FAIRLOSS_MAX_ELEMENTS": "4096",
        "FAIRLOSS_LOG_LEVEL": "warning",
    }
    with running_server(env) as running:
        yield running


@pytest.fixture(scope="module")
def api_schema(server: Server) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


OPERATIONS = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/info"),
    ("POST", "/score"),
    ("POST", "/compare"),
    ("GET", "/metrics"),
    ("GET", "/v2"),
    ("GET", "/v2/health/live"),
    ("GET", "/v2/health/ready"),
    ("GET", "/v2/models/{model_name}"),
    ("GET", "/v2/models/{model_name}/ready"),
    ("POST", "/v2/models/{model_name}/infer"),
    ("GET", "/v2/models/{model_name}/versions/{model_version}"),
    ("GET", "/v2/models/{model_name}/versions/{model_version}/ready"),
    ("POST", "/v2/models/{model_name}/versions/{model_version}/infer"),
]


def _table() -> str:
    rows = [
        "| operation | calls | 2xx | 4xx | 5xx | schema conformance |",
        "|---|---|---|---|---|---|",
    ]
    for method, path in OPERATIONS:
        counts = COUNTS[f"{method} {path}"]
        by_class = [sum(n for s, n in counts.items() if s // 100 == k) for k in (2, 4, 5)]
        cells = " | ".join(map(str, by_class))
        verdict = VERDICTS.get(f"{method} {path}", "not run")
        rows.append(f"| {method} {path} | {counts.total()} | {cells} | {verdict} |")
    total = sum(c.total() for c in COUNTS.values())
    fivexx = sum(n for c in COUNTS.values() for s, n in c.items() if s >= 500)
    rows.append(f"| all {len(OPERATIONS)} operations | {total} | | | {fivexx} | |")
    return "\n".join(rows)


def _check(case: Case) -> None:
    response = case.call(timeout=30)
    COUNTS[f"{case.operation.method.upper()} {case.operation.path}"][response.status_code] += 1
    case.validate_response(response, excluded_checks=[positive_data_acceptance])
    assert response.status_code < 500
    if response.status_code >= 400:
        # An error may quote what the request itself sent (a model named "service.0"); only
        # what the server adds of its own can leak.
        text = response.text
        for value in (case.path_parameters or {}).values():
            text = text.replace(str(value), "")
        assert_no_leak(text)


def _fuzz(operation: Operation, mode: GenerationMode) -> None:
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: Case) -> None:
        _check(case)

    fuzz()


def test_the_schema_lists_the_operations_under_test(api_schema: schemathesis.BaseSchema) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]  # type: ignore[union-attr]
    listed = {(operation.method.upper(), operation.path) for operation in operations}
    assert listed == set(OPERATIONS)


@pytest.mark.parametrize(
    ("method", "path"),
    OPERATIONS,
)
def test_every_response_matches_the_schema(
    api_schema: schemathesis.BaseSchema, method: str, path: str
) -> None:
    operation = api_schema[path][method]
    VERDICTS[f"{method} {path}"] = "FAILED"
    try:
        _fuzz(operation, GenerationMode.POSITIVE)
        with contextlib.suppress(Unsatisfiable):  # when nothing in the request can be invalid
            _fuzz(operation, GenerationMode.NEGATIVE)
        VERDICTS[f"{method} {path}"] = "ok"
    finally:
        SUMMARY_TABLES["schemathesis (every response validated against /openapi.json)"] = _table()
