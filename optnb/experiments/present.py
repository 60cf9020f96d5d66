"""Serve the explorers as Voila apps (``make present``): ``apps/*.ipynb`` with the code hidden.

Each app is a thin notebook that displays one explorer of :mod:`optnb.widgets` (the momentum
explorer of notebook 04, the cost explorer of notebook 03). Voila runs it in a fresh kernel per
visitor and shows only the markdown and the widgets (``strip_sources``).

The server's environment (:func:`voila_env`):

* the Jupyter, IPython and matplotlib dirs live under the checkout's ``.jupyter/`` (the Makefile's
  ``HERMETIC``), so nothing in the home directory is read or written;
* ``MPLBACKEND`` is not passed on: ``Agg`` keeps ipykernel from its inline backend, and every
  redraw would print ``<Figure size ...>`` instead of the plot. Nor are CI's ``OPTNB_HEADLESS`` and
  ``OPTNB_LIVE``, which turn live widgets off wherever optnb resolves a notebook's settings.

``optnb present --port 8866`` (:func:`serve`) prints the apps' addresses (with a fresh token) and
becomes the Voila server (``exec``) until Ctrl-C.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from optnb.paths import repo_root

#: the apps, in the order of the notebooks they come from
APPS = ("activation_explorer.ipynb", "beta_explorer.ipynb")
DEFAULT_PORT = 8866
#: the only JupyterLab extensions the app pages load: the widget managers (and the code-highlighting
#: CSS). Voila loads every installed lab extension by default, and some (nbgrader's, notebook's) need
#: JupyterLab's shell, so they fail in the page with console errors.
EXTENSIONS = ("@jupyter-widgets/jupyterlab-manager", "@voila-dashboards/widgets-manager8", "jupyterlab_pygments")
#: variables the kernel must not inherit (see the module docstring)
DROPPED_VARIABLES = ("OPTNB_HEADLESS", "OPTNB_LIVE", "MPLBACKEND")
#: the Makefile's HERMETIC dirs, relative to the Jupyter home (``<repo>/.jupyter`` by default)
JUPYTER_DIRS = {"JUPYTER_CONFIG_DIR": "config", "JUPYTER_DATA_DIR": "data",
                "JUPYTER_RUNTIME_DIR": "runtime", "IPYTHONDIR": "ipython", "MPLCONFIGDIR": "mpl"}


class PresentError(ValueError):
    """An apps folder or a port that cannot be served; the message is one line."""


def apps_dir() -> Path:
    """``<repo>/apps``: the app notebooks."""
    return repo_root() / "apps"


def check_port(port: int, any_port: bool = False) -> int:
    """``port`` if it is a TCP port number (0 too with ``any_port``: pick a free one), else
    :class:`PresentError`."""
    lowest = 0 if any_port else 1
    if isinstance(port, bool) or not isinstance(port, int) or not lowest <= port <= 65535:
        choices = "an integer in 1..65535" + (" (0 = any free port)" if any_port else "")
        raise PresentError(f"port {port!r} is not valid; choose {choices}")
    return port


def free_port(ip: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((ip, 0))
        return int(sock.getsockname()[1])


def voila_command(port: int, token: str, root: str | os.PathLike | None = None, ip: str = "127.0.0.1",
                  runtime_dir: str | os.PathLike | None = None, python: str = sys.executable) -> list[str]:
    """The Voila command line that serves every notebook in ``root`` (``apps/``) on ``ip:port``.

    Sources stripped, no browser opened, tracebacks shown (a teacher should see why an app broke,
    not "There was an error when executing cell"), only the lab extensions in :data:`EXTENSIONS`.
    A visitor needs ``?token=<token>`` once (a cookie keeps it): Voila hides the code it sends to
    the page but does not filter what a page sends to its kernel, so without a token anyone who
    reaches the port could run code. Kernel connection files go to ``runtime_dir`` (the hermetic
    ``JUPYTER_RUNTIME_DIR``) rather than the system temp folder.
    """
    root = Path(root) if root is not None else apps_dir()
    if not root.is_dir() or not any(root.glob("*.ipynb")):
        raise PresentError(f"no app notebooks in {root}; run from a checkout that has apps/*.ipynb")
    if not token:
        raise PresentError("the Voila token is empty; pass a non-empty token (secrets.token_hex(16))")
    cmd = [
        python, "-m", "voila", str(root.resolve()), f"--port={check_port(port)}", f"--Voila.ip={ip}",
        "--no-browser", "--strip_sources=True", "--show_tracebacks=True", f"--Voila.token={token}",
    ]
    cmd += [f"--VoilaConfiguration.extension_allowlist={name}" for name in EXTENSIONS]
    if runtime_dir is not None:
        cmd.append(f"--Voila.connection_dir_root={Path(runtime_dir).resolve()}")
    return cmd


def voila_env(jupyter_home: str | os.PathLike | None = None,
              base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) without :data:`DROPPED_VARIABLES`, with the Jupyter dirs of
    :data:`JUPYTER_DIRS` under ``jupyter_home`` (default ``<repo>/.jupyter``, created)."""
    home = Path(jupyter_home) if jupyter_home is not None else repo_root() / ".jupyter"
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in DROPPED_VARIABLES}
    for name, sub in JUPYTER_DIRS.items():
        path = (home / sub).resolve()
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def app_urls(port: int, token: str, ip: str = "127.0.0.1", names: Sequence[str] = APPS) -> list[str]:
    """The address of each app on a Voila server at ``ip:port`` (token included)."""
    host = {"127.0.0.1": "localhost", "0.0.0.0": socket.gethostname(), "": socket.gethostname()}.get(ip, ip)
    return [f"http://{host}:{port}/voila/render/{name}?token={token}" for name in names]


def serve(port: int = DEFAULT_PORT, ip: str = "127.0.0.1", token: str = "",
          jupyter_home: str | os.PathLike | None = None) -> None:
    """Print the apps' addresses and become the Voila server (``exec``) until Ctrl-C.

    ``port`` 0 picks a free one; an empty ``token`` a fresh random one. Bad input raises
    :class:`PresentError` before anything starts.
    """
    port = check_port(port, any_port=True) or free_port(ip)
    token = token or secrets.token_hex(16)
    env = voila_env(jupyter_home)
    cmd = voila_command(port, token, ip=ip, runtime_dir=env["JUPYTER_RUNTIME_DIR"])
    print("the explorers as apps (Ctrl-C stops the server):", *app_urls(port, token, ip), sep="\n  ",
          flush=True)
    # exec, not a child process: a signal to this process (Ctrl-C, kill, timeout) reaches Voila itself
    os.execve(cmd[0], cmd, env)
