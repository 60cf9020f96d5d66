"""00_tour in a real front end: JupyterLab + headless chromium, run all, move the beta slider.

Proves what papermill and nbval cannot: the widgets render, the slider responds to the keyboard
and its ``interactive_output`` re-renders the plot. Skips (with the reason) when chromium or
playwright is missing; CI installs chromium so it runs there. A failure leaves a screenshot in
``results/browser/``.
"""

from __future__ import annotations

import browser_util
import pytest

reason = browser_util.skip_reason()
if reason:
    pytest.skip(reason, allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

LAST_OUTPUT = "GD (1):"  # printed by the tour's last cell
PLOT = ".widget-vbox .widget-output img"  # the slider's interactive_output figure
READOUT = ".widget-hslider .widget-readout"


def test_tour_runs_all_and_the_slider_redraws_the_plot(tmp_path):
    env = {"OPTNB_PROFILE": "smoke", "OPTNB_RESULTS": str(tmp_path / "results")}
    with browser_util.jupyter_lab(tmp_path, ["00_tour.ipynb"], env=env) as lab, \
            sync_playwright() as p:
        browser = browser_util.launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = browser_util.collect_errors(page)
        with browser_util.screenshot_on_failure(page, "00_tour"):
            browser_util.open_notebook(page, lab, "00_tour.ipynb")
            browser_util.run_all(page)
            page.locator(".jp-OutputArea-output", has_text=LAST_OUTPUT).wait_for(timeout=180_000)

            readout, plot = page.locator(READOUT).first, page.locator(PLOT).first
            plot.wait_for(timeout=30_000)
            value_before, image_before = readout.inner_text(), plot.get_attribute("src")
            assert value_before == "0.50"

            page.locator(".widget-hslider .noUi-handle").first.focus()
            page.keyboard.press("ArrowRight")
            page.wait_for_function(
                """([readoutSel, plotSel, before]) => {
                    const img = document.querySelector(plotSel);
                    const readout = document.querySelector(readoutSel);
                    return readout && readout.textContent.trim() === "0.55"
                        && img && img.getAttribute("src") !== before;
                }""",
                arg=[READOUT, PLOT, image_before],
                timeout=60_000,
            )
            assert readout.inner_text() == "0.55"
            assert plot.get_attribute("src") != image_before
            # the live plot (optnb.live, widget mode) rendered a figure as well
            assert page.locator(".widget-output img").count() >= 2
        browser.close()
    assert not errors, errors
