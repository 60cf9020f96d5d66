"""Notebook 04 in a real front end: run all, press a key on the HB beta slider, see the redraw.

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

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

EXPLORER = ".widget-vbox:has(.widget-hslider)"


def test_beta_slider_redraws_the_momentum_plot(tmp_path):
    browser_util.check_slider_redraws(
        tmp_path, "04_faster_optimizer_better_network.ipynb",
        last_output="inspired_nets_test_acc",  # recorded by the notebook's last cell
        explorer=EXPLORER, plot=f"{EXPLORER} .widget-output img",
        before="0.81", key="ArrowRight", after="0.82")  # HB beta, the notebook's BETA default
