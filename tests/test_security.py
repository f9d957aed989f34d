"""API keys (Bearer, constant-time, health probes open) and CORS (off unless origins are listed)."""

from __future__ import annotations

import re

import httpx
import pytest

from service.security import bearer_token, matches_any
from service.settings import Settings
from tests.conftest import README_EXAMPLE, assert_no_leak

KEYS = ["key-one", "key-two"]
ORIGIN = "https://dash.example"
MISSING = {
    "type": "/problems/unauthorized",
    "title": "Unauthorized",
    "status": 401,
    "detail": "This server needs an API key: send Authorization: Bearer <key>.",
}
WRONG = {**MISSING, "detail": "The API key is not valid."}
PROTECTED = [
    ("POST", "/score"),
    ("POST", "/compare"),
    ("POST", "/v2/models/fairloss/infer"),
    ("GET", "/info"),
    ("GET", "/metrics"),
    ("GET", "/v2"),
    ("GET", "/v2/models/fairloss"),
    ("GET", "/v2/models/fairloss/ready"),
    ("GET", "/no/such/route"),
]
OPEN = [
    "/healthz",
    "/readyz",
    "/v2/health/live",
    "/v2/health/ready",
    "/",
    "/static/app.js",
    "/openapi.json",
    "/docs",
    "/redoc",
]


@pytest.fixture
def settings() -> Settings:
    return Settings(api_keys=KEYS, cors_origins=[ORIGIN])


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.anyio
@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_every_route_but_the_probes_needs_a_key(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, json=README_EXAMPLE)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="fairloss"'
    if path.startswith("/v2"):  # the protocol's error form, on every one of its paths
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"error": MISSING["detail"]}
    else:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json() == MISSING
    assert_no_leak(response.text)


