"""``optnb reproduce``: the paper's tables as notebook runs, then the report.

    optnb reproduce [--only table1,table4] [--profile smoke|quick|paper|auto] [--seeds N]
                    [--jobs N] [--dry-run] [--results DIR] [--plan FILE] [--torchrun N]
                    [--no-report-notebook]

Plan, validate every run, run (papermill, in parallel; complete runs are skipped, so the same
command continues an interrupted reproduction), then tables and report in ``<results>/report/``.
Two reproductions on one results folder share the work: a run the other one is executing is
waited for (and said so), then skipped as complete; every run executes once.
Exit 0 when every run is ok, 1 when one failed, 2 for bad input, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys

from optnb.cli.common import INTERRUPTED, MAX_PROCESSES, RUN_FAILED, bounded
from optnb.experiments.plans import SUITES
from optnb.specs import PROFILE_CHOICES

NAME = "reproduce"
HELP = "run the paper's tables (plan, validate, run, tables, report)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", default=None, help=f"comma-separated suites: {', '.join(SUITES)} (default: all)")
    p.add_argument("--profile", default="auto", choices=PROFILE_CHOICES,
                   help="auto = quick with a GPU, smoke without (default)")
    p.add_argument("--seeds", type=bounded("--seeds", int, 1, 100), default=None,
                   help="seeds per row (1 to 100; default 1; smoke always uses one)")
    p.add_argument("--jobs", type=bounded("--jobs", int, 0, MAX_PROCESSES, meaning="0 = auto"), default=0,
                   help="runs at once; 0 = auto (default): min(2, CPU cores) in smoke, 2 runs "
                        "sharing the GPU otherwise")
    p.add_argument("--dry-run", action="store_true", help="print the plan and its cost estimate")
    p.add_argument("--results", "--results-dir", dest="results", default=None,
                   help="results folder (default results/)")
    p.add_argument("--plan", default=None, help="a JSON plan file instead of the built-in plans")
    p.add_argument("--no-report-notebook", action="store_true",
                   help="skip executing notebook 90 (report.md and CSV are still written)")
    p.add_argument("--timeout", type=bounded("--timeout", float, 0, above=True), default=None,
                   metavar="S", help="per-cell timeout in seconds (> 0; default: by profile)")
    p.add_argument("--torchrun", type=bounded("--torchrun", int, 1, 1024), default=None, metavar="N",
                   help="run the Table 1/2 rows as `torchrun --nproc_per_node N -m optnb train` "
                        "(DDP; gloo on CPU, NCCL on GPU) instead of through their notebooks")


def run(args: argparse.Namespace) -> int:
    # deferred: the plan is read and validated first; torch, papermill and nbconvert load only
    # when the runs start
    from optnb.experiments import plans
    from optnb.experiments.profiles import effective_profile
    from optnb.paths import ensure_dir, results_dir

    profile, notes = effective_profile(args.profile, label="--profile")
    plan = (plans.load_plan(args.plan, profile) if args.plan
            else plans.build(profile, args.only, args.seeds or 1))
    plans.validate(plan)
    for note in notes + [f"NOTE: {n}" for n in plan.notes]:
        print(note, flush=True)
    jobs = args.jobs or plans.default_jobs(plan.profile)
    if args.dry_run:
        print(plan.describe(jobs), flush=True)
        return 0
    root = ensure_dir(results_dir(args.results))  # one line if it cannot be written, before any run
    from optnb.experiments import reproduce  # deferred: torch and nbconvert, for the runs and report
    from optnb.experiments.runner import report

    reproduce.say(f"reproduce: {len(plan.runs)} run(s), profile {plan.profile}, results in {root}")
    try:
        outcomes = reproduce.execute(plan, root, jobs, args.timeout, args.torchrun)
    except KeyboardInterrupt:
        print("\noptnb reproduce: interrupted. Finished runs are kept (their sidecars say "
              "complete); run the same command again to do the rest.", file=sys.stderr)
        return INTERRUPTED
    report_dir = reproduce.write_report(plan, outcomes, root, getattr(args, "argv", [])[1:])
    if not args.no_report_notebook:
        problem = reproduce.run_report_notebook(root, plan.profile, report_dir, args.timeout)
        if problem:
            reproduce.say(f"report notebook: {problem.splitlines()[0]}")
    reproduce.say(report(outcomes))
    reproduce.say(f"report: {report_dir / 'report.md'}")
    return RUN_FAILED if any(not r.ok for r in outcomes) else 0
