"""What ``optnb reproduce`` does (the command line is ``optnb.cli.reproduce``): validate a plan,
run it stage by stage, write the report.

* Every run of the plan is validated (notebook present, parameter names, types and values) before
  anything executes.
* Runs whose sidecar says ``complete`` are skipped, so an interrupted reproduction (Ctrl-C, a
  killed kernel, a lost machine) continues where it stopped when the same command is run again.
* Every run has one owner (``optnb.experiments.ownership``): a second reproduction on the same
  results folder waits for the runs the first one holds and skips them once complete, so every
  run executes once. A torchrun job's folder is claimed here and handed to the job
  (``$OPTNB_RUN_OWNER``); the job dies with this process.
* A failed run does not stop the others; it is reported with its notebook, cell and error.
  Evaluations whose search failed are reported as blocked.
* The report goes to ``<results>/report/``: ``report.md`` (tables beside the paper with
  provenance), ``tables.csv``, ``sizes.csv``, ``runs.csv`` and ``report.html`` (the executed
  notebook 90, via nbconvert).
"""

from __future__ import annotations

import csv
import io
import os
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from nbconvert import HTMLExporter

from optnb.atomic import write_text
from optnb.experiments import ownership, plans, render, results, tables
from optnb.experiments.notebooks import UnknownNotebookError, find_notebook
from optnb.experiments.plans import Plan, PlannedRun
from optnb.experiments.runner import Run, RunResult, run_many, run_notebook
from optnb.experiments.targets import NB_REPORT, table_names
from optnb.experiments.workers import die_with_parent
from optnb.paths import run_dir


def say(message: str) -> None:
    print(message, flush=True)


# ----------------------------------------------------------------------------------------------
# Running


def _blocked(run: PlannedRun, failed: set[str]) -> RunResult:
    why = ", ".join(n for n in run.needs if n in failed)
    return RunResult(run.to_run(), False, None, None,
                     f"blocked: needs {why}, which did not complete", 0.0)


def run_torchrun(run: PlannedRun, nproc: int, results_dir: Path,
                 log: Callable[[str], None] = say) -> RunResult:
    """Execute a Table 1/2 run with ``torchrun`` (see ``plans.torchrun_command``): it writes the
    same sidecar as the notebook would. Complete runs are skipped and an interrupted one resumes
    its checkpoint. The run folder is claimed here first (waiting while another process holds
    it) and the job is told so; the job gets SIGTERM if this process dies. ``log`` prints the
    progress lines, as in ``runner.run_many``."""
    folder = run_dir(run.run_id, results_dir, create=False)
    sidecar = folder / results.SIDECAR
    if results.is_complete(folder):
        return RunResult(run.to_run(), True, None, sidecar, None, 0.0, skipped=True)
    with ownership.claim_waiting(folder, say=log) as lock:
        if results.is_complete(folder):  # its previous owner completed it while we waited
            return RunResult(run.to_run(), True, None, sidecar, None, 0.0, skipped=True)
        cmd = plans.torchrun_command(run, nproc, results_dir,
                                     resume=(folder / "checkpoint.pt").is_file())
        log(f"torchrun {run.run_id}: {' '.join(cmd[1:])}")
        start = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **lock.environment()},
                              preexec_fn=die_with_parent)
        duration = time.monotonic() - start
    error = None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-20:]
        error = f"torchrun exited with {proc.returncode}\n" + "\n".join(tail)
    result = RunResult(run.to_run(), error is None, None, sidecar, error, duration)
    log(result.summary())
    return result


def execute(plan: Plan, results_dir: Path, jobs: int, timeout: float | None = None,
            torchrun: int | None = None, executor: Any = None) -> list[Any]:
    """Run the plan stage by stage through ``runner.run_many`` (Table 1/2 rows through
    ``torchrun`` when ``torchrun`` is a process count); complete runs are skipped. With
    ``executor`` (a ``optnb.experiments.cluster.ClusterExecutor``; not imported here, it imports
    this module) each stage's runs are cluster jobs instead."""
    done: list[RunResult] = []
    failed: set[str] = set()
    for k, stage in enumerate(plan.stages()):
        ready = [r for r in stage if not any(n in failed for n in r.needs)]
        done += [_blocked(r, failed) for r in stage if r not in ready]
        if executor is not None:  # one job per run, which runs run_notebook or run_torchrun
            say(f"stage {k}: {len(ready)} run(s) as {executor.name} jobs, at most {executor.limit} at a time")
            done += executor.run_stage(ready)
            failed |= {r.run.run_id for r in done if not r.ok}
            continue
        distributed = [r for r in ready if torchrun and r.notebook in plans.TORCHRUN_NOTEBOOKS]
        notebooks = [r for r in ready if r not in distributed]
        say(f"stage {k}: {len(ready)} run(s), {jobs} at a time")
        if notebooks:
            done += run_many([r.to_run() for r in notebooks], jobs=jobs, results_dir=results_dir,
                             skip_complete=True, timeout=timeout, log=say)
        done += [run_torchrun(r, torchrun, results_dir) for r in distributed]
        failed |= {r.run.run_id for r in done if not r.ok}
    return done


