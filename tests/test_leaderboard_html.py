"""The interactive leaderboard page in a real headless Chromium: it renders offline, and its
set menu shows one evaluation set at a time (bar chart, table, ROC, Pareto front), with the
set and the metric kept in the URL."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from browser import Chromium
from PIL import Image
from test_leaderboard import FACENET, NOT_FOUND, TOPOFR, write_metrics

from facerec.reports.leaderboard import (
    LOWER_IS_BETTER,
    build_leaderboard,
    by_set,
    pareto_front,
    read_benchmarks,
    read_evaluations,
    read_rocs,
    skipped_evaluations,
)
from facerec.reports.leaderboard_html import write_leaderboard_html

CHART_READY = "document.querySelectorAll('#chart .bars .point').length > 0"
VIEW = """({set: setMenu.value, metric: menu.value, hash: location.hash,
  chart: {set: chart.dataset.set, metric: chart.dataset.metric, models: chart.data[0].y, values: chart.data[0].x},
  table: {sortedBy: table.dataset.sortedBy, columns: [...table.tHead.rows[0].cells].map(c => c.textContent),
          models: [...table.tBodies[0].rows].map(r => r.cells[0].textContent)},
  roc: {set: roc.dataset.set, models: roc.data.map(t => t.name), log: roc.layout.xaxis.type},
  pareto: {set: pareto.dataset.set, metric: pareto.dataset.metric, models: pareto.data[0].text,
           front: pareto.data[1].text}})"""


@pytest.fixture(scope="module")
def board(tmp_path_factory) -> dict:
    """The page of test_leaderboard's metrics files, and what it was made of."""
    root = tmp_path_factory.mktemp("board")
    metrics = write_metrics(root)
    evaluations = read_evaluations(metrics / "evaluate")
    records = build_leaderboard(evaluations, read_benchmarks([metrics / "benchmark", metrics / "zoo" / "benchmark"]),
                                "lfw_accuracy")
    rocs = read_rocs(metrics / "roc")
    page = root / "leaderboard.html"
    write_leaderboard_html(page, records, "lfw_accuracy", rocs, skipped_evaluations(evaluations), {TOPOFR: NOT_FOUND})
    return {"page": page, "sets": by_set(records), "rocs": rocs}


@pytest.fixture
def browser(tmp_path: Path):
    chromium = Chromium(tmp_path / "profile")
    yield chromium
    chromium.close()


def _wait_for(browser: Chromium, condition: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not browser.evaluate(f"Boolean({condition})"):
        assert time.monotonic() < deadline, f"{condition} still false after {timeout} s"
        time.sleep(0.05)


def _assert_shows(view: dict, board: dict, set_name: str, metric: str) -> None:
    """Every part of the page shows ``set_name``'s models, by ``metric``."""
    rows = board["sets"][set_name]
    models = [row["model"] for row in rows]
    # Plotly draws the first bar at the bottom: worst first puts the best on top.
    worst_first = sorted((r for r in rows if r[metric] is not None), key=lambda r: r[metric],
                         reverse=metric in LOWER_IS_BETTER)
    assert view["set"] == set_name and view["metric"] == metric
    assert view["chart"] == {"set": set_name, "metric": metric, "models": [r["model"] for r in worst_first],
                             "values": [r[metric] for r in worst_first]}
    assert view["table"]["sortedBy"] == metric and sorted(view["table"]["models"]) == sorted(models)
    assert view["roc"] == {"set": set_name, "log": "log",
                           "models": sorted(board["rocs"][set_name]["model"].unique())}
    assert view["pareto"]["set"] == set_name and view["pareto"]["metric"] == metric
    assert sorted(view["pareto"]["models"]) == sorted(r["model"] for r in rows if r[metric] is not None)
    assert view["pareto"]["front"] == pareto_front(rows, metric)


def test_switching_the_set_shows_that_sets_models_everywhere_and_nothing_is_fetched(board, browser, tmp_path):
    browser.open(board["page"].as_uri(), CHART_READY)
    first = browser.evaluate(VIEW)
    _assert_shows(first, board, "lfw", "lfw_accuracy")
    assert first["hash"] == "#set=lfw&metric=lfw_accuracy"
    assert len(first["pareto"]["front"]) < len(first["pareto"]["models"])  # a dominated model is off the front
    skipped = browser.evaluate("document.getElementById('skipped').textContent")
    assert f"{TOPOFR}: {NOT_FOUND}" in skipped and f"{FACENET}: needs 160x160 crops" in skipped

    # The set menu, as a user changes it: "mine" has no lfw_accuracy, so its own ranking shows.
    browser.evaluate("setMenu.value = 'mine'; setMenu.dispatchEvent(new Event('change')); true")
    switched = browser.evaluate(VIEW)
    _assert_shows(switched, board, "mine", "tar_at_far_1e-3")
    assert "lfw_accuracy" not in switched["table"]["columns"] and "rank1" in switched["table"]["columns"]
    assert switched["hash"] == "#set=mine&metric=tar_at_far_1e-3"
    assert set(switched["chart"]["models"]) != set(first["chart"]["models"])

    # Self-contained: the page loaded nothing besides itself.
    assert browser.evaluate("performance.getEntriesByType('resource').length") == 0
    shot = np.asarray(Image.open(browser.screenshot(tmp_path / "leaderboard.png")).convert("RGB")).astype(int)
    bar_pixels = (np.abs(shot - [0x4C, 0x72, 0xB0]).sum(axis=2) < 30).sum()  # the bars' colour, drawn
    assert bar_pixels > 2000, bar_pixels
    assert not browser.exceptions, browser.exceptions


def test_the_url_hash_picks_the_set_and_metric_and_follows_the_menus(board, browser):
    browser.open(board["page"].as_uri() + "#set=mine&metric=fnir_at_fpir_1e-2", CHART_READY)
    view = browser.evaluate(VIEW)
    _assert_shows(view, board, "mine", "fnir_at_fpir_1e-2")
    assert view["chart"]["values"] == [0.3, 0.2, 0.05]  # lower is better: the smallest on top

    browser.evaluate("menu.value = 'rank1'; menu.dispatchEvent(new Event('change')); true")
    assert browser.evaluate("location.hash") == "#set=mine&metric=rank1"
    browser.open(board["page"].as_uri() + browser.evaluate("location.hash"), CHART_READY)  # a shared link
    _assert_shows(browser.evaluate(VIEW), board, "mine", "rank1")

    # A link edited in place: the view follows; a metric the set lacks gives way to its ranking.
    browser.evaluate("location.hash = '#set=vgg2_fp&metric=rank1'; true")
    _wait_for(browser, "chart.dataset.set === 'vgg2_fp'")  # hashchange fires after the script returns
    _assert_shows(browser.evaluate(VIEW), board, "vgg2_fp", "roc_auc")
    assert browser.evaluate("location.hash") == "#set=vgg2_fp&metric=roc_auc"
    assert not browser.exceptions, browser.exceptions
