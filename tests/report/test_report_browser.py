"""Open generated reports in headless Chromium: no errors, figures have data, text stays text."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from report_fixture import EVIL, make_study

from study.report import build_compare_report, build_report

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path("/tmp/study_report_browser.png")

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _open(browser, index: Path) -> tuple[object, dict[str, list[str]]]:
    """Load index.html from disk and collect console errors, page errors and dialogs."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    seen: dict[str, list[str]] = {"console": [], "pageerror": [], "dialog": [], "request": []}
    page.on("console", lambda m: seen["console"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen["pageerror"].append(str(e)))
    page.on("dialog", lambda d: (seen["dialog"].append(d.message), d.dismiss()))
    # Offline means no request leaves file://.
    page.on(
        "request",
        lambda r: (
            seen["request"].append(r.url) if not r.url.startswith(("file:", "data:")) else None
        ),
    )
    page.goto(index.resolve().as_uri())
    page.wait_for_load_state("load")
    return page, seen


def _check_page(page, seen: dict[str, list[str]], n_figures: int) -> None:
    assert seen == {"console": [], "pageerror": [], "dialog": [], "request": []}
    traces = page.evaluate(
        "Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => d.data.length)"
    )
    assert len(traces) == n_figures and all(n > 0 for n in traces), traces
    rows = page.evaluate(
        "Array.from(document.querySelectorAll('table')).map(t => t.tBodies[0].rows.length)"
    )
    assert rows and all(n > 0 for n in rows), rows


def test_study_report_in_browser(browser, tmp_path: Path) -> None:
    study = make_study(tmp_path, n_trials=16, models=("googlenet", "vanilla_cnn"))
    index = build_report(str(study), str(tmp_path / "out"))
    page, seen = _open(browser, index)
    # architectures 1, history 2, curves 1, hyperparameters 3, cost 1, 2 evaluated trials
    _check_page(page, seen, n_figures=10)
    # The malicious class and file names show as literal text, in HTML and in Plotly's SVG...
    assert EVIL in page.inner_text("#summary") and EVIL in page.inner_text("#best")
    assert f"{EVIL}.png" in page.inner_text("#best")
    assert EVIL in page.evaluate("document.querySelector('#best .js-plotly-plot').textContent")
    # ...and never become elements: the only images are the embedded data: thumbnails.
    srcs = page.evaluate("Array.from(document.images).map(i => i.src.slice(0, 22))")
    assert srcs and set(srcs) == {"data:image/png;base64,"}
    assert page.is_hidden("#plotly-missing")
    # The new sections open from the navigation; hovering a trial shows its family and id.
    page.click("nav a[href='#architectures']")
    assert "googlenet leads vanilla_cnn" in page.inner_text("#architectures .verdict")
    point = page.locator("#architectures .boxlayer .point").first
    point.scroll_into_view_if_needed()
    box = point.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # Plotly's layer
    page.wait_for_selector("#architectures .hoverlayer .hovertext", timeout=5000)
    assert "trial t0" in page.text_content("#architectures .hoverlayer .hovertext")
    page.click("nav a[href='#history']")
    assert page.locator("#history .js-plotly-plot").count() == 2
    # The second evaluated trial's confusion matrix is one click away, drawn at full width.
    page.click("#best .tab >> nth=1")
    assert page.is_visible("#eval-1") and page.is_hidden("#eval-0")
    assert page.evaluate("document.querySelector('#eval-1 .main-svg').clientWidth") > 600
    # Sorting the leaderboard by a header click orders that column.
    col = "max val acc"

    def column() -> list[float]:
        return page.evaluate(f"""Array.from(document.querySelectorAll('#leaderboard tbody tr'))
            .map(r => r.cells[Array.from(document.querySelectorAll('#leaderboard th'))
            .findIndex(h => h.textContent.trim() === '{col}')].textContent.trim())""")

    page.click(f"#leaderboard th:text-is('{col}')")
    values = [float(v) for v in column() if v]
    assert values == sorted(values, reverse=True) and values[0] > values[-1]
    page.click(f"#leaderboard th:text-is('{col}')")
    values = [float(v) for v in column() if v]
    assert values == sorted(values)
    assert seen == {"console": [], "pageerror": [], "dialog": [], "request": []}
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.close()
    # index.html copied without its assets/ folder: a visible note, not blank figures
    alone = tmp_path / "copied" / "index.html"
    alone.parent.mkdir()
    shutil.copy(index, alone)
    page, _ = _open(browser, alone)
    assert page.is_visible("#plotly-missing")
    assert "assets/" in page.inner_text("#plotly-missing")
    page.close()


def test_partial_and_compare_reports_in_browser(browser, tmp_path: Path) -> None:
    partial = make_study(tmp_path, "partial", statuses=["finished"], tables=("trials", "epochs"))
    page, seen = _open(browser, build_report(str(partial), str(tmp_path / "p")))
    # One trial, no predictions: families, history and timeline, curves, parallel coordinates,
    # axes and cost still draw.
    _check_page(page, seen, n_figures=7)
    assert "predictions.parquet is missing" in page.inner_text("#notes")
    page.close()
    other = make_study(tmp_path, "other", model="resnet18", dataset="manga", seed=1)
    index = build_compare_report([str(partial), str(other)], str(tmp_path / "c"))
    page, seen = _open(browser, index)
    _check_page(page, seen, n_figures=1)
    assert "resnet18" in page.inner_text("#results")
    page.close()
