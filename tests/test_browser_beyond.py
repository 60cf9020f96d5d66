"""Notebook 10 in a real front end: run all, move the reversible HBNet's beta slider, see the
gradient-error plot redrawn for the new beta.

JupyterLab + Debian's headless chromium through Playwright (helpers in ``browser_util``). Skips
with the reason when chromium or playwright is missing. A failure leaves a screenshot in
``results/browser/``.
"""

from __future__ import annotations

import browser_util
import pytest

reason = browser_util.skip_reason()
if reason:
    pytest.skip(reason, allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(480)]

NOTEBOOK = "10_beyond_the_paper_design.ipynb"
LAST_OUTPUT = "reversible_grad_rel_err_float32"  # recorded by the notebook's last cell
EXPLORER = ".widget-vbox:has(.widget-hslider)"
PLOT = f"{EXPLORER} .widget-output img"
READOUT = ".widget-hslider .widget-readout"


def test_beta_slider_redraws_the_reversible_error_plot(tmp_path):
    env = {"OPTNB_PROFILE": "smoke", "OPTNB_RESULTS": str(tmp_path / "results")}
    with browser_util.jupyter_lab(tmp_path, [NOTEBOOK], env=env) as lab, sync_playwright() as p:
        browser = browser_util.launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = browser_util.collect_errors(page)
        with browser_util.screenshot_on_failure(page, "10_reversible"):
            browser_util.open_notebook(page, lab, NOTEBOOK)
            browser_util.run_all(page)
            page.locator(".jp-OutputArea-output", has_text=LAST_OUTPUT).wait_for(timeout=360_000)

            readout, plot = page.locator(READOUT).first, page.locator(PLOT).first
            page.locator(EXPLORER).first.scroll_into_view_if_needed(timeout=30_000)
            plot.wait_for(timeout=60_000)
            page.wait_for_function(
                "sel => (document.querySelector(sel)?.textContent || '').trim() !== ''",
                arg=READOUT, timeout=30_000)
            value_before, image_before = readout.text_content().strip(), plot.get_attribute("src")
            assert value_before == "0.50"  # the notebook's BETA default

            page.locator(".widget-hslider .noUi-handle").first.focus()
            page.keyboard.press("ArrowLeft")  # one step of 0.05
            page.wait_for_function(
                """([readoutSel, plotSel, before]) => {
                    const img = document.querySelector(plotSel);
                    const readout = document.querySelector(readoutSel);
                    return readout && readout.textContent.trim() === "0.45"
                        && img && img.getAttribute("src") !== before;
                }""",
                arg=[READOUT, PLOT, image_before],
                timeout=90_000,
            )
            assert plot.get_attribute("src") != image_before
        browser.close()
    assert not errors, errors
