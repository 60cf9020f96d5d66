"""Browser-test helpers: JupyterLab on a free localhost port, Debian's chromium via Playwright.

Used by ``tests/test_browser_tour.py`` and the theory notebooks' browser tests::

    reason = browser_util.skip_reason()
    if reason:
        pytest.skip(reason, allow_module_level=True)

    with browser_util.jupyter_lab(tmp_path, ["00_tour.ipynb"]) as lab, sync_playwright() as p:
        browser = browser_util.launch_chromium(p)
        page = browser.new_page()
        errors = browser_util.collect_errors(page)
        with browser_util.screenshot_on_failure(page, "00_tour"):
            browser_util.open_notebook(page, lab, "00_tour.ipynb")
            browser_util.run_all(page)

Never run ``playwright install``: it downloads browsers, which the project machines cannot do and
do not need (``apt-get install chromium`` provides ``/usr/bin/chromium``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
#: silences the "official Jupyter news" toast and the update check, and starts the notebook's
#: kernel without the "Select Kernel" dialog (JupyterLab 4.6 asks by default)
LAB_OVERRIDES = {
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    # windowingMode "none" attaches and lays out every cell: under 4.6's default
    # ("contentVisibility") an off-screen widget's innerText is '', which made reads flaky
    "@jupyterlab/notebook-extension:tracker": {"autoStartDefaultKernel": True,
                                               "windowingMode": "none"},
}
#: environment variables the server must not inherit: the first two turn live widgets off, and
#: MPLBACKEND=Agg would keep ipykernel from using its inline backend (no figures at all)
DROPPED_VARIABLES = ("OPTNB_HEADLESS", "OPTNB_LIVE", "MPLBACKEND")


def skip_reason() -> str | None:
    """Why browser tests cannot run here, or None when chromium and playwright are present."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed in this environment (pip install -e '.[dev]')"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LabServer:
    root: Path
    port: int
    token: str
    process: subprocess.Popen
    log_path: Path

    def url(self, path: str = "lab") -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}{sep}token={self.token}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _wait_for_status(server: LabServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {server.process.returncode}:\n"
                               f"{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url("api/status"), timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"jupyter lab did not answer /api/status within {timeout:.0f} s:\n"
                       f"{server.log_tail()}")


