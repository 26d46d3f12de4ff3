"""``dvc plots show`` pages work offline: the repository's template carries Vega inline."""

from __future__ import annotations

import configparser
import re
import time
from pathlib import Path

import pytest
from browser import Chromium

from conftest import PROJECT_ROOT, run
from facerec.reports.dvc_plots_page import TEMPLATE, offline_template


def test_the_repository_points_dvc_at_the_current_offline_template() -> None:
    config = configparser.ConfigParser()
    config.read(PROJECT_ROOT / ".dvc" / "config")
    assert config["plots"]["html_template"] == TEMPLATE.as_posix()
    committed = (PROJECT_ROOT / ".dvc" / TEMPLATE).read_text(encoding="utf-8")
    # Regenerated from the pinned vl-convert-python: `facerec plots-template` after an upgrade.
    assert committed == offline_template(), "stale .dvc/plots/offline.html: run `facerec plots-template`"
    assert "cdn.jsdelivr" not in committed and "<script src" not in committed


@pytest.fixture
def browser(tmp_path: Path):
    chromium = Chromium(tmp_path / "profile")
    yield chromium
    chromium.close()


def test_dvc_plots_show_renders_every_plot_with_no_request_leaving_the_page(small_project: Path, tmp_path: Path,
                                                                            browser: Chromium) -> None:
    run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], small_project)
    page = tmp_path / "plots" / "index.html"
    html = page.read_text(encoding="utf-8")
    charts = len(re.findall(r"vegaEmbed\('#", html))
    assert charts >= 5, f"only {charts} Vega plots in the page"  # training, tuning, ROC, ... (dvc.yaml's plots)

    browser.open(page.as_uri())
    rendered = "document.querySelectorAll('.vega-embed canvas, .vega-embed svg.marks').length"
    deadline = time.monotonic() + 30
    while browser.evaluate(rendered) < charts:
        assert time.monotonic() < deadline, f"{browser.evaluate(rendered)} of {charts} plots drawn after 30 s"
        time.sleep(0.2)

    assert not browser.exceptions, browser.exceptions
    left = [url for url in browser.requests if not url.startswith(("file:", "data:", "blob:"))]
    assert not left, f"the page fetched {left}"
    # Each chart has marks on it: a drawn canvas is not blank.
    blank = browser.evaluate("""[...document.querySelectorAll('.vega-embed canvas')].filter(canvas => {
        const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) return false;
        return true;
    }).length""")
    assert blank == 0