def run_report_notebook(results_dir: Path, profile: str, report_dir: Path,
                        timeout: float | None) -> str | None:
    """Execute notebook 90 on ``results_dir`` and export it as HTML; returns an error or None."""
    try:
        find_notebook(NB_REPORT)
    except UnknownNotebookError:
        return f"{NB_REPORT} not found: no HTML report"
    run = Run(NB_REPORT, {"PROFILE": profile})
    # a second reproduction on the same results waits for the first one's report notebook
    result = run_notebook(run, results_dir, timeout=timeout, log=say, skip_complete=False, wait=True)
    if not result.ok:
        return result.error
    try:
        body, _ = HTMLExporter().from_filename(str(result.output_path))
        write_text(report_dir / "report.html", body)
    except Exception as err:  # noqa: BLE001 - a failed export must not lose the Markdown report
        return f"HTML export skipped ({type(err).__name__}: {err})"
    return None


def provenance_header(plan: Plan, argv: Sequence[str], run_devices: Sequence[str] = ()) -> str:
    """How the report was made: command, profile, device, versions, date.

    ``run_devices`` are the devices the runs' sidecars name; where they are not this machine's (the
    runs were cluster jobs), the header names both."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else (
        f"CPU only ({os.cpu_count()} cores, {platform.machine()})")
    if not torch.cuda.is_available() and any(d.startswith("cuda") for d in run_devices):
        device = f"{', '.join(sorted(set(run_devices)))} (the runs' sidecars); this report was made on {device}"
    lines = [
        f"Made by `optnb reproduce {' '.join(argv)}`".rstrip() + f" on "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}.",
        f"Profile: **{plan.profile}**; seeds: {list(plan.seeds)}; device: {device}; "
        f"torch {torch.__version__}.",
    ]
    if plan.profile == "smoke":
        lines.append("**Smoke profile: tiny models, a few steps, embedded data (scikit-learn "
                     "digits) where no dataset is present. These numbers test the pipeline; they "
                     "are not a reproduction of the paper.**")
    lines += [f"Note: {n}" for n in plan.notes]
    return "\n\n".join(lines)


def runs_markdown(plan: Plan, outcomes: Sequence[RunResult]) -> str:
    by_id = {r.run.run_id: r for r in outcomes}
    body = []
    for run in plan.runs:
        r = by_id.get(run.run_id)
        status = ("not run" if r is None else "skipped (complete)" if r.skipped
                  else "ok" if r.ok else "**FAILED**")
        cell = f"{run.target.table}/{run.target.row}" if run.target else run.suite
        err = (r.error or "").splitlines()[0] if r is not None and r.error else ""
        body.append([run.run_id, Path(run.notebook).stem, cell, status,
                     f"{r.duration_s:.0f}s" if r is not None else "", err])
    text = render.md_table(("Run", "Notebook", "Cell", "Status", "Time", "Error"), body)
    failures = [r for r in outcomes if not r.ok]
    for r in failures:
        text += (f"\n\n### FAILED: {r.run.run_id} ({Path(r.run.notebook).stem})\n\n"
                 f"Output notebook: {r.output_path or 'none'}\n\n```\n{r.error}\n```")
    return text


def write_report(plan: Plan, outcomes: Sequence[RunResult], results_dir: Path,
                 argv: Sequence[str]) -> Path:
    """report.md, tables.csv, sizes.csv, runs.csv under ``<results>/report/``."""
    report_dir = results_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    names = [s for s in plan.suites if s in table_names()]
    if "beyond" in names and "table1" not in names:
        names.append("table1")  # the baselines the variants are read beside
    if plan.suites == ("plan",):
        names = sorted({r.target.table for r in plan.runs if r.target})
    report = tables.build(results_dir, tables=names or None,
                          run_ids=[r.run_id for r in plan.runs])
    sidecars = [results.read_sidecar(run_dir(r.run_id, results_dir, create=False)) for r in plan.runs]
    devices = [results.device_label(sc) for sc in sidecars if sc.get("device")]
    md = render.report_markdown(report, header=provenance_header(plan, argv, devices))
    md += "\n## Runs\n\n" + runs_markdown(plan, outcomes) + "\n"
    write_text(report_dir / "report.md", md)
    render.write_csv(report_dir / "tables.csv", report.all_lines)
    _write_rows(report_dir / "sizes.csv", [r for rows in report.sizes.values() for r in rows])
    _write_rows(report_dir / "runs.csv", [
        {"run_id": r.run.run_id, "notebook": Path(r.run.notebook).stem, "ok": r.ok,
         "skipped": r.skipped, "duration_s": round(r.duration_s, 1),
         "error": (r.error or "").splitlines()[0] if r.error else ""} for r in outcomes])
    return report_dir


def _write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    write_text(path, text.getvalue())
