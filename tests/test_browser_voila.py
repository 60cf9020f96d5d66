"""The explorers as Voila apps (``make present``) in a real browser: drag a slider, see the redraw.

One Voila server (the command line and environment of :mod:`optnb.experiments.present`, Jupyter
dirs under ``tmp_path``) serves ``apps/``; Debian's headless chromium opens each app through
Playwright, checks that no source code is shown, drags the first slider with the mouse and waits
until its readout and the figure (``<img>`` src) have both changed. Skips with the reason when
chromium or playwright is missing. A failure saves ``<tmp_path>/<app>.png`` and adds the tail of
Voila's log to the error.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import browser_util
import pytest

from optnb.experiments import present

reason = browser_util.skip_reason()
if reason:
    pytest.skip(reason, allow_module_level=True)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

LOCAL = "http://127.0.0.1:"
EXPLORER = ".widget-vbox:has(.widget-hslider)"
SLIDER = f"{EXPLORER} .widget-hslider"
PLOT = f"{EXPLORER} .widget-output img"
#: app -> (its heading, the label of the first slider, the code it must not show)
APPS = {
    "beta_explorer.ipynb": ("Momentum explorer", "HB beta", "beta_explorer("),
    "activation_explorer.ipynb": ("Cost explorer", "eig 1 of W", "activation_explorer("),
}


@dataclass
class VoilaServer:
    port: int
    token: str
    process: subprocess.Popen
    log_path: Path

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}?token={self.token}"

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _wait_until_serving(server: VoilaServer, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"voila exited with {server.process.returncode}:\n{server.log_tail()}")
        with contextlib.suppress(urllib.error.URLError, OSError), \
                urllib.request.urlopen(server.url(), timeout=2) as reply:
            if reply.status == 200:
                return
        time.sleep(0.3)
    raise TimeoutError(f"voila did not answer within {timeout:.0f} s:\n{server.log_tail()}")


@pytest.fixture(scope="module")
def voila(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoilaServer]:
    workdir = tmp_path_factory.mktemp("voila")
    env = present.voila_env(workdir / "jupyter-home")
    env["OPTNB_RESULTS"] = str(workdir / "results")  # the apps write nothing; keep it that way
    port, token = browser_util.free_port(), secrets.token_hex(16)
    cmd = present.voila_command(port, token, root=present.apps_dir(), runtime_dir=env["JUPYTER_RUNTIME_DIR"])
    log_path = workdir / "voila.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir)
    server = VoilaServer(port, token, process, log_path)
    try:
        _wait_until_serving(server)
        yield server
    finally:
        process.terminate()  # Voila shuts its kernels down on SIGTERM
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextlib.contextmanager
def _evidence_on_failure(page, server: VoilaServer, path: Path) -> Iterator[None]:
    """On failure: a full-page screenshot at ``path`` and Voila's log tail in the error."""
    try:
        yield
    except BaseException as err:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(path), full_page=True)
        err.add_note(f"screenshot: {path}\nvoila log tail:\n{server.log_tail()}")
        raise


def _collect_errors(page) -> list[str]:
    """Console and page errors, less the offline misses: Voila's lab template links Font Awesome
    from a CDN, which this test blocks (no request leaves the machine) and the apps do not use."""
    page.route(lambda url: not url.startswith(LOCAL), lambda route: route.abort())
    errors: list[str] = []

    def on_console(msg) -> None:
        external = msg.text.startswith("Failed to load resource") and not msg.location.get("url", "").startswith(LOCAL)
        if msg.type == "error" and not external:
            errors.append(f"console: {msg.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda err: errors.append(f"pageerror: {err}"))
    return errors


def _drag(page, handle, dx: float) -> None:
    """Press the mouse on ``handle``'s centre, move ``dx`` pixels in steps, release."""
    box = handle.bounding_box()
    assert box is not None, "the slider handle has no box (not displayed)"
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y, steps=10)
    page.mouse.up()


@pytest.mark.parametrize("app", list(APPS))
def test_dragging_a_slider_redraws_the_app(voila: VoilaServer, app: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    heading, label, code = APPS[app]
    with sync_playwright() as p:
        browser = browser_util.launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = _collect_errors(page)
        with _evidence_on_failure(page, voila, tmp_path / f"{Path(app).stem}.png"):
            # Voila sends the page while it runs the notebook, and "load" comes after the last cell:
            # importing torch and drawing took over 30 s (goto's default) on a loaded 2-core box
            page.goto(voila.url(f"voila/render/{app}"), timeout=180_000)
            slider = page.locator(SLIDER, has_text=label).first
            readout, image = slider.locator(".widget-readout"), page.locator(PLOT).first
            image.wait_for(timeout=120_000)  # the kernel started, ran the cell and drew once
            page.wait_for_function(
                "sel => (document.querySelector(sel)?.textContent || '').trim() !== ''",
                arg=f"{SLIDER} .widget-readout", timeout=30_000)

            # the app's text is there, its code is not
            assert page.locator("h1", has_text=heading).count() == 1
            body = page.locator("body").inner_text()
            assert code not in body and "import optnb" not in body, "Voila shows the source code"
            assert page.locator(".jp-CodeCell").count() >= 1
            assert page.locator(".jp-CodeCell:not(.jp-mod-noInput), .jp-InputPrompt, .cm-editor").count() == 0

            before, src_before = readout.text_content().strip(), image.get_attribute("src")
            _drag(page, slider.locator(".noUi-handle"), dx=60)
            page.wait_for_function(
                """([label, plot, before, srcBefore]) => {
                    const slider = [...document.querySelectorAll(".widget-hslider")]
                        .find(s => s.textContent.includes(label));
                    const r = slider?.querySelector(".widget-readout"), img = document.querySelector(plot);
                    return r && img && r.textContent.trim() !== before
                        && img.getAttribute("src") !== srcBefore;
                }""",
                arg=[label, PLOT, before, src_before],
                timeout=60_000)
            after = readout.text_content().strip()
            assert float(after) > float(before), f"dragging right moved {label} from {before} to {after}"
            assert image.get_attribute("src") != src_before
            assert page.locator(PLOT).count() == 1, "the redraw added a figure instead of replacing it"
        browser.close()
    assert not errors, errors
