"""The dashboard: served by the service itself, and driven in a real headless Chromium."""

from __future__ import annotations

import csv
import json
import math
import os
import random
import re
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
DASH = "\N{EN DASH}"  # between the first and last row numbers of the samples note
MINUS = "\N{MINUS SIGN}"  # between the two names of a pair of candidates

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
async def test_the_page_claims_superiority_only_for_pll_and_pbs(client: httpx.AsyncClient):
    """FairLoss makes inversions rarer, not impossible: "always scores better" is PLL and PBS."""
    texts = [(await client.get(path)).text for path in ("/", "/static/app.js")]
    # Join strings concatenated across lines and comments continued on the next line.
    joined = [re.sub(r"\s+", " ", re.sub(r"[\"`]\s*\+\s*[\"`]|\n\s*//", " ", t)) for t in texts]
    claims = [
        m for text in joined for m in re.finditer(r"always (scores?|ranks?) (better|lower)", text)
    ]
    assert len(claims) == 1
    claim = claims[0].string[claims[0].start() - 100 : claims[0].end()]
    assert (
        "PLL and PBS are superior by construction: under them a correct prediction always" in claim
    )
    assert "FairLoss only makes such inversions rarer" in joined[1]


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
    # Results from other inputs do not stay on screen beside an error.
    page.fill("#labels", "[0, 0]")
    page.click("#run-score")
    page.wait_for_selector("#output", state="visible")
    page.fill("#labels", "[0, 3]")
    page.click("#run-score")
    page.wait_for_selector("#output", state="hidden")
    assert page.is_visible("#error")
    assert page.is_visible("#placeholder")


# ---------------------------------------------------------------------------------------------
# Many samples: which rows are shown, labels that never overlap, hints that read as hints


def random_batch(n: int, classes: int = 10, seed: int = 0) -> tuple[list[list[float]], list[int]]:
    """`n` rows of random logits, about half of them correct: the true logit gets U(0, 3) more."""
    rng = random.Random(seed)
    labels = [rng.randrange(classes) for _ in range(n)]
    logits = []
    for label in labels:
        row = [round(rng.gauss(0, 1), 3) for _ in range(classes)]
        row[label] = round(row[label] + rng.uniform(0, 3), 3)
        logits.append(row)
    return logits, labels


def compare_batch(page: Any, n: int) -> tuple[list[int], set[int]]:
    """Compare one random candidate of `n` rows; the labels and the flipped samples drawn."""
    logits, labels = random_batch(n)
    page.evaluate(
        """([logits, labels]) => {
            document.querySelectorAll('.candidate').forEach((box, k) => k && box.remove());
            document.querySelector('.candidate-logits').value = logits;
            document.querySelector('#labels').value = labels;
        }""",
        [json.dumps(logits), json.dumps(labels)],
    )
    page.click("#run-compare")
    page.wait_for_function(
        "document.querySelector('#summary [data-metric=ece] .note')?.textContent"
        f" === '{n:,} samples on cpu' && document.querySelector('#flips li')"
    )
    flipped = {int(i) for i in _attrs(page, "#scatter circle.flip", "data-index")}
    return labels, flipped


def _attrs(page: Any, selector: str, name: str) -> list[str]:
    values: list[str] = page.eval_on_selector_all(
        selector, f"nodes => nodes.map(n => n.getAttribute('{name}'))"
    )
    return values


def _boxes(page: Any, selector: str) -> list[dict[str, float]]:
    boxes: list[dict[str, float]] = page.eval_on_selector_all(
        selector,
        "nodes => nodes.map(n => { const r = n.getBoundingClientRect();"
        " return {x: r.x, y: r.y, width: r.width, height: r.height}; })",
    )
    return boxes


