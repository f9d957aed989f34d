"""The dashboard: served by the service itself, and driven in a real headless Chromium."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import running_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (apt-get install chromium); CI always runs this",
)


@pytest.mark.anyio
async def test_index_is_the_dashboard(client: httpx.AsyncClient):
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>FairLoss dashboard</title>" in response.text
    assert 'src="static/app.js"' in response.text
    assert 'href="static/style.css"' in response.text


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "media"),
    [("/static/app.js", "text/javascript"), ("/static/style.css", "text/css")],
)
async def test_static_files_are_served(client: httpx.AsyncClient, path: str, media: str):
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == media


@pytest.mark.anyio
async def test_everything_the_page_loads_is_served_here(client: httpx.AsyncClient):
    """No CDN: every src and href of the page and the script is relative to the service."""
    html = (await client.get("/")).text
    script = (await client.get("/static/app.js")).text
    for text in (html, script):
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text
        assert "//cdn" not in text


@pytest.mark.anyio
async def test_unknown_static_file_is_404(client: httpx.AsyncClient):
    response = await client.get("/static/missing.js")
    assert response.status_code == 404


@pytest.mark.anyio
async def test_dashboard_stays_out_of_the_api_schema(client: httpx.AsyncClient):
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/" not in paths
    assert not any(path.startswith("/static") for path in paths)


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with running_server() as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1360, "height": 1000})
            tab.set_default_timeout(20_000)
            errors: list[str] = []
            tab.on("pageerror", lambda error: errors.append(str(error)))
            tab.on("console", lambda m: errors.append(m.text) if _script_error(m) else None)
            tab.goto(server.url + "/")
            tab.wait_for_function(
                "document.querySelector('#server-info').textContent.includes('service')"
            )
            yield tab
            assert errors == []
        finally:
            browser.close()


def _script_error(message: Any) -> bool:
    """A console error from the page's script; refused requests (the 422 test) are expected."""
    return message.type == "error" and "Failed to load resource" not in message.text


def cells(page: Any, column: str) -> list[str]:
    texts: list[str] = page.locator(f"#samples tbody td.{column}").all_inner_texts()
    return texts


@needs_chromium
def test_readme_example_scored_and_compared_in_chromium(page):
    page.click("#load-example")
    page.click("#run-score")
    page.wait_for_selector("#samples tbody tr")
    assert cells(page, "ce") == ["1.0920", "0.9681"]
    assert cells(page, "total") == ["1.0920", "1.3014"]
    assert cells(page, "correct") == ["✓", "✗"]
    assert page.inner_text("#summary [data-metric=accuracy] .value") == "50.0%"
    assert page.inner_text("#summary [data-metric=total] .value") == "1.1967"
    assert page.locator("#samples tr.flipped").count() == 0
    assert page.locator("#histogram rect.bar").count() == 2

    page.click("#run-compare")
    page.wait_for_selector("#samples tr.flipped")
    assert cells(page, "ce") == ["1.0920", "0.9681"]
    assert cells(page, "total") == ["1.0920", "1.3014"]
    flipped = page.locator("#samples tr.flipped")
    assert [flipped.nth(k).get_attribute("data-index") for k in range(2)] == ["0", "1"]
    assert page.locator("#scatter circle.flip").count() == 2
    assert page.locator("#flips li").get_attribute("data-pair") == "0,1"
    assert "FairLoss puts them back in order" in page.inner_text("#flips li")
    assert page.inner_text("#summary [data-metric=violations] .value") == "1 → 0"
    ranking = page.locator("#ranking tbody tr[data-candidate=model-a]")
    assert ranking.locator("[data-criterion=total]").inner_text() == "1.1967#1"
    assert ranking.locator("td").nth(6).inner_text() == "1 / 1"
    assert ranking.locator("td").nth(7).inner_text() == "0 / 1"

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


@needs_chromium
def test_csv_input_and_two_candidates_in_chromium(page):
    page.click("#load-example")
    page.fill(".candidate-logits", "z0,z1,z2\n0.34,0.33,0.33\n0.49;0.51;0")
    page.fill("#labels", "label\n0\n0")
    page.click("#add-candidate")
    page.locator(".candidate-logits").nth(1).fill("[[2, 0.33, 0.33], [0.49, 0.51, 0.0]]")
    page.click("#run-compare")
    page.wait_for_selector("#ranking tbody tr[data-candidate=model-b]")
    rows = page.locator("#ranking tbody tr")
    assert [rows.nth(k).get_attribute("data-candidate") for k in range(2)] == ["model-a", "model-b"]
    best = page.locator("#ranking tbody tr[data-candidate=model-b] [data-criterion=total]")
    assert best.inner_text() == "0.8105#1"
    page.select_option("#candidate-select", "1")
    assert cells(page, "ce") == ["0.3195", "0.9681"]
    assert page.locator("#samples tr.flipped").count() == 0


@needs_chromium
def test_a_refused_request_shows_the_problem_in_chromium(page):
    page.click("#load-example")
    page.fill("#labels", "[0, 3]")
    page.click("#run-score")
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert error.inner_text() == (
        "422 Invalid request: Expected labels in [0, 3), but labels[1] is 3 (at labels.1)"
    )
    page.fill("#labels", "[0, oops]")
    page.click("#run-score")
    page.wait_for_function("document.querySelector('#error').textContent.startsWith('labels:')")
    assert page.inner_text("#error").startswith("labels: not valid JSON")
