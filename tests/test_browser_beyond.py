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

pytestmark = [pytest.mark.browser, pytest.mark.timeout(480)]

EXPLORER = ".widget-vbox:has(.widget-hslider)"


def test_beta_slider_redraws_the_reversible_error_plot(tmp_path):
    browser_util.check_slider_redraws(
        tmp_path, "10_beyond_the_paper_design.ipynb",
        last_output="reversible_grad_rel_err_float32",  # recorded by the notebook's last cell
        explorer=EXPLORER, plot=f"{EXPLORER} .widget-output img",
        before="0.50", key="ArrowLeft", after="0.45",  # BETA's default, one step of 0.05 down
        run_timeout_ms=360_000, redraw_timeout_ms=90_000)
