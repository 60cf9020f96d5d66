"""One owner per run folder (issue 10, class 4): the advisory lock, two reproductions on one
results folder, a reproduction killed with SIGKILL, and runs that fail or are refused.

The fixture notebook logs each execution (run id, kernel pid, whether its runner holds the run
folder for it, its IPython directory) and sleeps; with ``GATE`` pointing at an existing file it sleeps
until it is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import torch
from proctree import cmdline, descendants, wait_gone

from optnb import cli
from optnb.cli.common import BAD_INPUT, INTERRUPTED
from optnb.experiments import ownership, resolve, results
from optnb.experiments.ownership import LOCK_NAME, OWNER_ENV, TMP_NAME, RunBusyError
from optnb.experiments.results import run_id_for
from optnb.experiments.runner import Run, run_many, run_notebook

PARAMETERS = 'RUN_ID = ""\nRESULTS_DIR = ""\nLOG = ""\nGATE = ""\nN = 0'
BODY = '''import os, time
from pathlib import Path
from optnb.experiments import ownership
mine = ownership.held_for_me(Path(RESULTS_DIR) / "runs" / RUN_ID)
with open(LOG, "a") as fh:
    fh.write(f"{RUN_ID} {os.getpid()} {mine} {os.environ.get('IPYTHONDIR', '')}\\n")
time.sleep(300 if GATE and Path(GATE).exists() else 1.0)'''

HOLDER = '''import sys, time
from pathlib import Path
from optnb.experiments import ownership, results
lock = ownership.claim(Path(sys.argv[1]))
Path(sys.argv[2]).write_text("held")
time.sleep(float(sys.argv[3]))
if sys.argv[4:] == ["complete"]:
    results.mark_complete(Path(sys.argv[1]))
'''


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("OPTNB_HEADLESS", "1")
    monkeypatch.setenv("OPTNB_DOWNLOAD", "0")
    monkeypatch.delenv(OWNER_ENV, raising=False)
    monkeypatch.delenv("OPTNB_DEBUG", raising=False)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)


def write_fixture(folder: Path) -> Path:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(BODY)]
    path = folder / "owned.ipynb"
    nbformat.write(nb, str(path))
    return path


def write_plan(folder: Path, count: int, gate: str = "") -> tuple[Path, list[str], Path]:
    """A plan of ``count`` fixture runs; returns it, the run ids and the execution log."""
    nb, log = str(write_fixture(folder)), folder / "executions.log"
    params = [{"N": i, "LOG": str(log), "GATE": gate} for i in range(count)]
    plan = folder / "plan.json"
    plan.write_text(json.dumps({"profile": "smoke", "runs": [{"notebook": nb, "parameters": p} for p in params]}))
    return plan, [run_id_for(nb, p) for p in params], log


def executions(log: Path) -> list[list[str]]:
    return [line.split(" ") for line in log.read_text().splitlines()] if log.exists() else []


def hold(folder: Path, marker: Path, seconds: float, *then: str) -> subprocess.Popen:
    """Another process that claims ``folder`` and keeps it for ``seconds``."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(marker), str(seconds), *then])
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the holder did not claim the folder"
        time.sleep(0.05)
    return proc


def reproduce_cmd(plan: Path, results_root: Path, jobs: int) -> list[str]:
    return [sys.executable, "-m", "optnb", "reproduce", "--plan", str(plan), "--results", str(results_root),
            "--no-report-notebook", "--jobs", str(jobs)]


# ------------------------------------------------------------------------------------------------
# The lock


