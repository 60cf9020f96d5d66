"""The runner's worker processes: stopping them in order, and never leaving one behind.

The first tests drive ``WorkerPool`` with tiny tasks (no kernel); the last one kills a parent that
is executing notebooks with ``run_many(jobs=2)`` and checks that its workers and kernels go too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import nbformat
import pytest
from proctree import alive, cmdline, descendants, wait_gone

from optnb.experiments import workers
from optnb.experiments.workers import WorkerPool

_PR_GET_PDEATHSIG = 2


# Tasks run in spawned workers, which import them from this module by name.


def _worker_facts() -> tuple[bool, int]:
    signum = ctypes.c_int(0)
    ctypes.CDLL(None, use_errno=True).prctl(_PR_GET_PDEATHSIG, ctypes.byref(signum), 0, 0, 0)
    return os.getsid(0) == os.getpid(), signum.value


def _sleep_until_interrupted(marker: str) -> str:
    Path(marker + ".started").write_text("")
    try:
        time.sleep(60)
    except KeyboardInterrupt:
        Path(marker + ".interrupted").write_text("")  # the task's own clean-up gets to run
        raise
    return "slept"


def _ignore_interrupts(marker: str) -> None:
    Path(marker + ".started").write_text("")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(1)


def _touch(marker: str) -> None:
    Path(marker).write_text("")


def _speak() -> None:
    print("to stdout", flush=True)
    os.write(2, b"to stderr, as a kernel writes\n")


def _die() -> None:
    os._exit(3)  # as if the OOM killer took the worker


def _wait_for(path: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} did not appear within {timeout_s} s"
        time.sleep(0.1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_a_worker_has_its_own_session_and_dies_with_its_parent():
    with WorkerPool(1) as pool:
        own_session, death_signal = pool.submit(_worker_facts).result(timeout=60)
    assert own_session, "a terminal's Ctrl-C must reach only the parent, which stops the workers in order"
    assert death_signal == signal.SIGTERM
    assert not workers.live_workers()


@pytest.mark.timeout(120)
def test_stop_interrupts_the_running_task_and_the_next_one_never_starts(tmp_path):
    pool = WorkerPool(1)
    pool.submit(_sleep_until_interrupted, str(tmp_path / "first"))
    pool.submit(_touch, str(tmp_path / "second"))  # waits for the only worker
    _wait_for(tmp_path / "first.started")
    [pid] = [p.pid for p in pool.processes()]
    start = time.monotonic()
    pool.stop(grace_s=30)
    assert time.monotonic() - start < 10, "an interruptible task must not use up the grace period"
    assert (tmp_path / "first.interrupted").exists()
    assert not alive(pid) and not workers.live_workers()
    time.sleep(1.0)
    assert not (tmp_path / "second").exists(), "a queued task started after the interrupt"


@pytest.mark.timeout(120)
def test_stop_kills_a_worker_that_ignores_the_interrupt(tmp_path):
    pool = WorkerPool(1)
    pool.submit(_ignore_interrupts, str(tmp_path / "stubborn"))
    _wait_for(tmp_path / "stubborn.started")
    [pid] = [p.pid for p in pool.processes()]
    start = time.monotonic()
    pool.stop(grace_s=1.0)
    assert time.monotonic() - start < 8
    assert not alive(pid) and not workers.live_workers()


def test_what_workers_print_goes_to_the_log_file(tmp_path, capfd):
    log = tmp_path / "logs" / "workers.log"
    with WorkerPool(1, log_path=log) as pool:
        pool.submit(_speak).result(timeout=60)
    assert log.read_text() == "to stdout\nto stderr, as a kernel writes\n"
    out, err = capfd.readouterr()
    assert "to std" not in out + err


@pytest.mark.timeout(120)
def test_a_dead_worker_fails_its_task_and_the_pool_carries_on(tmp_path):
    with WorkerPool(1) as pool:
        with pytest.raises(BrokenProcessPool):
            pool.submit(_die).result(timeout=60)
        pool.submit(_touch, str(tmp_path / "after")).result(timeout=60)
    assert (tmp_path / "after").exists()
    assert not workers.live_workers()


PARENT = """
import sys
from optnb.experiments.runner import Run, run_many
runs = [Run(sys.argv[1], {"SECONDS": 300 + i}, f"orphan-{i}") for i in range(2)]
run_many(runs, jobs=2, results_dir=sys.argv[2], timeout=600)
"""


@pytest.mark.notebooks
@pytest.mark.timeout(180)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_killing_the_parent_takes_its_workers_and_kernels_with_it(tmp_path):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("SECONDS = 300", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("import time\ntime.sleep(SECONDS)")]
    nbformat.write(nb, str(tmp_path / "sleeps.ipynb"))
    log = (tmp_path / "parent.log").open("w")
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path / "sleeps.ipynb"),
                               str(tmp_path / "results")], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:  # until both runs are inside their sleeping cell, each in its own kernel
            tree = descendants(parent.pid)
            kernels = [p for p in tree if "ipykernel" in cmdline(p)]
            if len(kernels) == 2:
                break
            assert parent.poll() is None and time.monotonic() < deadline, (tmp_path / "parent.log").read_text()
            time.sleep(0.2)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        survivors = wait_gone(tree, timeout_s=10)
    finally:
        if parent.poll() is None:
            parent.kill()
        log.close()
    assert len(tree) >= 4  # two workers and their two kernels (and multiprocessing's resource tracker)
    assert not survivors, f"still running after their parent was killed: {survivors}"
