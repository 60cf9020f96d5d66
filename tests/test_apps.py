"""The explorers as Voila apps (``apps/*.ipynb``, ``make present``) without a browser or a server.

The app notebooks are stripped, run on the ``python3`` kernel, and hold nothing but markdown and
calls into ``optnb``, with the defaults of the notebooks they come from. The Voila command line of
:mod:`optnb.experiments.present` is parsed by Voila's own configuration classes, so a misspelt
option fails here. The browser test (a slider dragged in Voila) is ``test_browser_voila.py``.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import ipywidgets
import nbformat
import pytest
from conftest import NOTEBOOKS, REPO

import optnb.widgets
from optnb import cli
from optnb.experiments import present

APPS_DIR = REPO / "apps"
#: app -> (the notebook it comes from, {explorer argument: that notebook's parameter})
SOURCES = {
    "beta_explorer.ipynb": ("04_faster_optimizer_better_network.ipynb", {"beta": "BETA", "kappa": "KAPPA"}),
    "activation_explorer.ipynb": ("03_activation_cost_functions.ipynb",
                                  {"activation": "ACTIVATION", "lam1": "EIG1", "lam2": "EIG2", "angle": "ANGLE"}),
}


def code_of(app: str) -> str:
    nb = nbformat.read(APPS_DIR / app, as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def explorer_call(app: str) -> ast.Call:
    """The app's last statement: a call ``optnb.widgets.<name>_explorer(...)``."""
    last = ast.parse(code_of(app)).body[-1]
    assert isinstance(last, ast.Expr) and isinstance(last.value, ast.Call), ast.unparse(last)
    return last.value


def parameters_of(notebook: str) -> dict[str, object]:
    nb = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    return {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse(cell.source).body}


def test_the_apps_folder_holds_exactly_the_apps():
    assert sorted(p.name for p in APPS_DIR.glob("*.ipynb")) == sorted(present.APPS) == sorted(SOURCES)
    assert present.apps_dir() == APPS_DIR