def test_a_claim_is_exclusive_reentrant_and_taken_over_after_its_owner_dies(tmp_path):
    folder = tmp_path / "runs" / "r1"
    holder = hold(folder, tmp_path / "held", 60)
    try:
        with pytest.raises(RunBusyError) as busy:
            ownership.claim(folder)
        message = str(busy.value)
        assert f"pid {holder.pid} on " in message and "\n" not in message and "use another run id" in message
        assert ownership.holder(folder).pid == holder.pid
        # what a killed owner leaves: a half-written atomic write and the kernel's temporary folder
        (folder / ".result.json.x1y2.tmp").write_text("{")
        (folder / TMP_NAME).mkdir()
        (folder / TMP_NAME / "kernel-1.json").write_text("{}")
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    finally:
        holder.kill()
    lock = ownership.claim(folder)  # the OS released the dead owner's lock: a stale lock is taken over
    assert lock is ownership.claim(folder)  # re-entrant within a process
    assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_NAME]
    lock.release()
    assert lock.held
    lock.release()
    assert not lock.held and ownership.holder(folder) is None


def test_resolve_refuses_a_held_run_unless_its_runner_holds_it_for_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPTNB_RESULTS", str(tmp_path))
    params = {"PROFILE": "smoke", "RUN_ID": "held"}
    folder = tmp_path / "runs" / "held"
    holder = hold(folder, tmp_path / "marker", 60)
    try:
        with pytest.raises(RunBusyError, match=f"run held is in use by pid {holder.pid}"):
            resolve(params, notebook="00_tour", quiet=True)
        assert not (folder / results.SIDECAR).exists()
        assert cli.main(["train", "--model", "resnet56", "--profile", "smoke", "--device", "cpu",
                         "--run-id", "held", "--quiet"]) == BAD_INPUT
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"is in use by pid {holder.pid}" in err
        assert not (folder / results.SIDECAR).exists()
        # a kernel started by the holder: the variable says its runner holds the folder
        monkeypatch.setenv(OWNER_ENV, f"{holder.pid}:{os.path.realpath(folder)}")
        cfg = resolve(params, notebook="00_tour", quiet=True)
        assert results.read_sidecar(cfg.run_dir)["status"] == "running"
        assert ownership.holder(folder).pid == holder.pid  # not taken from the runner
        monkeypatch.setenv(OWNER_ENV, f"{holder.pid + 1}:{os.path.realpath(folder)}")  # someone else's
        with pytest.raises(RunBusyError):
            resolve(params, notebook="00_tour", quiet=True)
    finally:
        holder.kill()
        holder.wait(10)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), RuntimeError("the data went away")])
def test_a_command_that_fails_after_its_sidecar_marks_it_failed(interrupt, tmp_path, monkeypatch, capsys):
    """Before: the sidecar stayed ``running`` for a run nobody runs."""
    def fail(*args, **kwargs):
        raise interrupt

    monkeypatch.setattr("optnb.train.train_row", fail)
    argv = ["train", "--model", "resnet56", "--profile", "smoke", "--device", "cpu",
            "--results", str(tmp_path), "--run-id", "doomed", "--quiet"]
    if isinstance(interrupt, KeyboardInterrupt):
        assert cli.main(argv) == INTERRUPTED
    else:
        with pytest.raises(RuntimeError):  # a programming error keeps its traceback
            cli.main(argv)
    sidecar = results.read_sidecar(tmp_path / "runs" / "doomed")
    assert sidecar["status"] == "failed" and sidecar["finished"]
    assert sidecar["error"] == results.error_line(interrupt) and "\n" not in sidecar["error"]
    lock = ownership.claim(tmp_path / "runs" / "doomed")  # the command let go of its run folder
    assert lock.created is False
    lock.release()


def test_run_many_waits_for_a_held_run_and_skips_it_once_its_owner_completed_it(tmp_path, capsys):
    nb = write_fixture(tmp_path)
    run = Run(str(nb), {"LOG": str(tmp_path / "log")}, "shared")
    holder = hold(tmp_path / "results" / "runs" / "shared", tmp_path / "marker", 2.0, "complete")
    try:
        messages: list[str] = []
        [result] = run_many([run], results_dir=tmp_path / "results", log=messages.append, poll_s=0.2)
        assert holder.wait(30) == 0
    finally:
        holder.kill()
    assert result.ok and result.skipped, result.summary()
    assert any(m.startswith(f"wait shared: in use by pid {holder.pid}") for m in messages), messages
    assert not (tmp_path / "log").exists()  # executed by nobody here: its owner completed it
    other = hold(tmp_path / "results" / "runs" / "other", tmp_path / "marker2", 30)
    try:
        with pytest.raises(RunBusyError):  # `optnb run` on a held folder is refused, not queued
            run_notebook(Run(str(nb), {}, "other"), tmp_path / "results")
    finally:
        other.kill()
        other.wait(10)
    assert sorted(p.name for p in (tmp_path / "results" / "runs" / "other").iterdir()) == [LOCK_NAME]


