"""The papermill runner: validation, run ids, fixture notebooks (ok, raises, sys.exit, Output trap).

The fixture runs share one ``run_many(jobs=2)`` call (module fixture) to keep kernel start-ups few.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
from conftest import FIXTURE_NOTEBOOKS, NOTEBOOKS
from proctree import cmdline, descendants, wait_gone

from optnb.experiments import read_notebook_results, read_sidecar, runner, workers
from optnb.experiments import results as results_mod
from optnb.experiments.notebooks import UnknownNotebookError, find_notebook, list_notebooks
from optnb.experiments.results import run_id_for
from optnb.experiments.runner import (
    Run,
    RunResult,
    report,
    run_many,
    run_notebook,
    validate_run,
)
from optnb.specs import ParameterError


def fixture(name: str) -> str:
    return str(FIXTURE_NOTEBOOKS / f"{name}.ipynb")


def _write_notebook(path: Path, *sources: str, tag_first: bool = True) -> Path:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    if tag_first:
        nb.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nb, str(path))
    return path


# ------------------------------------------------------------------------------------------------
# No kernel needed


def test_run_id_is_stable_and_ignores_display_parameters():
    a = run_id_for("06_train_cifar", {"SEED": 1, "MODEL": "hbnet56"})
    b = run_id_for("06_train_cifar", {"MODEL": "hbnet56", "SEED": 1, "LIVE": "display",
                                      "RUN_ID": "x", "RESULTS_DIR": "/tmp/elsewhere"})
    c = run_id_for("06_train_cifar", {"SEED": 2, "MODEL": "hbnet56"})
    assert a == b and a != c
    assert a.startswith("06_train_cifar-") and len(a.split("-")[-1]) == 8
    assert run_id_for("notebooks/06_train_cifar.ipynb", {"SEED": 1, "MODEL": "hbnet56"}) == a
    assert Run("06_train_cifar", {"SEED": 1, "MODEL": "hbnet56"}).run_id == a


def test_find_notebook_accepts_stem_prefix_and_path():
    tour = NOTEBOOKS / "00_tour.ipynb"
    assert find_notebook("00_tour") == tour
    assert find_notebook("00") == tour
    assert find_notebook("00_tour.ipynb") == tour
    assert find_notebook(fixture("ok")) == Path(fixture("ok")).resolve()
    assert all(p.parent == NOTEBOOKS for p in list_notebooks())
    with pytest.raises(UnknownNotebookError, match=r"unknown notebook '99_nope'; valid: .*00_tour"):
        find_notebook("99_nope")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"NOPE": 1}, r"unknown parameter NOPE; its parameters cell defines: X, LIVE"),
        ({"X": "1"}, r"parameter X expects int \(the notebook's default is 1\), got str '1'"),
        ({"X": True}, r"parameter X expects int .* got bool True"),
        ({"X": 1.5}, r"parameter X expects int"),
        ({"X": float("nan")}, r"cannot be injected"),
        ({"X": object()}, r"cannot be injected"),
        ({"LIVE": "fancy"}, r"LIVE='fancy' is not valid; expected one of: auto, widget, display, off"),
    ],
)
def test_validation_rejects_bad_parameters_with_one_line(params, message):
    with pytest.raises(ParameterError, match=message) as info:
        validate_run(Run(fixture("ok"), params, "r"))
    assert "\n" not in str(info.value)


def test_validation_checks_values_against_the_profiles():
    with pytest.raises(ParameterError, match=r"PROFILE='fast' is not valid; expected one of: smoke"):
        validate_run(Run("00_tour", {"PROFILE": "fast"}))
    with pytest.raises(ParameterError, match=r"SEED=-1 is not valid \(out of range\)"):
        validate_run(Run("00_tour", {"SEED": -1}))
    path, defaults = validate_run(Run("00_tour", {"PROFILE": "smoke", "SEED": 3}))
    assert path.name == "00_tour.ipynb" and defaults["PROFILE"] == "auto"


def test_validation_accepts_ints_for_floats_and_any_type_for_none(tmp_path):
    nb = _write_notebook(tmp_path / "typed.ipynb", "RATE = 0.5\nNAME = None\nFLAG = False")
    validate_run(Run(str(nb), {"RATE": 1, "NAME": [1, 2], "FLAG": True}, "t"))
    with pytest.raises(ParameterError, match="parameter FLAG expects bool"):
        validate_run(Run(str(nb), {"FLAG": "false"}, "t"))


def test_a_notebook_without_parameters_tag_is_refused(tmp_path):
    nb = _write_notebook(tmp_path / "untagged.ipynb", "X = 1", tag_first=False)
    with pytest.raises(ParameterError, match="has no cell tagged 'parameters'"):
        validate_run(Run(str(nb), {}, "t"))


def test_run_many_validates_everything_before_running(tmp_results):
    runs = [Run(fixture("ok"), {}, "first"), Run(fixture("ok"), {"X": "bad"}, "second")]
    with pytest.raises(ParameterError, match="parameter X expects int"):
        run_many(runs, results_dir=tmp_results)
    assert not (tmp_results / "runs").exists()  # nothing ran, not even the valid first run


def test_skip_complete_uses_the_sidecar(tmp_results):
    run = Run(fixture("ok"), {"X": 2}, "done-before")
    folder = tmp_results / "runs" / run.run_id
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({"status": "complete"}))
    [result] = run_many([run], results_dir=tmp_results, skip_complete=True)
    assert result.ok and result.skipped and result.duration_s == 0.0
    assert "skipped" in result.summary()


def test_cell_timeout_follows_the_profile_and_the_environment_wins(monkeypatch):
    monkeypatch.delenv("OPTNB_PROFILE", raising=False)
    assert runner.default_cell_timeout({"PROFILE": "smoke"}) == runner.CELL_TIMEOUT["smoke"] == 600
    assert runner.default_cell_timeout({"PROFILE": "paper"}) is None  # hours-long cells are legitimate
    monkeypatch.setenv("OPTNB_PROFILE", "quick")
    assert runner.default_cell_timeout({"PROFILE": "smoke"}) is None
    monkeypatch.setenv("OPTNB_PROFILE", "fast")
    with pytest.raises(ParameterError, match=r"PROFILE='fast' is not valid; expected one of: smoke") as info:
        runner.default_cell_timeout({})
    assert "\n" not in str(info.value)


def test_report_lists_failures_with_their_error():
    ok = RunResult(Run("a", {}, "a-1"), True, None, None, None, 1.0)
    bad = RunResult(Run("b", {}, "b-1"), False, None, None, "cell 2 raised ValueError: x\nsrc", 2.0)
    text = report([ok, bad])
    assert "1 ok, 1 failed" in text
    assert "== b-1 failed" in text and "cell 2 raised ValueError: x\nsrc" in text


# ------------------------------------------------------------------------------------------------
# Fixture notebooks through papermill (two at a time, each in its own process)


@pytest.fixture(scope="module")
def fixture_runs(tmp_path_factory):
    results = tmp_path_factory.mktemp("runner") / "results"
    runs = [
        Run(fixture("ok"), {"X": 7}),
        Run(fixture("raises"), {}),
        Run(fixture("exits"), {}),
        Run(fixture("raises_in_output"), {}),
    ]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MPLBACKEND", "Agg")  # as a Makefile might export; kernels must not inherit it
        out = run_many(runs, jobs=2, results_dir=results, skip_complete=False, timeout=120)
    return results, {Path(r.run.notebook).stem: r for r in out}


@pytest.mark.notebooks
@pytest.mark.timeout(240)
def test_ok_fixture_runs_in_the_venv_kernel_with_injected_parameters(fixture_runs):
    results, by_name = fixture_runs
    result = by_name["ok"]
    assert result.ok and result.error is None and not result.skipped
    assert result.output_path == results / "runs" / result.run.run_id / "ok.ipynb"
    assert read_sidecar(result.output_path.parent)["status"] == "complete"
    nb = nbformat.read(str(result.output_path), as_version=4)
    assert "widgets" not in nb.metadata  # widget state is not stored
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    seen = json.loads(printed.split("FIXTURE ", 1)[1].splitlines()[0])
    assert Path(seen["executable"]).resolve() == Path(sys.executable).resolve()
    assert Path(seen["cwd"]) == NOTEBOOKS
    assert seen["headless"] == "1"
    assert Path(seen["ipythondir"]).is_relative_to(results)
    assert Path(seen["mplconfigdir"]).is_relative_to(results)
    assert seen["mpl_backend"] == "module://matplotlib_inline.backend_inline"
    assert seen["X"] == 7 and seen["LIVE"] == "display"
    assert seen["RUN_ID"] == result.run.run_id and seen["RESULTS_DIR"] == str(results)
    assert read_notebook_results(result.output_path)["results"]["x_squared"]["value"] == 49


@pytest.mark.notebooks
@pytest.mark.timeout(240)
def test_raising_fixture_is_reported_with_cell_and_exception(fixture_runs):
    _, by_name = fixture_runs
    result = by_name["raises"]
    assert not result.ok
    assert "raised ValueError: fixture failure with X=1" in result.error
    assert 'raise ValueError(f"fixture failure with X={X}")' in result.error  # the cell's source
    sidecar = read_sidecar(result.output_path.parent)
    assert sidecar["status"] == "failed" and "ValueError" in sidecar["error"]
    nb = nbformat.read(str(result.output_path), as_version=4)
    assert not any("never reached" in o.get("text", "") for c in nb.cells
                   for o in c.get("outputs", []))


@pytest.mark.notebooks
@pytest.mark.timeout(240)
def test_sys_exit_zero_is_a_clean_stop(fixture_runs):
    _, by_name = fixture_runs
    result = by_name["exits"]
    assert result.ok, result.error
    nb = nbformat.read(str(result.output_path), as_version=4)
    last = nb.cells[-1]
    assert "must not run" in last.source and last.outputs == []


@pytest.mark.notebooks
@pytest.mark.timeout(240)
def test_exception_swallowed_by_an_output_widget_fails_the_run(fixture_runs):
    _, by_name = fixture_runs
    result = by_name["raises_in_output"]
    assert not result.ok
    assert "raised RuntimeError: fixture failure inside an Output widget" in result.error
    assert "with out:" in result.error
    nb = nbformat.read(str(result.output_path), as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors and errors[0].ename == "RuntimeError"
    assert not any("reached only because" in o.get("text", "") for c in nb.cells
                   for o in c.get("outputs", []))


@pytest.mark.notebooks
@pytest.mark.timeout(120)
def test_cell_timeout_fails_the_run_and_names_the_cell(tmp_path):
    nb = _write_notebook(tmp_path / "sleeps.ipynb", "SECONDS = 60", "import time\ntime.sleep(SECONDS)")
    result = run_notebook(Run(str(nb), {}, "sleeps"), tmp_path / "results", timeout=3)
    assert not result.ok and result.duration_s < 50
    assert "time.sleep(SECONDS)" in result.error
    assert read_sidecar(tmp_path / "results" / "runs" / "sleeps")["status"] == "failed"


def test_run_many_skips_complete_runs_without_starting_a_process(tmp_path, monkeypatch):
    nb = _write_notebook(tmp_path / "noop.ipynb", "X = 1", "pass")
    runs = [Run(str(nb), {"X": i}, f"noop-{i}") for i in range(2)]
    for r in runs:
        results_mod.mark_complete(tmp_path / "results" / "runs" / r.run_id)

    def no_child(*args, **kwargs):
        raise AssertionError("a complete run must not start a child process")

    monkeypatch.setattr(runner, "WorkerPool", no_child)  # no worker process
    monkeypatch.setattr(runner, "_execute", no_child)  # no kernel in this process either
    out = runner.run_many(runs, jobs=2, results_dir=tmp_path / "results")
    assert [r.skipped and r.ok for r in out] == [True, True]


def test_interrupt_cancels_queued_runs_and_stops_running_children(tmp_path):
    nb = _write_notebook(tmp_path / "sleeps.ipynb", "SECONDS = 120", "import time\ntime.sleep(SECONDS)")
    runs = [Run(str(nb), {"SECONDS": 120 + i}, f"sleeps-{i}") for i in range(4)]
    before = descendants(os.getpid())
    started_processes: set[int] = set()  # run_many's workers and their kernels, just before the interrupt

    def interrupt() -> None:
        started_processes.update(p for p in descendants(os.getpid()) - before if "resource_tracker" not in cmdline(p))
        os.kill(os.getpid(), signal.SIGINT)

    # a real SIGINT, as from a terminal: it interrupts the main thread's wait for the futures
    timer = threading.Timer(12.0, interrupt)
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.run_many(runs, jobs=2, results_dir=tmp_path / "results", timeout=300)
    finally:
        timer.cancel()
    assert time.monotonic() - start < 60, "interrupt must not wait for running or queued runs"
    assert not workers.live_workers() and not multiprocessing.active_children()
    assert started_processes, "the interrupt came before any worker started"
    assert not wait_gone(started_processes, timeout_s=10), "a worker or kernel outlived the interrupt"
    started = [p for p in (tmp_path / "results" / "runs").glob("sleeps-*")]
    assert len(started) <= 2  # the two queued runs never started
    for folder in started:
        assert read_sidecar(folder).get("status") != "complete"
