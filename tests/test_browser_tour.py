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

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def _live_plot_rendered_too(page) -> None:
    # the live plot (optnb.live, widget mode) rendered a figure as well
    assert page.locator(".widget-output img").count() >= 2


def test_tour_runs_all_and_the_slider_redraws_the_plot(tmp_path):
    browser_util.check_slider_redraws(
        tmp_path, "00_tour.ipynb", last_output="GD (1):",  # printed by the tour's last cell
        plot=".widget-vbox .widget-output img", before="0.50", key="ArrowRight", after="0.55",
        run_timeout_ms=180_000, then=_live_plot_rendered_too)