@pytest.mark.anyio
@pytest.mark.parametrize("path", OPEN)
async def test_health_probes_the_dashboard_page_and_the_api_description_need_no_key(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize("key", KEYS)
async def test_each_configured_key_is_accepted(client: httpx.AsyncClient, key: str) -> None:
    response = await client.post("/score", json=README_EXAMPLE, headers=_bearer(key))
    assert response.status_code == 200
    assert response.json()["n"] == 2


@pytest.mark.anyio
async def test_the_scheme_name_is_case_insensitive(client: httpx.AsyncClient) -> None:
    response = await client.get("/info", headers={"Authorization": "bearer key-one"})
    assert response.status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize(
    "authorization",
    ["Bearer key-three", "Bearer key-one-more", "Bearer key-on", "Bearer KEY-ONE", "Bearer  x"],
)
async def test_a_wrong_key_is_refused(client: httpx.AsyncClient, authorization: str) -> None:
    response = await client.post(
        "/score", json=README_EXAMPLE, headers={"Authorization": authorization}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="fairloss", error="invalid_token"'
    assert response.json() == WRONG


@pytest.mark.anyio
@pytest.mark.parametrize(
    "authorization", ["key-one", "Basic a2V5LW9uZTo=", "Bearer", "Bearer   ", "Token key-one"]
)
async def test_a_malformed_authorization_is_refused(
    client: httpx.AsyncClient, authorization: str
) -> None:
    response = await client.post(
        "/score", json=README_EXAMPLE, headers={"Authorization": authorization}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="fairloss"'
    assert response.json() == MISSING


@pytest.mark.anyio
async def test_refusals_are_counted(client: httpx.AsyncClient) -> None:
    for _ in range(3):
        assert (await client.get("/info")).status_code == 401
    metrics = await client.get("/metrics", headers=_bearer("key-two"))
    assert 'fairloss_rejections_total{reason="unauthorized"} 3.0' in metrics.text
    assert 'route="/info",status="401"} 3.0' in metrics.text


@pytest.mark.anyio
async def test_the_schema_documents_the_bearer_scheme(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json", headers=_bearer("key-one"))).json()
    assert schema["components"]["securitySchemes"] == {
        "apiKey": {"type": "http", "scheme": "bearer"}
    }
    score = schema["paths"]["/score"]["post"]
    assert score["security"] == [{"apiKey": []}]
    assert "401" in score["responses"]
    assert "security" not in schema["paths"]["/healthz"]["get"]
    assert "401" not in schema["paths"]["/healthz"]["get"]["responses"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "asked"),
    [
        ("/score", "authorization, content-type"),
        ("/score", "content-type, content-encoding, x-request-id"),
        ("/v2/models/fairloss/infer", "content-type, inference-header-content-length"),
    ],
)
async def test_a_cors_preflight_needs_no_key(
    client: httpx.AsyncClient, path: str, asked: str
) -> None:
    """A page may send its body gzipped (Content-Encoding), or binary tensors through the
    Open Inference Protocol (Inference-Header-Content-Length): both headers are allowed."""
    response = await client.options(
        path,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": asked,
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN


@pytest.mark.anyio
async def test_cors_answers_listed_origins_only(client: httpx.AsyncClient) -> None:
    listed = await client.post(
        "/score", json=README_EXAMPLE, headers={"Origin": ORIGIN, **_bearer("key-one")}
    )
    assert listed.status_code == 200
    assert listed.headers["access-control-allow-origin"] == ORIGIN
    exposed = listed.headers["access-control-expose-headers"].lower()
    assert "x-request-id" in exposed
    assert "inference-header-content-length" in exposed  # binary tensors in a browser
    other = await client.post(
        "/score",
        json=README_EXAMPLE,
        headers={"Origin": "https://evil.example", **_bearer("key-one")},
    )
    assert other.status_code == 200
    assert "access-control-allow-origin" not in other.headers


def test_keys_and_origins_parse_from_comma_separated_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAIRLOSS_API_KEYS", " alpha, beta ,,")
    monkeypatch.setenv("FAIRLOSS_CORS_ORIGINS", "https://a.example,https://b.example")
    settings = Settings()
    assert [key.get_secret_value() for key in settings.api_keys] == ["alpha", "beta"]
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert "alpha" not in repr(settings)
    assert "alpha" not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("origin", "said"),
    [
        ("HTTPS://A.example", "a browser sends 'https://a.example'"),
        ("http://A.example", "a browser sends 'http://a.example'"),
        ("https://a.example:443", "a browser sends 'https://a.example'"),
        ("https://*.example.com", "a wildcard host matches no browser's Origin"),
        ("https://a.example:99999", "expected a port in 1..65535"),
        ("https://a.example:abc", "expected a port in 1..65535"),
        ("https://a.example:0", "expected a port in 1..65535"),
        ("https://bücher.example", "a browser sends 'https://xn--bcher-kva.example'"),
        ("http://[0:0:0:0:0:0:0:1]:5000", "a browser sends 'http://[::1]:5000'"),
        ("http://[::ffff:127.0.0.1]:5000", "a browser sends 'http://[::ffff:7f00:1]:5000'"),
        ("http://[::1", "expected an origin, got 'http://[::1': Invalid IPv6 URL"),
    ],
)
def test_an_origin_no_browser_sends_is_refused_at_start(origin: str, said: str) -> None:
    """Each once started without complaint and then refused every preflight (a newcomer's
    trial): the browser's Origin is lower case, without its scheme's default port."""
    with pytest.raises(ValueError, match=re.escape(said)):
        Settings(cors_origins=[origin])


@pytest.mark.parametrize(
    "origin", ["http://[::1]:5000", "http://127.0.0.1:5000", "https://xn--bcher-kva.example", "*"]
)
def test_origins_as_browsers_send_them_are_taken(origin: str) -> None:
    assert Settings(cors_origins=[origin]).cors_origins == [origin]


def test_empty_environment_values_mean_no_keys_and_no_cors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAIRLOSS_API_KEYS", "")
    monkeypatch.setenv("FAIRLOSS_CORS_ORIGINS", " ")
    settings = Settings()
    assert settings.api_keys == []
    assert settings.cors_origins == []


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("Bearer abc", b"abc"),
        ("bearer abc ", b"abc"),
        ("BEARER  abc", b"abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("abc", None),
    ],
)
def test_bearer_token(header: str | None, token: bytes | None) -> None:
    assert bearer_token(header) == token


def test_matches_any_compares_with_every_key() -> None:
    keys = [b"alpha", b"beta"]
    assert matches_any(b"beta", keys)
    assert not matches_any(b"bet", keys)
    assert not matches_any(b"", keys)
    assert not matches_any(b"alpha", [])


class TestWithoutKeys:
    @pytest.fixture
    def settings(self) -> Settings:
        return Settings()

    @pytest.mark.anyio
    async def test_no_key_is_needed(self, client: httpx.AsyncClient) -> None:
        assert (await client.post("/score", json=README_EXAMPLE)).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
        schema = (await client.get("/openapi.json")).json()
        assert "securitySchemes" not in schema["components"]

    @pytest.mark.anyio
    async def test_cors_is_off(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/score", json=README_EXAMPLE, headers={"Origin": ORIGIN})
        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers
        preflight = await client.options(
            "/score", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
        )
        assert preflight.status_code == 405
        assert "access-control-allow-origin" not in preflight.headers
