"""``optnb reproduce`` end to end on tiny fixture notebooks (a plan override, not the real suite).

The fixture stands in for ``06_train_cifar``: it writes a sidecar the way ``resolve``/``record``
do and records a deterministic ``test_error``. ``MODE`` makes it raise, sleep on its first
execution (to be interrupted with SIGINT) or kill its own kernel on its first execution.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from optnb import cli
from optnb.cli.common import INTERRUPTED
from optnb.experiments import reproduce
from optnb.experiments.results import run_id_for

pytestmark = pytest.mark.notebooks

PARAMETERS = '''MODEL = "resnet56"
DATASET = "auto"
AUGMENT = True
SEED = 0
PROFILE = "smoke"
LIVE = "off"
RUN_ID = ""
RESULTS_DIR = ""
MARKER = ""
MODE = "ok"'''

START = '''import os, signal, time
from pathlib import Path
from optnb.experiments import results
first = bool(MARKER) and not Path(MARKER).exists()
if first:
    Path(MARKER).write_text("started")
path = Path(RESULTS_DIR) / "runs" / RUN_ID / "result.json"
params = {"MODEL": MODEL, "DATASET": DATASET, "AUGMENT": AUGMENT, "SEED": SEED,
          "PROFILE": PROFILE, "MARKER": MARKER, "MODE": MODE}
sidecar = {"notebook": "06_train_cifar", "run_id": RUN_ID, "status": "running",
           "parameters": params, "profile": PROFILE, "dataset": "embedded",
           "dataset_real": False, "device": "cpu", "started": results.now(), "results": {}}
results.atomic_write_json(path, sidecar)'''

BODY = '''if MODE == "raise":
    raise RuntimeError("fixture failure in the training cell")
if MODE == "sleep_once" and first:
    time.sleep(120)
if MODE == "kill_once" and first:
    os.kill(os.getpid(), signal.SIGKILL)'''

RECORD = '''sidecar["results"] = {"test_error": {"value": 5.0 + SEED / 10 + len(MODEL) / 100, "unit": "%"},
                     "epochs": {"value": 1, "unit": None}}
results.atomic_write_json(path, sidecar)'''


def write_fixture(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    cells = [nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]})]
    cells += [nbformat.v4.new_code_cell(src) for src in (START, BODY, RECORD)]
    nb.cells = cells
    path = folder / "fake_train.ipynb"
    nbformat.write(nb, str(path))
    return path


def write_plan(folder: Path, runs: list[dict], needs: dict[int, list[int]] | None = None) -> Path:
    nb = str(write_fixture(folder))
    needs = needs or {}
    plan = {"profile": "smoke", "runs": [
        {"notebook": nb, "parameters": {"SEED": 0, **r}, "suite": "table1",
         "needs": needs.get(i, [])} for i, r in enumerate(runs)]}
    path = folder / "plan.json"
    path.write_text(json.dumps(plan))
    return path


def rows(results: Path) -> list[dict]:
    with (results / "report" / "tables.csv").open() as fh:
        return [{k: v for k, v in r.items() if k != "date"} for r in csv.DictReader(fh)]


def status(results: Path, nb_path: str, params: dict) -> str | None:
    run_id = run_id_for(nb_path, {"SEED": 0, **params})
    sc = results / "runs" / run_id / "result.json"
    return json.loads(sc.read_text()).get("status") if sc.is_file() else None


def opts(*args: str) -> list[str]:
    return [*args, "--no-report-notebook", "--jobs", "1"]


def test_interrupt_and_rerun_completes_and_gives_the_same_tables(tmp_path):
    marker = str(tmp_path / "slept")
    runs = [{"MODEL": "resnet56"}, {"MODEL": "hbnet56", "MODE": "sleep_once", "MARKER": marker},
            {"MODEL": "densenet40"}]
    plan = write_plan(tmp_path, runs)
    nb = str(tmp_path / "fake_train.ipynb")
    results = tmp_path / "results"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "optnb", "reproduce",
           *opts("--plan", str(plan), "--results", str(results))]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.monotonic() + 90
    while not Path(marker).exists():  # the second run is inside its long cell
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == INTERRUPTED, out
    assert "interrupted" in out
    assert status(results, nb, runs[0]) == "complete"
    assert status(results, nb, runs[1]) == "running"
    assert status(results, nb, runs[2]) is None
    first = results / "runs" / run_id_for(nb, {"SEED": 0, **runs[0]}) / "result.json"
    finished_before = json.loads(first.read_text())["finished"]

    assert cli.main(["reproduce", *opts("--plan", str(plan), "--results", str(results))]) == 0
    assert [status(results, nb, r) for r in runs] == ["complete"] * 3
    assert json.loads(first.read_text())["finished"] == finished_before  # not repeated
    runs_csv = (results / "report" / "runs.csv").read_text()
    assert runs_csv.count("True,True") == 1  # exactly one run skipped as complete

    reference = tmp_path / "reference"  # the same plan, never interrupted
    Path(marker).write_text("done")
    assert cli.main(["reproduce", *opts("--plan", str(plan), "--results", str(reference))]) == 0
    assert rows(results) == rows(reference)
    measured = [r for r in rows(results) if int(r["n"])]
    assert {r["row"] for r in measured} == {"resnet56", "hbnet56", "densenet40"}
    assert all(r["status"] == "SMOKE, EMBEDDED DATA" for r in measured)


def test_failed_and_killed_runs_are_reported_and_others_kept(tmp_path, capsys):
    marker = str(tmp_path / "killed")
    runs = [{"MODEL": "resnet56", "MODE": "raise"},
            {"MODEL": "hbnet56", "MODE": "kill_once", "MARKER": marker},
            {"MODEL": "agdnet40"}, {"MODEL": "densenet40"}]
    plan = write_plan(tmp_path, runs, needs={3: [0]})  # the last one needs the failing one
    nb = str(tmp_path / "fake_train.ipynb")
    results = tmp_path / "results"
    assert cli.main(["reproduce", *opts("--plan", str(plan), "--results", str(results))]) == 1
    assert [status(results, nb, r) for r in runs] == ["failed", "failed", "complete", None]
    report = (results / "report" / "report.md").read_text()
    assert "### FAILED: " + run_id_for(nb, {"SEED": 0, **runs[0]}) + " (fake_train)" in report
    assert "RuntimeError: fixture failure in the training cell" in report
    assert 'raise RuntimeError("fixture failure in the training cell")' in report  # the cell
    assert "DeadKernelError" in report or "Kernel died" in report
    blocked = run_id_for(nb, {"SEED": 0, **runs[3]})
    assert f"### FAILED: {blocked}" in report and "blocked: needs " + run_id_for(
        nb, {"SEED": 0, **runs[0]}) in report
    measured = [r for r in rows(results) if int(r["n"])]
    assert [r["row"] for r in measured] == ["agdnet40"]  # the good run's result is kept

    # the killed kernel only dies once: a re-run completes it and skips the finished run
    assert cli.main(["reproduce", *opts("--plan", str(plan), "--results", str(results))]) == 1
    assert [status(results, nb, r) for r in runs] == ["failed", "complete", "complete", None]
    out = capsys.readouterr().out
    assert "skipped (complete)" in out and "2 ok, 2 failed" in out


def test_bad_plan_is_rejected_before_anything_runs(tmp_path, capsys):
    plan = write_plan(tmp_path, [{"MODEL": "resnet56"}, {"MODEL": "resnet56", "EPOCHZ": 3}])
    results = tmp_path / "results"
    assert cli.main(["reproduce", *opts("--plan", str(plan), "--results", str(results))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown parameter EPOCHZ" in err
    assert not (results / "runs").exists()
    assert cli.main(["reproduce", "--profile", "fast"]) == 2
    assert "invalid choice: 'fast'" in capsys.readouterr().err
    assert cli.main(["reproduce", "--only", "table9", "--dry-run"]) == 2
    assert "unknown --only entry 'table9'" in capsys.readouterr().err
    assert cli.main(["reproduce", "--jobs", "-1", "--dry-run"]) == 2
    assert "--jobs must be >= 0" in capsys.readouterr().err


def test_dry_run_validates_the_real_plan_and_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPTNB_PROFILE", raising=False)
    results = tmp_path / "results"
    code = cli.main(["reproduce", "--profile", "smoke", "--only", "table1", "--dry-run",
                           "--results", str(results)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "plan: profile=smoke seeds=[0] suites=table1 runs=4 jobs=" in out
    assert "table1/agdnet40/cifar10+" in out and "estimate: ~" in out
    assert not results.exists()
    monkeypatch.setenv("OPTNB_PROFILE", "smoke")  # as in `make test`: the env wins, and says so
    assert cli.main(["reproduce", "--profile", "paper", "--only", "table3", "--dry-run"]) == 0
    assert "overrides --profile paper" in capsys.readouterr().out


def test_torchrun_option_routes_table_rows_and_keeps_notebooks(tmp_path, monkeypatch):
    """`--torchrun N` sends Table 1/2 runs to torchrun, everything else to the runner, by stage."""
    from optnb.experiments import plans, runner

    plan = plans.build("smoke", only="notebooks,table1,table4", available=lambda name: False)
    calls: list[tuple[str, str]] = []

    def fake_run_many(runs, jobs, results_dir, skip_complete, timeout, log):
        calls.extend(("papermill", r.notebook) for r in runs)
        return [runner.RunResult(r, True, None, None, None, 0.0) for r in runs]

    def fake_torchrun(run, nproc, results_dir):
        calls.append((f"torchrun x{nproc}", run.notebook))
        return runner.RunResult(run.to_run(), True, None, None, None, 0.0)

    monkeypatch.setattr(reproduce, "run_many", fake_run_many)
    monkeypatch.setattr(reproduce, "run_torchrun", fake_torchrun)
    results = reproduce.execute(plan, tmp_path, jobs=2, torchrun=3)
    assert len(results) == len(plan.runs) and all(r.ok for r in results)
    assert {c for c in calls if c[1] == plans.NB_CIFAR} == {("torchrun x3", plans.NB_CIFAR)}
    assert sum(c[1] == plans.NB_CIFAR for c in calls) == 4
    assert ("papermill", plans.NB_SEARCH) in calls and ("papermill", "00_tour") in calls
    first_eval = next(i for i, c in enumerate(calls) if c[1] == plans.NB_EVALUATE)
    assert all(c[1] != plans.NB_SEARCH for c in calls[first_eval:])  # evaluations come last
