"""Notebook 08b in a real front end: with the searches of two seeds already in the results folder
(as ``optnb search`` leaves them), run all; the per-edge tau plot renders and nothing is searched
again.

JupyterLab + Debian's headless chromium through Playwright (helpers in ``browser_util``). Skips
with the reason when chromium or playwright is missing. A failure leaves a screenshot in
``results/browser/``.
"""

from __future__ import annotations

from pathlib import Path

import browser_util
import pytest

reason = browser_util.skip_reason()
if reason:
    pytest.skip(reason, allow_module_level=True)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(480)]

NOTEBOOK = "08b_search_stability.ipynb"
ROWS = ("darts_1st", "hb", "hb_init", "agd")  # the notebook's default ROWS and SEEDS
SEEDS = (0, 1)


def _search_everything(results: Path) -> None:
    """The 8 searches of the notebook's defaults, in this process through ``optnb search``."""
    from optnb import cli
    from optnb.experiments.targets import SEARCH_ROWS

    for row in ROWS:
        space, init, order = SEARCH_ROWS[row]
        for seed in SEEDS:
            assert cli.main(["search", "--space", space, "--init", init, "--order", str(order),
                             "--profile", "smoke", "--seed", str(seed), "--results", str(results)]) == 0


def test_the_tau_plot_renders_from_searches_already_made(tmp_path, monkeypatch):
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("OPTNB_HEADLESS", "1")
    results = tmp_path / "results"
    _search_everything(results)
    env = {"OPTNB_PROFILE": "smoke", "OPTNB_RESULTS": str(results)}
    with browser_util.jupyter_lab(tmp_path, [NOTEBOOK], env=env) as lab, sync_playwright() as p:
        browser = browser_util.launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = browser_util.collect_errors(page)
        with browser_util.screenshot_on_failure(page, Path(NOTEBOOK).stem):
            browser_util.open_notebook(page, lab, NOTEBOOK)
            browser_util.run_all(page)
            page.locator(".jp-OutputArea-output", has_text="seeds = [0, 1]").wait_for(timeout=240_000)
            figures = page.locator(".jp-OutputArea-output img")
            assert figures.count() >= 2  # the per-edge tau plot and the sizes
            assert figures.first.evaluate("img => img.naturalWidth > 0 && img.complete")
            text = page.locator(".jp-Notebook").inner_text()
            assert "hb_init    space hb, init hb, order 1: seed 0 -> 08_nas_search-" in text
            assert "run  08_nas_search" not in text  # every search was found, none run again
        browser.close()
    assert not errors, errors
    assert len(list((results / "runs").glob("08_nas_search-*"))) == len(ROWS) * len(SEEDS)
