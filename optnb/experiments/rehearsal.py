"""``optnb reproduce --profile paper --rehearse``: a dress rehearsal of the paper plan (issue 11).

Every run of the paper plan's tables (``plans.build("paper", only)``, Tables 1-5, one seed) is
executed by the runner that executes it for real -- its notebook through papermill, or
``optnb train`` under ``torchrun`` with ``--torchrun N`` -- at the paper's configuration, for a
few steps only (``rehearsal_overlay``: the one explicit input ``$OPTNB_REHEARSAL``):

1. data in the real on-disk formats, generated into a temporary folder
   (``optnb.data.fake.write_rehearsal_data``: CIFAR-10/100 python batches, an ImageNet tree of
   1000 JPEG class folders) and found through ``$OPTNB_DATA`` as real datasets are;
2. per kind of run, the per-step batch (``rehearsal_sizing``: the paper's, shrunk only where it
   does not fit this machine's memory or the rehearsal's time per step, said why);
3. stage by stage, each run is started, killed hard (SIGKILL of its kernel or torchrun
   processes) once its first checkpoint exists, started again, resumes the checkpoint, trains its
   remaining steps, evaluates and records; its sidecar says ``rehearsal: true``;
4. the report ``<results>/rehearsal/report.md`` and ``report.json`` (``rehearsal_report``): per
   run the status, wall time, steps, resume evidence, the configuration beside the paper's
   (``paper_config.check``), FLOPs per step, the batch used and what the paper's batch needs.

Results go to ``<results>/rehearsal/``, never beside real runs; the tables mark such runs
``REHEARSAL`` and never compare them with the paper. Exit 1 when a run or a configuration check
failed. ``torch.compile`` is off in a rehearsal (``$OPTNB_COMPILE=off``): compiling every
paper model with inductor on a small CPU takes longer than the whole rehearsal may.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optnb.experiments import plans, rehearsal_sizing, runner
from optnb.experiments.plans import Plan, PlanError, PlannedRun
from optnb.experiments.targets import TORCHRUN_NOTEBOOKS
from optnb.train import rehearsal_overlay

#: the suites a rehearsal covers: the paper's tables
TABLES = ("table1", "table2", "table3", "table4", "table5")
#: the rehearsal's results folder inside the results root
FOLDER = "rehearsal"
#: generated data sizes: enough for the search's 64/64 split and the evaluation's batch of 96
CIFAR_SIZES = {"n_train": 256, "n_test": 64}
#: seconds between looks for a first checkpoint to kill
POLL_S = 0.05


@dataclass
class Settings:
    """What a rehearsal does (the command line's options)."""

    only: str | None = None
    jobs: int = 2
    steps: int = 1              # steps per epoch
    stop_after: int = 2         # epochs (the kill comes during the second)
    eval_samples: int = 64
    step_gflops: float = rehearsal_sizing.DEFAULT_STEP_GFLOPS
    torchrun: int | None = None
    timeout: float | None = None
    keep_data: bool = False
    #: only these cells, ``table/row[/column or role]`` (and the runs they need); () = every run
    cells: tuple[str, ...] = ()


@dataclass
class Attempt:
    """One pass over a run: killed (and when), its runner result."""

    ok: bool
    error: str | None
    duration_s: float
    killed: bool = False
    kill_after_s: float | None = None


@dataclass
class Rehearsed:
    run: PlannedRun
    attempts: list[Attempt] = field(default_factory=list)


def say(message: str) -> None:
    print(message, flush=True)


def tables_of(only: str | None) -> tuple[str, ...]:
    """The table suites of ``only`` (all five by default); other suites are refused in one line."""
    suites = plans.parse_only(only) if only else TABLES
    other = [s for s in suites if s not in TABLES]
    if only and other:
        raise PlanError(f"--rehearse covers the paper's tables; {other[0]!r} is not one: valid "
                        f"--only entries with --rehearse: {', '.join(TABLES)}")
    return tuple(s for s in suites if s in TABLES)


def build_plan(only: str | None, data_root: Path) -> Plan:
    """The paper plan of the tables in ``only`` with one seed, the generated data counting as
    present (it is, under ``data_root``)."""
    # deferred: heavy (torch, the networks, the plans) and only needed here
    from optnb import data

    plan = plans.build("paper", tables_of(only), 1,
                       available=lambda name: data.available(name, data_root / "imagenet"
                                                             if name == "imagenet" else data_root))
    plans.validate(plan)
    return plan


def select(plan: Plan, cells: Sequence[str]) -> Plan:
    """``plan`` restricted to the runs of ``cells`` (``table1/resnet56/cifar10+``, ``table4/hb``,
    ``table5/agd/transfer``: a prefix of ``table/row/column-or-role``) and the runs they need."""
    if not cells:
        return plan

    def name(run: PlannedRun) -> str:
        t = run.target
        return f"{t.table}/{t.row}/{t.column or t.role}" if t is not None else run.suite

    wanted = {r.run_id for r in plan.runs if any(name(r) == c or name(r).startswith(c.rstrip("/") + "/")
                                                 for c in cells)}
    missing = [c for c in cells if not any(name(r) == c or name(r).startswith(c.rstrip("/") + "/")
                                           for r in plan.runs)]
    if missing:
        raise PlanError(f"no run of the rehearsed plan is {missing[0]!r}; valid: "
                        f"{', '.join(sorted({name(r) for r in plan.runs}))}")
    by_id = {r.run_id: r for r in plan.runs}
    todo = list(wanted)
    while todo:
        for need in by_id[todo.pop()].needs:
            if need not in wanted:
                wanted.add(need)
                todo.append(need)
    plan.runs[:] = [r for r in plan.runs if r.run_id in wanted]
    return plan


# ----------------------------------------------------------------------------------------------
# Killing a run hard once its first checkpoint exists


def _descendants() -> set[int]:
    import psutil

    return {p.pid for p in psutil.Process().children(recursive=True)}


class Killer:
    """Watches run folders; SIGKILLs the processes of a run (its kernel, its torchrun job) once
    ``checkpoint.pt`` exists. Only processes this process started are ever signalled."""

    def __init__(self, folders: dict[str, Path]) -> None:
        self.folders = folders
        self.killed: dict[str, float] = {}
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(POLL_S):
            for run_id, folder in self.folders.items():
                if run_id in self.killed or not (folder / "checkpoint.pt").is_file():
                    continue
                pids = {int(p.name) for p in (folder / rehearsal_overlay.PID_DIR).glob("*") if p.name.isdigit()}
                mine = pids & _descendants()
                if not mine:
                    continue
                for pid in mine:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.killed[run_id] = time.monotonic() - self.started
                say(f"kill {run_id}: SIGKILL to {sorted(mine)} after its first checkpoint")


# ----------------------------------------------------------------------------------------------
# Running


def _clear(root: Path, runs: Sequence[PlannedRun]) -> None:
    """Start every run afresh: remove its rehearsal folder (only folders of rehearsed runs)."""
    # deferred: heavy (torch, the networks, the plans) and only needed here
    from optnb.experiments.results import read_sidecar
    from optnb.paths import run_dir

    for run in runs:
        folder = run_dir(run.run_id, root, create=False)
        if folder.is_dir() and read_sidecar(folder).get("rehearsal", True):
            shutil.rmtree(folder)


def _pass(runs: list[PlannedRun], root: Path, settings: Settings, kill: bool) -> dict[str, Attempt]:
    """Execute ``runs`` once (notebooks ``jobs`` at a time, torchrun rows one by one); with
    ``kill`` each is killed once its first checkpoint exists."""
    # deferred: heavy (torch, the networks, the plans) and only needed here
    from optnb.experiments.reproduce import run_torchrun
    from optnb.experiments.runner import run_many
    from optnb.paths import run_dir

    folders = {r.run_id: run_dir(r.run_id, root, create=False) for r in runs}
    distributed = [r for r in runs if settings.torchrun and r.notebook in TORCHRUN_NOTEBOOKS]
    notebooks = [r for r in runs if r not in distributed]
    results = []
    with Killer(folders if kill else {}) as killer:

        def log(line: str) -> None:  # the runners report a planned kill as a failed run: say what it is
            words = line.split()
            if len(words) > 1 and words[0] == "FAILED" and words[1] in killer.killed:
                line = f"killed {words[1]}: as planned, after its first checkpoint; it resumes next"
            say(line)

        if notebooks:
            results += run_many([r.to_run() for r in notebooks], jobs=settings.jobs, results_dir=root,
                                skip_complete=not kill, timeout=settings.timeout, log=log)
        results += [run_torchrun(r, settings.torchrun, root, log=log) for r in distributed]
    out = {}
    for r in results:
        after = killer.killed.get(r.run.run_id)
        out[r.run.run_id] = Attempt(r.ok, r.error, r.duration_s, after is not None, after)
    return out


def execute(plan: Plan, root: Path, settings: Settings) -> list[Rehearsed]:
    """Stage by stage: the kill pass, then the resume pass of the runs it killed."""
    done = {r.run_id: Rehearsed(r) for r in plan.runs}
    failed: set[str] = set()
    for k, stage in enumerate(plan.stages()):
        ready = [r for r in stage if not any(n in failed for n in r.needs)]
        for r in stage:
            if r not in ready:
                done[r.run_id].attempts.append(Attempt(False, "blocked: a run it needs failed", 0.0))
        say(f"stage {k}: {len(ready)} run(s): start, kill after the first checkpoint, resume")
        first = _pass(ready, root, settings, kill=True)
        again = []
        for r in ready:
            attempt = first[r.run_id]
            done[r.run_id].attempts.append(attempt)
            if attempt.killed:
                again.append(r)
            elif attempt.ok:  # a finished run proves no resume: the rehearsal of it failed
                attempt.ok, attempt.error = False, "the kill came too late: the run finished before it was killed"
        second = _pass(again, root, settings, kill=False) if again else {}
        for r in again:
            done[r.run_id].attempts.append(second[r.run_id])
        failed |= {r.run_id for r in ready if not (r in again and second[r.run_id].ok)}
    return list(done.values())


def rehearse(results_root: Path, settings: Settings, log: Callable[[str], None] = say) -> int:
    """The whole rehearsal (module docstring); returns the exit code (0 ok, 1 a failure)."""
    # deferred: heavy (torch, the networks, the plans) and only needed here
    from optnb.data.fake import write_rehearsal_data
    from optnb.experiments import rehearsal_report

    start = time.monotonic()
    root = results_root / FOLDER
    root.mkdir(parents=True, exist_ok=True)
    data_root = Path(tempfile.mkdtemp(prefix="optnb-rehearsal-data-"))
    try:
        write_rehearsal_data(data_root, cifar=CIFAR_SIZES)
        log(f"rehearsal: data in the real formats under {data_root} ({time.monotonic() - start:.0f} s)")
        with runner.environment({"OPTNB_DATA": str(data_root)}):
            plan = select(build_plan(settings.only, data_root), settings.cells)
        _clear(root, plan.runs)
        runs = [r for r in plan.runs if r.target is not None]
        sizing = rehearsal_sizing.size_plan(runs, settings.step_gflops, settings.jobs, settings.torchrun or 1,
                                            log, cache=root / "sizing.json")
        overlay = rehearsal_overlay.Overlay(
            steps_per_epoch=settings.steps, stop_after=settings.stop_after, eval_samples=settings.eval_samples,
            threads=max(1, (os.cpu_count() or 1) // max(1, settings.jobs)),
            step_batches={k: s.step_batch for k, s in sizing.items() if s.shrunk})
        path = overlay.write(root / "overlay.json")
        log(f"rehearsal: {len(plan.runs)} run(s) of {', '.join(plan.suites)} at the paper's configuration, "
            f"{settings.steps} step(s) per epoch, stop after {settings.stop_after} epochs; results in {root}")
        env = {rehearsal_overlay.ENV: str(path), "OPTNB_DATA": str(data_root), "OPTNB_PROFILE": "paper",
               "OPTNB_COMPILE": "off", "OPTNB_DOWNLOAD": "0"}
        with runner.environment(env):
            rehearsed = execute(plan, root, settings)
        wall = time.monotonic() - start
        report = rehearsal_report.build(rehearsed, root, sizing, overlay, settings, wall)
        md, js = rehearsal_report.write(report, root)
        log(rehearsal_report.summary(report))
        log(f"rehearsal report: {md} ({js.name}); {wall:.0f} s in all")
        return 0 if report["ok"] else 1
    finally:
        if not settings.keep_data:
            shutil.rmtree(data_root, ignore_errors=True)