@contextlib.contextmanager
def jupyter_lab(
    workdir: Path,
    notebooks: Iterable[str | Path] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 90.0,
) -> Iterator[LabServer]:
    """Start JupyterLab on a temp copy of ``notebooks/`` (root_dir) and stop it afterwards.

    ``notebooks`` are names under ``notebooks/`` (or paths) copied into the root; empty copies
    every ``NN_*.ipynb``. Settings, workspaces and Jupyter/IPython/matplotlib dirs live under
    ``workdir`` so nothing in the home directory or the venv is touched. ``env`` is added to the
    server's (and so the kernels') environment; ``DROPPED_VARIABLES`` are removed.
    """
    workdir = Path(workdir)
    root = workdir / "notebooks"
    root.mkdir(parents=True, exist_ok=True)
    names = list(notebooks) or sorted(p.name for p in (REPO / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
    for name in names:
        source = Path(name) if Path(name).is_absolute() else REPO / "notebooks" / name
        shutil.copy2(source, root / source.name)
    home = workdir / "jupyter-home"
    settings = home / "app-settings"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "overrides.json").write_text(json.dumps(LAB_OVERRIDES))
    dirs = {name: home / name.lower() for name in (
        "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "MPLCONFIGDIR")}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    child_env = {k: v for k, v in os.environ.items() if k not in DROPPED_VARIABLES}
    child_env.update({k: str(v) for k, v in dirs.items()})
    child_env.update(env or {})

    port, token = free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
        f"--LabApp.app_settings_dir={settings}", f"--LabApp.user_settings_dir={home / 'user-settings'}",
        f"--LabApp.workspaces_dir={home / 'workspaces'}", "--ServerApp.open_browser=False",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log_path = workdir / "jupyter-lab.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env,
                                   cwd=root)
    server = LabServer(root, port, token, process, log_path)
    try:
        _wait_for_status(server, timeout)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def launch_chromium(playwright: Any, **options: Any) -> Any:
    """Debian's chromium, headless, through Playwright (no downloaded browser)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                      headless=True, **options)


def collect_errors(page: Any) -> list[str]:
    """A list that fills with console errors and uncaught page errors as they happen."""
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda err: errors.append(f"pageerror: {err}"))
    return errors


def open_notebook(page: Any, server: LabServer, name: str, timeout_ms: int = 60_000) -> None:
    """Open JupyterLab, then ``name``, and wait until its kernel has started and is idle."""
    page.goto(server.url("lab"), timeout=timeout_ms)
    page.wait_for_selector(".jp-LabShell", timeout=timeout_ms)
    page.goto(server.url(f"lab/tree/{name}"), timeout=timeout_ms)
    page.wait_for_selector(".jp-Notebook", timeout=timeout_ms)
    # the overrides start the kernel; should a "Select Kernel" dialog still appear, accept it
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    with contextlib.suppress(Exception):
        dialog.wait_for(timeout=3_000)
        dialog.locator("button", has_text="Select").click()
    page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=timeout_ms)


def run_all(page: Any, timeout_ms: int = 10_000) -> None:
    """Run > Run All Cells (JupyterLab 4.6's command id is ``runmenu:run-all``)."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click(timeout=timeout_ms)
    page.locator('li.lm-Menu-item[data-command="runmenu:run-all"]').click(timeout=timeout_ms)


def screenshot_dir() -> Path:
    from optnb.paths import repo_root

    return repo_root() / "results" / "browser"


@contextlib.contextmanager
def screenshot_on_failure(page: Any, name: str) -> Iterator[None]:
    """Save ``results/browser/<name>.png`` (CI artifact) when the block raises."""
    try:
        yield
    except BaseException:
        folder = screenshot_dir()
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):
            page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
        raise


READOUT = ".widget-hslider .widget-readout"  # a slider's value, as the front end prints it
HANDLE = ".widget-hslider .noUi-handle"


def check_slider_redraws(
    workdir: Path,
    notebook: str,
    *,
    last_output: str,
    plot: str,
    before: str,
    key: str,
    after: str,
    explorer: str | None = None,
    run_timeout_ms: int = 300_000,
    redraw_timeout_ms: int = 60_000,
    then: Callable[[Any], None] | None = None,
) -> None:
    """Open ``notebook`` in JupyterLab (smoke profile, results under ``workdir``), run all, wait
    for ``last_output``; then press ``key`` on the first slider: its readout must go from
    ``before`` to ``after`` and the figure ``plot`` (an ``<img>`` selector) must be redrawn.

    ``explorer`` (a selector) is scrolled into view first when the widget sits mid-notebook;
    ``then(page)`` runs extra checks at the end. Readouts are read through ``textContent``, which
    does not depend on layout. A failure leaves ``results/browser/<notebook stem>.png``; console
    errors of the page fail the check too.
    """
    from playwright.sync_api import sync_playwright

    env = {"OPTNB_PROFILE": "smoke", "OPTNB_RESULTS": str(Path(workdir) / "results")}
    with jupyter_lab(workdir, [notebook], env=env) as lab, sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = collect_errors(page)
        with screenshot_on_failure(page, Path(notebook).stem):
            open_notebook(page, lab, notebook)
            run_all(page)
            page.locator(".jp-OutputArea-output", has_text=last_output).wait_for(
                timeout=run_timeout_ms)
            readout, image = page.locator(READOUT).first, page.locator(plot).first
            if explorer:
                page.locator(explorer).first.scroll_into_view_if_needed(timeout=30_000)
            image.wait_for(timeout=60_000)
            page.wait_for_function(
                "sel => (document.querySelector(sel)?.textContent || '').trim() !== ''",
                arg=READOUT, timeout=30_000)
            image_before = image.get_attribute("src")
            assert readout.text_content().strip() == before

            page.locator(HANDLE).first.focus()
            page.keyboard.press(key)
            page.wait_for_function(
                """([readoutSel, plotSel, value, before]) => {
                    const img = document.querySelector(plotSel);
                    const readout = document.querySelector(readoutSel);
                    return readout && readout.textContent.trim() === value
                        && img && img.getAttribute("src") !== before;
                }""",
                arg=[READOUT, plot, after, image_before],
                timeout=redraw_timeout_ms,
            )
            assert readout.text_content().strip() == after
            assert image.get_attribute("src") != image_before
            if then is not None:
                then(page)
        browser.close()
    assert not errors, errors
