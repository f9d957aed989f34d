"""The schema's numeric bounds, read alike by OpenAPI 3.0 and 3.1 tools: every exclusive bound
is written as the inclusive one that admits the same numbers, and the service agrees with it
at both edges."""

from __future__ import annotations

import math

import httpx
import pytest

from fairloss import InputError, ScoringOptions
from fairloss.bootstrap import Bootstrap
from tests.conftest import schema_objects

pytestmark = pytest.mark.anyio


async def test_no_exclusive_bound_is_left(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    nodes = schema_objects(schema)
    assert not [n for n in nodes if "exclusiveMinimum" in n or "exclusiveMaximum" in n]
    score = schema["components"]["schemas"]["ScoreRequest"]["properties"]
    assert score["smooth_max_beta"]["minimum"] == 5e-324
    assert score["scaling_factor"]["minimum"] == 5e-324
    level = schema["components"]["schemas"]["BootstrapRequest"]["properties"]["confidence_level"]
    assert (level["minimum"], level["maximum"]) == (5e-324, math.nextafter(1.0, 0.0))


def test_the_checks_agree_with_the_inclusive_bounds() -> None:
    ScoringOptions(smooth_max_beta=5e-324, scaling_factor=5e-324)
    with pytest.raises(InputError):
        ScoringOptions(smooth_max_beta=0.0)
    with pytest.raises(InputError):
        ScoringOptions(scaling_factor=0.0)
    Bootstrap(10, math.nextafter(1.0, 0.0))
    Bootstrap(10, 5e-324)
    for level in (0.0, 1.0):
        with pytest.raises(InputError):
            Bootstrap(10, level)