# ------------------------------------------------------------------------------------------------
# Reproductions


@pytest.mark.notebooks
@pytest.mark.timeout(180)
def test_two_reproductions_on_one_folder_execute_every_run_once(tmp_path):
    plan, ids, log = write_plan(tmp_path, 4)
    results_root = tmp_path / "results"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(reproduce_cmd(plan, results_root, jobs), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for jobs in (2, 1)]
    outs = [p.communicate(timeout=160)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = executions(log)
    assert sorted(r[0] for r in runs) == sorted(ids), outs  # every run executed exactly once
    for run_id, _, mine, ipython in runs:
        assert mine == "True"  # the kernel knew that its runner holds the folder
        assert Path(ipython) == results_root / "runs" / run_id / TMP_NAME / "ipython"
    for run_id in ids:
        folder = results_root / "runs" / run_id
        assert results.read_sidecar(folder)["status"] == "complete"
        assert not (folder / TMP_NAME).exists()
        assert ownership.holder(folder) is None
    both = "\n".join(outs)
    assert both.count("skipped (complete)") >= 4, both  # what one did, the other skipped
    assert "wait " in both or all(out.count("skipped (complete)") == 4 for out in outs), both


@pytest.mark.notebooks
@pytest.mark.timeout(180)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
@pytest.mark.parametrize("jobs", [2, 1])
def test_sigkill_of_the_reproduce_process_group_leaves_no_process_and_no_temporary_folder(jobs, tmp_path):
    gate = tmp_path / "gate"
    gate.write_text("sleep until killed")
    plan, ids, log = write_plan(tmp_path, 2, gate=str(gate))
    results_root = tmp_path / "results"
    proc = subprocess.Popen(reproduce_cmd(plan, results_root, jobs), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:  # until `jobs` runs sit in their sleeping cell, each in its own kernel
            tree = descendants(proc.pid)
            kernels = [p for p in tree if "ipykernel" in cmdline(p)]
            if len(kernels) == jobs and len(executions(log)) == jobs:
                break
            assert proc.poll() is None and time.monotonic() < deadline, "the runs did not start"
            time.sleep(0.2)
        for kernel in kernels:  # the kernel's connection file lies in its run's temporary folder
            connection = Path(cmdline(kernel).split(" -f ")[1].split(" ")[0])
            assert connection.parent.name == TMP_NAME and connection.parent.parent.parent == results_root / "runs"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        survivors = wait_gone(tree | {proc.pid}, timeout_s=15)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert len(tree) >= (2 * jobs if jobs > 1 else 1)  # the kernels, and with --jobs 2 their workers
    assert not survivors, f"still running after the reproduction was killed: {survivors}"
    started = [r[0] for r in executions(log)]
    for run_id in started:
        folder = results_root / "runs" / run_id
        assert results.read_sidecar(folder).get("status") != "complete"
        assert ownership.holder(folder) is None  # the OS released the dead owner's lock
    if jobs == 1:  # the next start takes the killed run over and removes what it left
        gate.unlink()
        assert cli.main(reproduce_cmd(plan, results_root, 1)[3:]) == 0
        for run_id in ids:
            folder = results_root / "runs" / run_id
            assert results.read_sidecar(folder)["status"] == "complete"
            assert not (folder / TMP_NAME).exists() and not list(folder.glob(".*.tmp"))
        assert sorted(r[0] for r in executions(log)) == sorted([*started, *ids])
