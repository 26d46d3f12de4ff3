"""The interactive leaderboard page in a real headless Chromium: it renders offline, shows
every model, and its metric menu and column headers redraw the chart and the table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from browser import Chromium
from PIL import Image

from facerec.reports.leaderboard import COLUMNS, LOWER_IS_BETTER
from facerec.reports.leaderboard_html import write_leaderboard_html

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHART_READY = "document.querySelectorAll('#chart .bars .point').length > 0"


@pytest.fixture(scope="module")
def records() -> list[dict]:
    """The project's committed leaderboard: our model and the zoo's, measured here."""
    return json.loads((PROJECT_ROOT / "metrics" / "leaderboard.json").read_text())


@pytest.fixture
def browser(tmp_path: Path):
    chromium = Chromium(tmp_path / "profile")
    yield chromium
    chromium.close()


def _page(tmp_path: Path, records: list[dict]) -> Path:
    page = tmp_path / "leaderboard.html"
    skipped = {"topofr_r100_ms1mv2": "checkpoint file not found"}
    write_leaderboard_html(page, records, COLUMNS, LOWER_IS_BETTER, "lfw_accuracy", skipped)
    return page


def _chart(browser: Chromium) -> dict:
    return browser.evaluate("({metric: chart.dataset.metric, title: chart.layout.title.text,"
                            " models: chart.data[0].y, values: chart.data[0].x,"
                            " bars: document.querySelectorAll('#chart .bars .point').length})")


def test_the_page_renders_every_model_offline_and_the_menu_switches_the_chart(tmp_path, records, browser):
    page = _page(tmp_path, records)
    browser.open(page.as_uri(), CHART_READY)

    chart = _chart(browser)
    models = [record["model"] for record in records]
    assert chart["metric"] == "lfw_accuracy" and "higher is better" in chart["title"]
    assert sorted(chart["models"]) == sorted(models) and chart["bars"] == len(models)
    best_last = sorted(records, key=lambda record: record["lfw_accuracy"])
    assert chart["values"] == pytest.approx([record["lfw_accuracy"] for record in best_last])
    table = browser.evaluate("[...document.querySelectorAll('#board tbody tr')].map(r => r.cells[0].textContent)")
    assert sorted(table) == sorted(models)
    assert "topofr_r100_ms1mv2" in browser.evaluate("document.getElementById('skipped').textContent")
    # Self-contained: the page loaded nothing besides itself.
    assert browser.evaluate("performance.getEntriesByType('resource').length") == 0

    # The menu, as a user changes it: a lower-is-better metric, best (smallest) on top.
    browser.evaluate("menu.value = 'eer'; menu.dispatchEvent(new Event('change')); true")
    switched = _chart(browser)
    assert switched["metric"] == "eer" and "lower is better" in switched["title"]
    assert switched["values"] == pytest.approx(sorted((r["eer"] for r in records), reverse=True))
    assert switched["values"] != chart["values"]
    assert browser.evaluate("location.hash") == "#metric=eer"
    assert browser.evaluate("table.dataset.sortedBy") == "eer"
    assert not browser.exceptions, browser.exceptions


def test_models_without_the_metric_are_left_off_the_chart_but_kept_in_the_table(tmp_path, records, browser):
    page = _page(tmp_path, records)
    browser.open(page.as_uri() + "#metric=gflops", CHART_READY)
    with_figure = [record["model"] for record in records if record["gflops"] is not None]
    assert sorted(_chart(browser)["models"]) == sorted(with_figure)
    assert browser.evaluate("document.querySelectorAll('#board tbody tr').length") == len(records)
    # Clicking a header sorts the table on that column, best first.
    browser.evaluate("[...document.querySelectorAll('#board th')]"
                     ".find(c => c.textContent === 'latency_ms').click(); true")
    shown = browser.evaluate("[...document.querySelectorAll('#board tbody tr')].map(r => r.cells[0].textContent)")
    assert shown == [r["model"] for r in sorted(records, key=lambda r: r["latency_ms"])]


def test_screenshot_shows_the_chart(tmp_path, records, browser):
    page = _page(tmp_path, records)
    browser.open(page.as_uri(), CHART_READY)
    shot = np.asarray(Image.open(browser.screenshot(tmp_path / "leaderboard.png")).convert("RGB")).astype(int)
    assert shot.shape[0] >= 600 and shot.shape[1] >= 800
    # The bars are drawn in the chart's colour (#4c72b0), over a visible area.
    bar_pixels = (np.abs(shot - [0x4C, 0x72, 0xB0]).sum(axis=2) < 30).sum()
    assert bar_pixels > 2000, bar_pixels
