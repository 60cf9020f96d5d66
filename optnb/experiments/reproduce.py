"""``optnb reproduce``: plan -> validate -> run (papermill, in parallel) -> tables -> report.

::

    optnb reproduce [--only table1,table4] [--profile smoke|quick|paper|auto] [--seeds N]
                    [--jobs N] [--dry-run] [--results DIR] [--plan FILE] [--torchrun N]
                    [--no-report-notebook]

* Every run of the plan is validated (notebook present, parameter names, types and values) before
  anything executes; a bad plan prints one line and exits 2.
* Runs whose sidecar says ``complete`` are skipped, so an interrupted reproduction (Ctrl-C, a
  killed kernel, a lost machine) continues where it stopped when the same command is run again.
* A failed run does not stop the others; it is reported with its notebook, cell and error, and
  the exit code is 1. Evaluations whose search failed are reported as blocked.
* The report goes to ``<results>/report/``: ``report.md`` (tables beside the paper with
  provenance), ``tables.csv``, ``sizes.csv``, ``runs.csv`` and ``report.html`` (the executed
  notebook 90, via nbconvert).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from optnb.experiments import plans, render, tables
from optnb.experiments.plans import Plan, PlanError, PlannedRun, Target

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints the usage too)
        raise PlanError(message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="optnb reproduce",
                description="Run the paper's tables as notebook runs and write the report "
                            "(results/report/): plan, validate, run, tables.")
    p.add_argument("--only", default=None,
                   help=f"comma-separated suites: {', '.join(plans.SUITES)} (default: all)")
    p.add_argument("--profile", default="auto", choices=("smoke", "quick", "paper", "auto"),
                   help="auto = quick with a GPU, smoke without (default)")
    p.add_argument("--seeds", type=int, default=None,
                   help="seeds per row (default 1; smoke always uses one)")
    p.add_argument("--jobs", type=int, default=0,
                   help="runs at once; 0 = auto (default): min(2, CPU cores) in smoke, 2 runs "
                        "sharing the GPU otherwise")
    p.add_argument("--dry-run", action="store_true", help="print the plan and its cost estimate")
    p.add_argument("--results", default=None, help="results folder (default results/)")
    p.add_argument("--plan", default=None, help="a JSON plan file instead of the built-in plans")
    p.add_argument("--no-report-notebook", action="store_true",
                   help="skip executing notebook 90 (report.md and CSV are still written)")
    p.add_argument("--timeout", type=float, default=None, help="per-cell timeout in seconds")
    p.add_argument("--torchrun", type=int, default=None, metavar="N",
                   help="run the Table 1/2 rows as `torchrun --nproc_per_node N -m optnb train` "
                        "(DDP; gloo on CPU, NCCL on GPU) instead of through their notebooks")
    return p


def _say(message: str) -> None:
    print(message, flush=True)


# ----------------------------------------------------------------------------------------------
# Planning and validation


def resolve_profile(name: str) -> str:
    """``--profile`` made concrete. ``$OPTNB_PROFILE`` wins, as it does inside every notebook
    (``resolve``), so that the plan and the runs it launches agree."""
    from optnb.experiments.profiles import resolve_profile as _resolve

    env = os.environ.get("OPTNB_PROFILE", "").strip()
    if env and env != name:
        _resolve(env)  # validates
        _say(f"profile from $OPTNB_PROFILE={env} (overrides --profile {name}, as in the notebooks)")
        name = env
    picked = _resolve(name)
    if name == "auto":
        import torch

        why = "a CUDA GPU is visible" if torch.cuda.is_available() else "no CUDA GPU is visible"
        _say(f"profile auto -> {picked} ({why})")
    return picked


def load_plan(path: str | os.PathLike, profile: str) -> Plan:
    """A plan from JSON: ``{"profile"?, "runs": [{"notebook", "parameters", "suite"?,
    "target"?: {"table", "row", "column"?, "role"?}, "needs"?: [run ids or indices],
    "estimate_s"?}]}``. Run ids come from ``runner.make_run_id``; ``needs`` may name earlier
    runs by their index in the list."""
    from optnb.experiments.runner import make_run_id

    try:
        spec = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise PlanError(f"cannot read plan file {path}: {err}") from None
    if not isinstance(spec, dict) or spec.get("profile", profile) not in plans.PROFILES:
        raise PlanError(f"plan {path}: 'profile' must be one of {', '.join(plans.PROFILES)}")
    plan = Plan(profile=spec.get("profile", profile), seeds=(0,), suites=("plan",))
    ids: list[str] = []
    for i, entry in enumerate(spec.get("runs", [])):
        try:
            notebook, params = str(entry["notebook"]), dict(entry.get("parameters", {}))
            needs = tuple(ids[n] if isinstance(n, int) else str(n) for n in entry.get("needs", ()))
            target = Target(**entry["target"]) if entry.get("target") else None
            estimate = float(entry.get("estimate_s", 60.0))
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise PlanError(f"plan {path}: run {i} is malformed ({type(err).__name__}: {err}); "
                            "expected notebook, parameters, and optionally suite, target, "
                            "needs (indices of earlier runs), estimate_s") from None
        run = PlannedRun(notebook, params, make_run_id(notebook, params), entry.get("suite", "plan"),
                         target, needs, estimate)
        ids.append(run.run_id)
        plan.add(run)
    if not plan.runs:
        raise PlanError(f"plan {path} has no runs")
    return plan


def validate(plan: Plan) -> None:
    """Check every run before anything executes; drops absent tour/theory notebooks (noted).

    Raises ``PlanError`` / ``ParameterError`` (ValueErrors) or ``UnknownNotebookError`` (a
    KeyError) with a one-line message.
    """
    from optnb.experiments.notebooks import UnknownNotebookError
    from optnb.experiments.runner import validate_runs

    kept = []
    for run in plan.runs:
        if run.suite == "notebooks":
            try:
                from optnb.experiments.notebooks import find_notebook

                find_notebook(run.notebook)
            except UnknownNotebookError:
                plan.notes.append(f"{run.notebook} is not in notebooks/ yet: not run")
                continue
        kept.append(run)
    plan.runs[:] = kept
    ids = {r.run_id for r in plan.runs}
    for run in plan.runs:
        missing = [n for n in run.needs if n not in ids]
        if missing:
            raise PlanError(f"run {run.run_id} needs {missing[0]}, which is not in the plan")
    plan.stages()  # raises on a cycle
    validate_runs([r.to_run() for r in plan.runs])


# ----------------------------------------------------------------------------------------------
# Running


def _blocked(run: PlannedRun, failed: set[str]) -> Any:
    from optnb.experiments.runner import RunResult

    why = ", ".join(n for n in run.needs if n in failed)
    return RunResult(run.to_run(), False, None, None,
                     f"blocked: needs {why}, which did not complete", 0.0)


def run_torchrun(run: PlannedRun, nproc: int, results_dir: Path) -> Any:
    """Execute a Table 1/2 run with ``torchrun`` (see ``plans.torchrun_command``); complete
    runs (a ``train_result.json``) are skipped and an interrupted one resumes its checkpoint."""
    import subprocess
    import time

    from optnb.experiments.runner import RunResult

    folder = results_dir / "runs" / run.run_id
    if (folder / tables.TRAIN_RESULT).is_file():
        return RunResult(run.to_run(), True, None, folder / tables.TRAIN_RESULT, None, 0.0,
                         skipped=True)
    cmd = plans.torchrun_command(run, nproc, results_dir,
                                 resume=(folder / "checkpoint.pt").is_file())
    _say(f"torchrun {run.run_id}: {' '.join(cmd[1:])}")
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    duration = time.monotonic() - start
    error = None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-20:]
        error = f"torchrun exited with {proc.returncode}\n" + "\n".join(tail)
    result = RunResult(run.to_run(), error is None, None, folder / tables.TRAIN_RESULT, error,
                       duration)
    _say(result.summary())
    return result


def execute(plan: Plan, results_dir: Path, jobs: int, timeout: float | None = None,
            torchrun: int | None = None) -> list[Any]:
    """Run the plan stage by stage through ``runner.run_many`` (Table 1/2 rows through
    ``torchrun`` when ``torchrun`` is a process count); complete runs are skipped."""
    from optnb.experiments.runner import run_many

    done: list[Any] = []
    failed: set[str] = set()
    for k, stage in enumerate(plan.stages()):
        ready = [r for r in stage if not any(n in failed for n in r.needs)]
        done += [_blocked(r, failed) for r in stage if r not in ready]
        distributed = [r for r in ready if torchrun and r.notebook in plans.TORCHRUN_NOTEBOOKS]
        notebooks = [r for r in ready if r not in distributed]
        _say(f"stage {k}: {len(ready)} run(s), {jobs} at a time")
        if notebooks:
            done += run_many([r.to_run() for r in notebooks], jobs=jobs, results_dir=results_dir,
                             skip_complete=True, timeout=timeout, log=_say)
        done += [run_torchrun(r, torchrun, results_dir) for r in distributed]
        failed |= {r.run.run_id for r in done if not r.ok}
    return done


def _run_report_notebook(results_dir: Path, profile: str, report_dir: Path,
                         timeout: float | None) -> str | None:
    """Execute notebook 90 on ``results_dir`` and export it as HTML; returns an error or None."""
    from optnb.experiments.notebooks import UnknownNotebookError, find_notebook
    from optnb.experiments.runner import Run, run_notebook

    try:
        find_notebook(plans.NB_REPORT)
    except UnknownNotebookError:
        return f"{plans.NB_REPORT} not found: no HTML report"
    run = Run(plans.NB_REPORT, {"PROFILE": profile})
    result = run_notebook(run, results_dir, timeout=timeout, log=_say, skip_complete=False)
    if not result.ok:
        return result.error
    try:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_filename(str(result.output_path))
        (report_dir / "report.html").write_text(body)
    except Exception as err:  # noqa: BLE001 - nbconvert is optional; the Markdown report remains
        return f"HTML export skipped ({type(err).__name__}: {err})"
    return None


def provenance_header(plan: Plan, argv: Sequence[str]) -> str:
    """How the report was made: command, profile, device, versions, date."""
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else (
        f"CPU only ({os.cpu_count()} cores, {platform.machine()})")
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


def runs_markdown(plan: Plan, results: Sequence[Any]) -> str:
    by_id = {r.run.run_id: r for r in results}
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
    failures = [r for r in results if not r.ok]
    for r in failures:
        text += (f"\n\n### FAILED: {r.run.run_id} ({Path(r.run.notebook).stem})\n\n"
                 f"Output notebook: {r.output_path or 'none'}\n\n```\n{r.error}\n```")
    return text


def write_report(plan: Plan, results: Sequence[Any], results_dir: Path,
                 argv: Sequence[str]) -> Path:
    """report.md, tables.csv, sizes.csv, runs.csv under ``<results>/report/``."""
    report_dir = results_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    names = [s for s in plan.suites if s in ("table1", "table2", "table4", "table5")]
    if plan.suites == ("plan",):
        names = sorted({r.target.table for r in plan.runs if r.target})
    report = tables.build(results_dir, tables=names or None,
                          run_ids=[r.run_id for r in plan.runs])
    md = report.markdown(header=provenance_header(plan, argv))
    md += "\n## Runs\n\n" + runs_markdown(plan, results) + "\n"
    (report_dir / "report.md").write_text(md)
    render.write_csv(report_dir / "tables.csv", report.all_lines)
    _write_rows(report_dir / "sizes.csv", [r for rows in report.sizes.values() for r in rows])
    _write_rows(report_dir / "runs.csv", [
        {"run_id": r.run.run_id, "notebook": Path(r.run.notebook).stem, "ok": r.ok,
         "skipped": r.skipped, "duration_s": round(r.duration_s, 1),
         "error": (r.error or "").splitlines()[0] if r.error else ""} for r in results])
    return report_dir


def _write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)


# ----------------------------------------------------------------------------------------------
# Entry point


def main(argv: Sequence[str] | None = None) -> int:
    """``optnb reproduce ...``; returns 0 (all ok), 1 (a run failed), 2 (bad input), 130 (^C)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from optnb.experiments.notebooks import UnknownNotebookError
    from optnb.experiments.profiles import ParameterError
    from optnb.paths import results_dir as default_results

    try:
        args = parser().parse_args(argv)
        profile = resolve_profile(args.profile)
        if args.jobs < 0:
            raise PlanError(f"--jobs must be >= 0 (0 = auto), got {args.jobs}")
        if args.seeds is not None and args.seeds < 1:
            raise PlanError(f"--seeds must be >= 1, got {args.seeds}")
        plan = (load_plan(args.plan, profile) if args.plan
                else plans.build(profile, args.only, args.seeds or 1))
        validate(plan)
        if args.torchrun is not None and args.torchrun < 1:
            raise PlanError(f"--torchrun needs at least 1 process, got {args.torchrun}")
    except (PlanError, ParameterError, UnknownNotebookError) as err:
        print(f"optnb reproduce: {err}", file=sys.stderr)
        return EXIT_USAGE
    jobs = args.jobs or plans.default_jobs(plan.profile)
    results_dir = default_results(args.results)
    for note in plan.notes:
        _say(f"NOTE: {note}")
    if args.dry_run:
        _say(plan.describe(jobs))
        return EXIT_OK
    _say(f"reproduce: {len(plan.runs)} run(s), profile {plan.profile}, results in {results_dir}")
    try:
        results = execute(plan, results_dir, jobs, args.timeout, args.torchrun)
    except KeyboardInterrupt:
        print("\noptnb reproduce: interrupted. Finished runs are kept (their sidecars say "
              "complete); run the same command again to do the rest.", file=sys.stderr)
        return EXIT_INTERRUPTED
    report_dir = write_report(plan, results, results_dir, argv)
    if not args.no_report_notebook:
        problem = _run_report_notebook(results_dir, plan.profile, report_dir, args.timeout)
        if problem:
            _say(f"report notebook: {problem.splitlines()[0]}")
    failed = [r for r in results if not r.ok]
    from optnb.experiments.runner import report as runner_report

    _say(runner_report(results))
    _say(f"report: {report_dir / 'report.md'}")
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