def _intersect(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


def assert_pair_labels_apart(page: Any, flipped: set[int]) -> None:
    """One label per flipped sample; no two labels overlap, though their points do."""
    assert len(flipped) >= 2
    assert sorted(
        int(i) for i in _attrs(page, "#scatter text.point-label", "data-index")
    ) == sorted(flipped)
    texts = page.locator("#scatter text.point-label").all_text_contents()
    assert sorted(texts) == sorted(f"#{i}" for i in flipped)
    assert page.locator("#scatter line.leader").count() == len(flipped)
    points = _boxes(page, "#scatter circle.flip")
    # The data makes the test bite: labels placed beside their points would collide.
    assert any(_intersect(a, b) for k, a in enumerate(points) for b in points[k + 1 :])
    labels = _boxes(page, "#scatter text.point-label")
    chart = _boxes(page, "#scatter svg")[0]
    for k, a in enumerate(labels):
        assert a["width"] > 0
        assert a["height"] > 0
        assert chart["y"] <= a["y"]
        assert a["y"] + a["height"] <= chart["y"] + chart["height"]
        assert a["x"] + a["width"] <= chart["x"] + chart["width"]
        for b in labels[k + 1 :]:
            assert not _intersect(a, b), (a, b)


def table_indices(page: Any) -> list[int]:
    return [int(i) for i in _attrs(page, "#samples tbody tr", "data-index")]


@needs_chromium
def test_hints_read_as_hints_in_chromium(page):
    page.reload()
    page.wait_for_function("document.querySelector('#server-info').textContent.includes('service')")
    empty = page.locator("#placeholder")
    assert empty.is_visible()
    assert empty.inner_text().startswith("Run Score or Compare to see the results here")
    assert empty.evaluate("e => getComputedStyle(e).fontStyle") == "italic"
    assert empty.evaluate("e => getComputedStyle(e).borderTopStyle") == "dashed"

    fields = page.locator("textarea[placeholder], input[placeholder]")
    assert fields.count() == 10  # the groups box too
    for k in range(fields.count()):
        field = fields.nth(k)
        hint = field.get_attribute("placeholder")
        assert re.match(r"(e\.g\. |default: |only if )", hint), hint
        style = field.evaluate(
            """e => { const h = getComputedStyle(e, '::placeholder'), d = getComputedStyle(e);
            return {hint: [h.fontStyle, h.color], data: [d.fontStyle, d.color]}; }"""
        )
        assert style["hint"][0] == "italic", hint
        assert style["data"][0] == "normal", hint
        assert style["hint"][1] != style["data"][1], hint
    for textarea in (page.locator(".candidate-logits"), page.locator("#labels")):
        assert textarea.get_attribute("placeholder").startswith("e.g. [")
        family = textarea.evaluate(
            "e => [getComputedStyle(e, '::placeholder').fontFamily, getComputedStyle(e).fontFamily]"
        )
        assert "monospace" in family[1]
        assert "monospace" not in family[0]

    page.click("#load-example")
    page.click("#run-score")
    page.wait_for_selector("#samples tbody tr")
    hint = page.locator("#flips .empty")
    assert hint.inner_text().startswith("Run Compare to see which (correct, wrong) sample pairs")
    assert hint.evaluate("e => getComputedStyle(e).fontStyle") == "italic"
    assert page.inner_text("#samples-note") == "All 2 rows shown, by sample #."
    assert page.inner_text("#scatter-note") == "All 2 samples drawn."


@needs_chromium
def test_2000_samples_in_chromium(page):
    n = 2000
    labels, flipped = compare_batch(page, n)
    assert len(flipped) == 6
    assert_pair_labels_apart(page, flipped)
    assert page.locator("#scatter circle.point").count() == n
    assert page.inner_text("#scatter-note") == (
        "All 2,000 samples drawn, including the 6 samples of the flipped pairs"
        " (labelled on the right)."
    )
    assert page.inner_text("#histogram-note") == "All 2,000 samples counted."
    assert page.inner_text("#flips-rule").startswith("Listed: the 5 examples the service returns")
    why = page.inner_text("#flips-why")
    assert "FairLoss only makes such inversions rarer: its penalty is at most 1/C = 0.100" in why
    assert "up to ln(C/2) = 1.609" in why
    ce, total = page.inner_text("#summary [data-metric=violations] .value").split(" → ")
    assert f"counts the inversions left: {total} of 999,600 pairs" in why
    assert f"against {ce} under cross-entropy" in why

    # The table: one page of 500 rows, the flipped samples first, then by sample #.
    order = sorted(flipped) + [i for i in range(n) if i not in flipped]
    rule = "the 6 samples of the flipped pairs first, then the rest by sample #"
    assert page.inner_text("#samples-note") == (
        f"Rows 1{DASH}500 of 2,000 shown (page 1 of 4), {rule}. 1,500 not shown:"
        " use previous / next, more rows per page, or download all 2,000 rows as CSV."
    )
    assert table_indices(page) == order[:500]
    assert page.locator("#samples tr.flipped").count() == 6
    assert page.is_disabled("#page-prev")
    page.click("#page-next")
    page.wait_for_function(
        "document.querySelector('#samples-note').textContent.startsWith('Rows 501')"
    )
    assert page.inner_text("#samples-note").startswith(
        f"Rows 501{DASH}1,000 of 2,000 shown (page 2 of 4), {rule}."
    )
    assert table_indices(page) == order[500:1000]
    page.select_option("#table-size", "2000")
    assert page.inner_text("#samples-note") == f"All 2,000 rows shown, {rule}."
    assert table_indices(page) == order
    assert page.is_disabled("#page-next")

    # Every row, every column: the CSV, built in the page from the response.
    assert page.inner_text("#download-csv") == "download all 2,000 rows (CSV)"
    with page.expect_download() as download:
        page.click("#download-csv")
    assert download.value.suggested_filename == "model-a-per-sample.csv"
    with open(download.value.path(), newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == n
    assert [int(r["sample"]) for r in rows] == list(range(n))
    assert [int(r["label"]) for r in rows] == labels
    assert {"ce", "penalty", "total", "predicted", "correct"} <= set(rows[0])
    for r in rows[:50]:
        assert math.isclose(float(r["ce"]) + float(r["penalty"]), float(r["total"]), rel_tol=1e-5)

    # Another order: the page holds the rows with the highest totals, as the CSV says.
    page.select_option("#table-size", "100")
    page.select_option("#table-order", "total")
    assert page.inner_text("#samples-note").startswith(
        f"Rows 1{DASH}100 of 2,000 shown (page 1 of 20), by FairLoss total, highest first."
    )
    by_total = sorted(range(n), key=lambda i: (-float(rows[i]["total"]), i))
    assert table_indices(page) == by_total[:100]
    page.select_option("#table-size", "500")
    page.select_option("#table-order", "flips")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-2000.png"), full_page=True)
    assert (ARTIFACTS / "dashboard-2000.png").stat().st_size > 10_000


@needs_chromium
def test_20000_samples_in_chromium(page):
    n = 20_000
    _, flipped = compare_batch(page, n)
    assert len(flipped) == 6
    assert_pair_labels_apart(page, flipped)
    drawn = len(set(range(0, n, 5)) | flipped)
    assert page.locator("#scatter circle.point").count() == drawn
    assert page.inner_text("#scatter-note") == (
        f"{drawn:,} of 20,000 samples drawn: one in every 5 by sample # (#0, #5, #10, …) plus the"
        f" 6 samples of the flipped pairs (labelled on the right); {n - drawn:,} not drawn."
        " Every sample is in the table below and in its CSV."
    )
    assert page.inner_text("#samples-note").startswith(
        f"Rows 1{DASH}500 of 20,000 shown (page 1 of 40), the 6 samples of the flipped pairs first"
    )
    assert "19,500 not shown" in page.inner_text("#samples-note")
    assert table_indices(page)[:6] == sorted(flipped)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-20000.png"), full_page=True)
    assert (ARTIFACTS / "dashboard-20000.png").stat().st_size > 10_000


# ---------------------------------------------------------------------------------------------
# Bootstrap intervals, paired differences and the reliability diagram

BOOTSTRAP = {"replicates": 500, "confidence_level": 0.95, "seed": 7}
ALPHA = 1 - BOOTSTRAP["confidence_level"]


def bootstrap_batch(n: int = 300) -> tuple[list[int], dict[str, list[list[float]]]]:
    """Two candidates on the same labels: model-b is model-a's logits halved plus noise, so it is
    clearly worse under every loss and in accuracy, while their ECEs differ by less than the
    bootstrap can tell apart at 95% (p between 0.05 and 0.1)."""
    logits, labels = random_batch(n, classes=5, seed=3)
    rng = random.Random(5)
    worse = [[round(0.5 * v + rng.gauss(0, 0.4), 3) for v in row] for row in logits]
    return labels, {"model-a": logits, "model-b": worse}


def assert_fixed(text: str, value: float, decimals: int, scale: float = 1.0) -> None:
    """`text` is `value * scale` rounded to `decimals` decimals."""
    assert re.fullmatch(rf"[+-]?\d+\.\d{{{decimals}}}", text), text
    assert abs(float(text) - value * scale) <= 0.5 * 10**-decimals * (1 + 1e-9), (text, value)


def assert_sig(text: str, value: float, scale: float = 1.0) -> None:
    """`text` is `value * scale` rounded to three significant digits."""
    assert re.fullmatch(r"-?\d+(\.\d+)?", text), text
    exact = value * scale
    unit = 10 ** (math.floor(math.log10(abs(exact))) - 2) if exact else 0.0
    assert abs(float(text) - exact) <= 0.5 * unit * (1 + 1e-9) + 1e-12, (text, value)


def assert_bounds(text: str, low: float, high: float, scale: float = 1.0, unit: str = "") -> None:
    """`text` is "[low, high]" (each a number then `unit`), to three significant digits."""
    found = re.fullmatch(rf"\[(\S+){unit}, (\S+){unit}\]", text)
    assert found, text
    assert_sig(found[1], low, scale)
    assert_sig(found[2], high, scale)


def assert_interval_text(text: str, criterion: str, interval: dict[str, float]) -> None:
    """ "estimate [low, high]": "1.5897 [1.54, 1.63]", accuracy "80.0% [32.7%, 100%]"."""
    estimate, bounds = text.split(" ", 1)
    if criterion == "accuracy":
        assert estimate.endswith("%")
        assert_fixed(estimate[:-1], interval["estimate"], 1, 100)
        assert_bounds(bounds, interval["low"], interval["high"], 100, "%")
    else:
        assert_fixed(estimate, interval["estimate"], 4)
        assert_bounds(bounds, interval["low"], interval["high"])


def assert_p_value(text: str, p: float) -> None:
    """A p-value as shown (never 0): tiny ones as "2.7e-7", others to 4 decimals."""
    assert p > 0
    if p < 1e-4:
        mantissa, exponent = text.split("e")
        assert abs(float(mantissa) - p / 10 ** int(exponent)) <= 0.05 * (1 + 1e-9), (text, p)
    else:
        assert_fixed(text, p, 4)


@needs_chromium
def test_bootstrap_intervals_differences_and_reliability_in_chromium(page):
    labels, candidates = bootstrap_batch()
    names = list(candidates)
    body = {
        "labels": labels,
        "candidates": [{"name": name, "logits": logits} for name, logits in candidates.items()],
        "bootstrap": BOOTSTRAP,
    }
    # The same request straight to the service: what the page must show.
    expected = httpx.post(page.url + "compare", json=body, timeout=60).raise_for_status().json()
    scored = {c["name"]: c for c in expected["candidates"]}

    page.evaluate(
        """([names, logits, labels]) => {
            document.querySelectorAll('.candidate').forEach((box, k) => k && box.remove());
            document.querySelector('#add-candidate').click();
            document.querySelectorAll('.candidate').forEach((box, k) => {
                box.querySelector('.candidate-name').value = names[k];
                box.querySelector('.candidate-logits').value = logits[k];
            });
            document.querySelector('#labels').value = labels;
        }""",
        [names, [json.dumps(candidates[name]) for name in names], json.dumps(labels)],
    )
    if not page.is_visible("#opt-bootstrap"):
        page.click(".options summary")
    assert page.is_disabled("#opt-replicates")
    page.check("#opt-bootstrap")
    assert not page.is_disabled("#opt-replicates")
    page.fill("#opt-replicates", str(BOOTSTRAP["replicates"]))
    page.fill("#opt-confidence", str(BOOTSTRAP["confidence_level"]))
    page.fill("#opt-seed", str(BOOTSTRAP["seed"]))
    page.click("#run-compare")
    page.wait_for_selector("#difference-table tbody[data-pair='model-a|model-b']")

    # The pairwise differences: every criterion of the one pair, as /compare returns them.
    [difference] = expected["differences"]
    assert (difference["a"], difference["b"]) == ("model-a", "model-b")
    assert page.locator("#difference-table tbody").count() == 1
    pair = page.locator("#difference-table tbody[data-pair='model-a|model-b']")
    assert pair.locator("th.pair").first.inner_text() == f"model-a {MINUS} model-b"
    criteria = difference["criteria"]
    assert _attrs(page, "#difference-table tbody tr", "data-criterion") == list(criteria)
    marked = set()
    for criterion, d in criteria.items():
        row = pair.locator(f"tr[data-criterion={criterion}]")
        is_accuracy = criterion == "accuracy"
        estimate = row.locator("td.estimate").inner_text()
        if is_accuracy:  # in percentage points
            assert estimate.endswith(" pp")
            assert_fixed(estimate.removesuffix(" pp"), d["estimate"], 1, 100)
            interval = row.locator("td.interval").inner_text()
            assert interval.endswith(" pp")
            assert_bounds(interval.removesuffix(" pp"), d["low"], d["high"], 100)
        else:
            assert_fixed(estimate, d["estimate"], 4)
            assert_bounds(row.locator("td.interval").inner_text(), d["low"], d["high"])
        assert_p_value(row.locator("td.p-value .value").inner_text(), d["p_value"])
        assert_p_value(row.locator("td.holm .value").inner_text(), d["p_adjusted"])
        # A star on each p-value below 1 - confidence level, and the row marked when Holm's
        # adjusted p or McNemar's is.
        ps = {"p-value": d["p_value"], "holm": d["p_adjusted"], "mcnemar": d.get("mcnemar_p_value")}
        for kind, p in ps.items():
            star = row.locator(f"td.{kind} .mark").inner_text() if p is not None else ""
            assert star == ("★" if p is not None and p < ALPHA else ""), (criterion, kind, p)
        significant = any(p is not None and p < ALPHA for k, p in ps.items() if k != "p-value")
        assert ("significant" in row.get_attribute("class").split()) == significant, criterion
        if significant:
            marked.add(criterion)
        better = d["estimate"] > 0 if is_accuracy else d["estimate"] < 0
        assert row.locator("td.favours").inner_text() == ("model-a" if better else "model-b")
    mcnemar = pair.locator("tr[data-criterion=accuracy] td.mcnemar .value").inner_text()
    assert_p_value(mcnemar, criteria["accuracy"]["mcnemar_p_value"])
    # The data make the marks bite: model-b is clearly worse, and ECE's p is just above alpha.
    assert {"ce", "total", "accuracy"} <= marked
    assert criteria["accuracy"]["mcnemar_p_value"] < ALPHA
    assert "ece" not in marked
    assert ALPHA < criteria["ece"]["p_value"] < 2 * ALPHA
    assert page.locator("#difference-table tr.significant").count() == len(marked)
    legend = page.inner_text("#differences-legend")
    assert f"★ marks a Holm-adjusted p < 0.05 (1 {MINUS} the 95% confidence level)" in legend
    assert "Lower is better for every loss, so a negative difference favours a" in legend
    assert "for accuracy (in percentage points) higher is better" in legend

    # The intervals: each candidate's "estimate [low, high]" per criterion, and its error bar.
    title = "Bootstrap intervals: 95% percentile intervals, 500 replicates, seed 7"
    assert page.inner_text("#intervals-title") == title
    for result in scored.values():
        assert result["bootstrap"] == BOOTSTRAP
    rows = page.locator("#interval-table tbody tr")
    assert rows.count() == 9
    for criterion in scored["model-a"]["intervals"]:
        row = page.locator(f"#interval-table tr[data-criterion={criterion}]")
        for name in names:
            text = row.locator(f"td.interval[data-candidate={name}]").inner_text()
            assert_interval_text(text, criterion, scored[name]["intervals"][criterion])
        # One bar per candidate on one axis: positions are one linear map of the values.
        bars = {}
        for name in names:
            bar = row.locator(f"g.ebar[data-candidate={name}]")
            line = bar.locator("line.range")
            bars[name] = [
                float(line.get_attribute("x1")),
                float(line.get_attribute("x2")),
                float(bar.locator("circle.estimate").get_attribute("cx")),
            ]
        a, b = (scored[name]["intervals"][criterion] for name in names)
        scale = (bars["model-a"][1] - bars["model-a"][0]) / (a["high"] - a["low"])
        for name, iv in zip(names, (a, b), strict=True):
            for at, value in zip(bars[name], (iv["low"], iv["high"], iv["estimate"]), strict=True):
                assert math.isclose(
                    at, bars["model-a"][0] + (value - a["low"]) * scale, abs_tol=0.01
                )
    # ... and under each value of the cards and the ranking.
    ce = scored["model-a"]["intervals"]["ce"]
    card = page.inner_text("#summary [data-metric=ce] .interval")
    assert card.startswith("95% ")
    assert_bounds(card.removeprefix("95% "), ce["low"], ce["high"])
    cell = page.locator("#ranking tr[data-candidate=model-b] [data-criterion=accuracy] .interval")
    spread = scored["model-b"]["intervals"]["accuracy"]
    assert_bounds(cell.inner_text(), spread["low"], spread["high"], 100, "%")

    # The reliability diagram: one point and one count bar per non-empty bin, on the axes the
    # diagonal spans from (0, 0) to (1, 1).
    diagonal = page.locator("#reliability line.diagonal")
    assert diagonal.count() == 1
    x0, y0, x1, y1 = (float(diagonal.get_attribute(a)) for a in ("x1", "y1", "x2", "y2"))
    assert x1 > x0  # up and to the right
    assert y1 < y0
    for name in names:
        bins = scored[name]["sums"]["bins"]
        filled = [b for b, n in enumerate(bins["count"]) if n > 0]
        assert 0 < len(filled) < len(bins["count"])  # the data leave some bins empty
        points = page.locator(f"#reliability circle.bin-point[data-candidate={name}]")
        assert points.count() == len(filled)
        assert [
            int(b)
            for b in _attrs(
                page, f"#reliability circle.bin-point[data-candidate={name}]", "data-bin"
            )
        ] == filled
        count_bars = f"#reliability rect.count-bar[data-candidate={name}]"
        assert [float(n) for n in _attrs(page, count_bars, "data-count")] == [
            bins["count"][b] for b in filled
        ]
        for k, b in enumerate(filled):
            confidence = bins["confidence"][b] / bins["count"][b]
            share = bins["correct"][b] / bins["count"][b]
            point = points.nth(k)
            assert math.isclose(float(point.get_attribute("cx")), x0 + confidence * (x1 - x0))
            assert math.isclose(float(point.get_attribute("cy")), y0 + share * (y1 - y0))
        assert f"{name}: {len(filled)} of {len(bins['count'])}" in page.inner_text(
            "#reliability-note"
        )
        legend = page.locator(f"#reliability-legend [data-candidate={name}]").inner_text()
        shown_ece = re.fullmatch(rf"{name} \(ECE (\S+)\)", legend)
        assert shown_ece
        assert_fixed(shown_ece[1], scored[name]["metrics"]["ece"], 4)
    titles = page.locator("#reliability text.title").all_text_contents()
    assert titles == [
        "confidence (mean of the bin's samples)",
        "accuracy (share correct)",
        "samples",
    ]
    ticks = ["0", "0.2", "0.4", "0.6", "0.8", "1"]
    assert page.locator("#reliability text.x-tick").all_text_contents() == ticks
    assert page.locator("#reliability text.y-tick").all_text_contents() == ticks
    note = page.inner_text("#reliability-note")
    assert "empty bins are left out" in note
    assert "On the dashed diagonal y = x a model is calibrated: ECE sums the vertical gaps" in note

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-bootstrap.png"), full_page=True)
    assert (ARTIFACTS / "dashboard-bootstrap.png").stat().st_size > 10_000

    # Off again: no intervals, and the panels say what would fill them.
    page.uncheck("#opt-bootstrap")
    assert page.is_disabled("#opt-replicates")
    page.click("#run-score")
    page.wait_for_selector("#intervals .empty")
    assert page.inner_text("#intervals .empty").startswith("Tick bootstrap intervals under Loss")
    assert page.inner_text("#differences .empty").startswith("Run Compare with two or more")
    assert page.locator("#summary .interval").count() == 0
    assert page.locator("#reliability circle.bin-point").count() == len(
        [n for n in scored["model-a"]["sums"]["bins"]["count"] if n > 0]
    )


@needs_chromium
def test_classes_and_slices_in_chromium(page):
    """Per-class metrics and a confusion heat map of the most confused classes; each slice with
    its count, total's interval and its gap from the rest, the Holm-significant ones marked,
    and each pair's difference inside each key: as /compare answers them."""
    labels, candidates = bootstrap_batch()
    n = len(labels)
    rng = random.Random(9)
    language = [rng.choice(["de", "en", "fr"]) for _ in range(n)]
    # model-a is far better on "hard" rows, which make up the slice "web": a real gap there
    source = [("web" if labels[k] in (0, 1) else "book") for k in range(n)]
    groups = {"language": language, "source": source}
    body = {
        "labels": labels,
        "candidates": [{"name": name, "logits": logits} for name, logits in candidates.items()],
        "per_class": True,
        "groups": groups,
        "bootstrap": {"replicates": 300, "seed": 4},
    }
    expected = httpx.post(page.url + "compare", json=body, timeout=60).raise_for_status().json()
    page.evaluate(
        """([logits, labels, groups]) => {
            document.querySelectorAll('.candidate').forEach((box, k) => k && box.remove());
            document.querySelector('#add-candidate').click();
            const names = Object.keys(logits);
            document.querySelectorAll('.candidate').forEach((box, k) => {
                box.querySelector('.candidate-name').value = names[k];
                box.querySelector('.candidate-logits').value = JSON.stringify(logits[names[k]]);
            });
            document.querySelector('#labels').value = JSON.stringify(labels);
            document.querySelector('#groups').value = groups;
        }""",
        [
            candidates,
            labels,
            "language,source\n"
            + "\n".join(f"{a},{b}" for a, b in zip(language, source, strict=True)),
        ],
    )
    if not page.is_visible("#opt-per-class"):
        page.click(".options summary")
    page.check("#opt-per-class")
    page.check("#opt-bootstrap")
    page.fill("#opt-replicates", "300")
    page.fill("#opt-seed", "4")
    page.click("#run-compare")
    page.wait_for_selector("#slice-table-language")
    first = expected["candidates"][0]
    classes = first["classes"]
    rows = page.locator("#class-table tbody tr")
    assert rows.count() == len(classes["support"])
    for c in range(rows.count()):
        cells = rows.nth(c).locator("td").all_inner_texts()
        assert cells[0] == str(c)
        assert int(cells[1]) == classes["support"][c]
        assert_fixed(cells[4], classes["f1"][c], 3)
        assert_fixed(cells[6], classes["ece"][c], 4)
    confused = page.locator("#confusion rect")
    assert 0 < confused.count() <= 12 * 12
    for column, entries in first["groups"].items():
        table = page.locator(f"#slice-table-{column} tbody tr")
        assert table.count() == len(entries)
        for k, entry in enumerate(entries):
            row = table.nth(k)
            cells = row.locator("td").all_inner_texts()
            assert cells[0] == str(entry["key"])
            assert cells[1] == f"{entry['count']:,}"
            gap = entry["vs_rest"]["total"]
            assert_fixed(cells[6], gap["estimate"], 4)
            significant = gap["p_adjusted"] < 0.05
            assert ("significant" in (row.get_attribute("class") or "")) == significant
            assert cells[-1] == ("★" if significant else "")
    [pair] = expected["differences"]
    pair_rows = page.locator("#pair-table-source tbody tr")
    assert pair_rows.count() == len(pair["groups"]["source"])
    marks = [pair_rows.nth(k).locator("td").last.inner_text() for k in range(pair_rows.count())]
    want = [
        "★" if e["criteria"]["total"]["p_adjusted"] < 0.05 else "" for e in pair["groups"]["source"]
    ]
    assert marks == want
    assert "★" in marks  # model-b is worse inside some source: the marks bite
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#classes-title").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "dashboard-where.png"), full_page=True)
    assert (ARTIFACTS / "dashboard-where.png").stat().st_size > 10_000


@needs_chromium
def test_group_columns_read_from_csv_keep_codes_as_strings_in_chromium(page):
    """A CSV column of plain integers is sent as integers; one with a leading zero (a code,
    such as a postcode) or past 15 digits stays strings, so no two keys merge."""
    read = """(text) => { document.querySelector('#groups').value = text; return readGroups(); }"""
    assert page.evaluate(read, "site,zip\n-3,01234\n10,1234\n0,00007") == {
        "site": [-3, 10, 0],
        "zip": ["01234", "1234", "00007"],
    }
    assert page.evaluate(read, "id\n1234567890123456\n1") == {"id": ["1234567890123456", "1"]}
    assert page.evaluate(read, '{"g": ["a", "b"]}') == {"g": ["a", "b"]}
    assert page.evaluate(read, "") is None


@needs_chromium
def test_the_page_shows_the_services_warnings_in_chromium(page):
    rng = random.Random(4)
    rows = []
    for _ in range(12):
        cuts = sorted([rng.random(), rng.random()])
        rows.append([round(cuts[0], 6), round(cuts[1] - cuts[0], 6), round(1 - cuts[1], 6)])
    for row in rows:
        row[2] = round(1 - row[0] - row[1], 6)
    page.evaluate(
        """([rows, labels]) => {
            document.querySelectorAll('.candidate').forEach((box, k) => k && box.remove());
            document.querySelector('.candidate-logits').value = JSON.stringify(rows);
            document.querySelector('#labels').value = JSON.stringify(labels);
            document.querySelector('#groups').value = '';
        }""",
        [rows, [0, 1, 2] * 4],
    )
    page.click("#run-score")
    page.wait_for_selector("#warnings", state="visible")
    assert "`logits` look like probabilities" in page.inner_text("#warnings")
    page.click("#load-example")
    page.click("#run-score")
    page.wait_for_selector("#warnings", state="hidden")


@needs_chromium
@pytest.mark.parametrize("index", [False, True], ids=["to_csv-index-False", "to_csv-default"])
def test_scikit_learn_outputs_as_pandas_writes_them_in_chromium(page, index):
    """Each model's outputs as ``DataFrame.to_csv`` writes them (its header row of column
    numbers, or of ``KIND_0 ...``; with ``index=True``, pandas' default, an index column too),
    labels as an unnamed ``Series.to_csv`` writes them (a header "0"), give scikit-learn's
    ``accuracy_score`` and ``log_loss``: the kind chosen, or read from the header."""
    import pandas as pd

    from tests.sklearn_models import outputs

    for want in outputs():
        for kind, values in want.predictions.items():
            frame = pd.DataFrame(values.reshape(len(values), -1))
            named = kind == "log_probabilities"  # its header names the kind; the rest are chosen
            text = (frame.add_prefix(f"{kind}_") if named else frame).to_csv(index=index)
            page.evaluate(
                """([text, labels]) => {
                    document.querySelectorAll('.candidate').forEach((box, k) => k && box.remove());
                    document.querySelector('.candidate-logits').value = text;
                    document.querySelector('#labels').value = labels;
                    document.querySelector('#groups').value = '';
                    document.querySelector('#summary').replaceChildren();
                }""",
                [text, pd.Series(want.labels).to_csv(index=False)],
            )
            page.select_option(".candidate-kind", "logits" if named else kind)
            page.click("#run-score")
            page.wait_for_selector("#summary [data-metric=ce] .value")
            where = f"{want.name} {kind}"
            assert page.input_value(".candidate-kind") == kind, where
            assert page.inner_text("#summary [data-metric=ce] .value") == f"{want.log_loss:.4f}"
            accuracy = page.inner_text("#summary [data-metric=accuracy] .value")
            assert accuracy == f"{want.accuracy * 100:.1f}%", where
            samples = page.inner_text("#summary [data-metric=ece]")
            assert f"{len(want.labels)} samples" in samples, where  # the header row set aside
            assert page.is_hidden("#warnings"), where


@needs_chromium
def test_one_csv_of_predictions_labels_and_more_as_the_command_line_reads_it_in_chromium(page):
    """The file `fairloss score` takes: ``probabilities_0 ...``, ``labels`` and a text column;
    the labels box left empty, the labels come from the file, and the other columns stay out
    of the predictions."""
    import pandas as pd

    from tests.sklearn_models import outputs

    want = next(o for o in outputs() if o.name == "digits-forest")
    frame = pd.DataFrame(want.predictions["probabilities"]).add_prefix("probabilities_")
    site = ["a" if k % 3 else "b" for k in range(len(want.labels))]
    text = frame.assign(labels=want.labels, site=site).to_csv(index=False)
    page.evaluate(
        """(text) => {
            document.querySelectorAll('.candidate').forEach((box, k) => k && box.remove());
            document.querySelector('.candidate-logits').value = text;
            document.querySelector('#labels').value = '';
            document.querySelector('#groups').value = '';
            document.querySelector('#summary').replaceChildren();
        }""",
        text,
    )
    page.select_option(".candidate-kind", "logits")
    page.click("#run-score")
    page.wait_for_selector("#summary [data-metric=ce] .value")
    assert page.input_value(".candidate-kind") == "probabilities"
    assert page.inner_text("#summary [data-metric=ce] .value") == f"{want.log_loss:.4f}"
    assert f"{len(want.labels)} samples" in page.inner_text("#summary [data-metric=ece]")


@needs_chromium
@pytest.mark.parametrize("width", [390, 1366])
def test_the_page_fits_a_phone_and_a_laptop_in_chromium(page, width):
    """With every result shown (two candidates compared with the bootstrap, per class and
    slices), the page is no wider than the screen: a wide table scrolls inside its own box.
    The API key field is in sight without opening a section. Screenshots in artifacts/."""
    page.set_viewport_size({"width": width, "height": 844})
    try:
        page.click("#load-example")
        assert page.is_visible("#opt-key")
        assert page.evaluate("document.querySelector('#opt-key').closest('details')") is None
        page.click("#add-candidate")
        page.locator(".candidate-logits").nth(1).fill("[[2, 0.33, 0.33], [0.49, 0.51, 0.0]]")
        page.fill("#groups", '{"language": ["de", "en"]}')
        page.evaluate(
            """() => {
                document.querySelector('details.options').open = true;
                for (const id of ['#opt-bootstrap', '#opt-per-class']) {
                    const box = document.querySelector(id);
                    if (!box.checked) box.click();
                }
            }"""
        )
        page.click("#run-compare")
        page.wait_for_selector("#difference-table tbody tr")
        page.wait_for_selector("#slices table")
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / f"dashboard-{width}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
    finally:
        page.evaluate(
            """() => {
                for (const id of ['#opt-bootstrap', '#opt-per-class']) {
                    const box = document.querySelector(id);
                    if (box.checked) box.click();
                }
                document.querySelector('#groups').value = '';
            }"""
        )
        page.set_viewport_size({"width": 1360, "height": 1000})


@needs_chromium
def test_the_server_line_refreshes_as_a_key_is_typed(page: Any) -> None:
    """With API keys on, /info needs one: the line says so until a key is typed, and then (no
    Enter, no leaving the field) shows the server, its body limit in the unit that reads."""
    env = {"FAIRLOSS_API_KEYS": "sekrit", "FAIRLOSS_MAX_BODY_BYTES": "100000"}
    with running_server(env) as server:
        tab = page.context.browser.new_page()
        try:
            tab.goto(server.url + "/")
            tab.wait_for_function(
                "document.querySelector('#server-info').textContent.includes('unavailable')"
            )
            tab.locator("#opt-key").press_sequentially("sekrit")
            tab.wait_for_function(
                "document.querySelector('#server-info').textContent.includes('service')"
            )
            assert tab.inner_text("#server-info").endswith("bodies up to 97.7 KiB")
            assert tab.evaluate("document.activeElement.id") == "opt-key"
        finally:
            tab.close()