@pytest.mark.parametrize("app", present.APPS)
def test_an_app_is_stripped_and_runs_on_python3(app):
    nb = nbformat.read(APPS_DIR / app, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec == {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                      "language": "python"}
    assert set(nb.metadata) <= {"kernelspec", "language_info"}
    for cell in nb.cells:
        assert cell.metadata == {}, cell.metadata
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    # a title and an explanation first: Voila shows the markdown, not the code
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert [c.cell_type for c in nb.cells].count("code") == 1


@pytest.mark.parametrize("app", present.APPS)
def test_an_app_only_imports_optnb_and_displays_its_explorer(app):
    body = ast.parse(code_of(app)).body
    for node in body[:-1]:
        assert isinstance(node, ast.Import), f"{app}: only imports before the explorer: {ast.unparse(node)}"
        assert all(alias.name.startswith("optnb.") and alias.asname is None for alias in node.names)
    func = explorer_call(app).func
    assert ast.unparse(func) == f"optnb.widgets.{Path(app).stem}"
    assert Path(app).stem in optnb.widgets.__all__


@pytest.mark.parametrize("app", present.APPS)
def test_an_app_starts_from_its_notebooks_defaults(app):
    notebook, names = SOURCES[app]
    params = parameters_of(notebook)
    call = explorer_call(app)
    explorer = getattr(optnb.widgets, Path(app).stem)
    args = {**dict(zip(explorer.__code__.co_varnames, (ast.literal_eval(a) for a in call.args), strict=False)),
            **{k.arg: ast.literal_eval(k.value) for k in call.keywords}}
    assert {arg: args.get(arg) for arg in names} == {arg: params[name] for arg, name in names.items()}


@pytest.mark.parametrize("app", present.APPS)
def test_an_app_builds_a_live_explorer(app):
    namespace: dict[str, object] = {}
    *setup, last = ast.parse(code_of(app)).body
    exec(compile(ast.Module(body=setup, type_ignores=[]), app, "exec"), namespace)
    widget = eval(compile(ast.Expression(body=last.value), app, "eval"), namespace)
    assert isinstance(widget, optnb.widgets.Explorer)
    assert widget.last is not None and len(widget.history) == 1  # drawn once with the defaults
    key, slider = next((k, c) for k, c in widget.controls.items() if isinstance(c, ipywidgets.FloatSlider))
    before = slider.value
    slider.value = round(before + 2 * slider.step, 2)
    assert len(widget.history) == 2
    assert widget.history[0][key] == before and widget.history[1][key] == pytest.approx(before + 2 * slider.step)


def test_the_voila_command_serves_the_apps_with_the_code_hidden(tmp_path):
    from voila.app import Voila
    from voila.configuration import VoilaConfiguration

    cmd = present.voila_command(8899, "secret", runtime_dir=tmp_path / "runtime")
    assert cmd[:3] == [sys.executable, "-m", "voila"]
    app = Voila()
    app.parse_command_line(cmd[3:])
    assert Path(app.extra_args[0]) == APPS_DIR.resolve()
    assert (app.port, app.ip, app.open_browser, app.token) == (8899, "127.0.0.1", False, "secret")
    assert app.connection_dir_root == str((tmp_path / "runtime").resolve())
    config = VoilaConfiguration(config=app.config)
    assert config.strip_sources is True and config.show_tracebacks is True
    assert config.extension_allowlist == list(present.EXTENSIONS)
    assert "@voila-dashboards/widgets-manager8" in config.extension_allowlist
    # every option is one Voila knows (an unknown Class.trait would be ignored silently)
    known = {f"--{cls.__name__}.{name}" for cls in (Voila, VoilaConfiguration) for name in cls.class_traits()}
    known |= {f"--{flag}" for flag in Voila.flags} | {f"--{alias}" for alias in Voila.aliases}
    assert {c.split("=")[0] for c in cmd[4:]} <= known


@pytest.mark.parametrize(("call", "match"), [
    (lambda: present.voila_command(70000, "t"), "port 70000 is not valid"),
    (lambda: present.voila_command(-1, "t"), "port -1 is not valid"),
    (lambda: present.voila_command(0, "t"), "port 0 is not valid; choose an integer in 1..65535$"),
    (lambda: present.check_port(True, any_port=True), r"port True is not valid; .*\(0 = any free port\)"),
    (lambda: present.voila_command(8866, ""), "token is empty"),
    (lambda: present.voila_command(8866, "t", root=REPO / "no-such-folder"), "no app notebooks in"),
])
def test_bad_input_gets_one_line(call, match):
    with pytest.raises(present.PresentError, match=match) as err:
        call()
    assert "\n" not in str(err.value)


def test_the_voila_env_is_hermetic_and_keeps_the_explorers_on(tmp_path):
    base = {"PATH": "/bin", "OPTNB_HEADLESS": "1", "OPTNB_LIVE": "off", "MPLBACKEND": "Agg",
            "JUPYTER_CONFIG_DIR": "/home/someone/.jupyter"}
    env = present.voila_env(tmp_path / "home", base=base)
    assert env["PATH"] == "/bin" and not set(present.DROPPED_VARIABLES) & set(env)
    for name, sub in present.JUPYTER_DIRS.items():
        assert env[name] == str((tmp_path / "home" / sub).resolve()) and Path(env[name]).is_dir()
    assert base["MPLBACKEND"] == "Agg"  # the caller's mapping is left alone


def test_the_jupyter_dirs_are_the_makefiles():
    makefile = (REPO / "Makefile").read_text()
    hermetic = re.search(r"^HERMETIC :=((?:.*\\\n)*.*)$", makefile, re.M).group(1)
    dirs = dict(re.findall(r"(\w+)=\$\(CURDIR\)/\.jupyter/(\w+)", hermetic))
    assert dirs == present.JUPYTER_DIRS


def test_present_prints_the_urls_and_execs_voila(monkeypatch, capsys, tmp_path):
    seen = {}

    def fake_execve(path, args, env):
        seen.update(path=path, args=args, env=env)
        raise SystemExit(0)

    monkeypatch.setattr(present.os, "execve", fake_execve)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    with pytest.raises(SystemExit):
        cli.main(["present", "--port", "8877", "--token", "tok", "--jupyter-home", str(tmp_path)])
    out = capsys.readouterr().out
    assert all(f"http://localhost:8877/voila/render/{app}?token=tok" in out for app in present.APPS)
    assert seen["path"] == sys.executable and "--port=8877" in seen["args"]
    assert "MPLBACKEND" not in seen["env"] and seen["env"]["JUPYTER_DATA_DIR"] == str((tmp_path / "data").resolve())


def test_present_refuses_a_bad_port_in_one_line(capsys):
    assert cli.main(["present", "--port", "99999"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("optnb: error: port 99999 is not valid") and err.count("\n") == 1
