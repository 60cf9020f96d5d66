"""``optnb reproduce``: the paper's tables as notebook runs, then the report.

    optnb reproduce [--only table1,table4] [--profile smoke|quick|paper|auto] [--seeds N]
                    [--jobs N] [--dry-run] [--gpu H200|H100|A100|current] [--results DIR]
                    [--plan FILE] [--torchrun N]
                    [--no-report-notebook] [--executor local|slurm] [--slurm-partition P]
                    [--slurm-account A] [--slurm-time MIN] [--slurm-gpus-per-node N]
                    [--slurm-cpus-per-gpu N] [--slurm-folder DIR]

Plan, validate every run, run (papermill, in parallel; complete runs are skipped, so the same
command continues an interrupted reproduction), then tables and report in ``<results>/report/``.
Two reproductions on one results folder share the work: a run the other one is executing is
waited for (and said so), then skipped as complete; every run executes once.
With ``--executor slurm`` every run is a cluster job (``optnb.experiments.cluster``).
Exit 0 when every run is ok, 1 when one failed, 2 for bad input, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from optnb.cli.common import INTERRUPTED, MAX_PROCESSES, RUN_FAILED, CliError, bounded
from optnb.experiments import cluster
from optnb.experiments.costs import DEFAULT_GPU, GPUS
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
                        "sharing the GPU otherwise; --executor slurm: jobs at once, 0 = a whole stage")
    p.add_argument("--dry-run", action="store_true", help="print the plan and its cost estimate")
    p.add_argument("--gpu", default=None, metavar="NAME",
                   help=f"the GPU the quick/paper estimate is for: {', '.join(GPUS)} or current "
                        f"(this machine's CUDA device); default {DEFAULT_GPU}")
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
    p.add_argument("--rehearse", action="store_true",
                   help="dress rehearsal (--profile paper only): every run of the paper's tables at "
                        "the paper's configuration for a few steps on generated data, killed and "
                        "resumed; report in <results>/rehearsal/ (optnb.experiments.rehearsal)")
    p.add_argument("--rehearse-steps", type=bounded("--rehearse-steps", int, 1, 1000), default=1, metavar="N",
                   help="with --rehearse: training steps per epoch (default 1; 2 epochs per run)")
    p.add_argument("--rehearse-step-gflops", type=bounded("--rehearse-step-gflops", float, 0), default=None,
                   metavar="G", help="with --rehearse: the per-step batch shrinks until a step is at most G "
                                     "GFLOP (default 200, for a small CPU; 0: memory alone decides)")
    # cluster jobs (optnb.experiments.cluster); submitit-local, for the tests, stays out of the help
    p.add_argument("--executor", default="local", choices=cluster.EXECUTORS, metavar="{local,slurm}",
                   help="local: the runs in this machine's processes (default); slurm: one cluster "
                        f"job per run through submitit ({cluster.INSTALL_HINT})")
    p.add_argument("--slurm-partition", type=_slurm_name("--slurm-partition"), default=None,
                   help="partition of the jobs (default: the cluster's)")
    p.add_argument("--slurm-account", type=_slurm_name("--slurm-account"), default=None,
                   help="account charged for the jobs (default: yours)")
    p.add_argument("--slurm-time", type=bounded("--slurm-time", int, 1, cluster.MAX_TIME_MIN), default=None,
                   metavar="MIN", help=f"time limit of a job in minutes (default {cluster.DEFAULT_TIME_MIN}); "
                                       "a job out of time is requeued and resumes its checkpoint")
    p.add_argument("--slurm-gpus-per-node", type=bounded("--slurm-gpus-per-node", int, 0, 64), default=None,
                   metavar="N", help="GPUs of a notebook run's job (default 1; 0 on a CPU partition); "
                                     "a Table 1/2 row under --torchrun N gets N")
    p.add_argument("--slurm-cpus-per-gpu", type=bounded("--slurm-cpus-per-gpu", int, 1, MAX_PROCESSES),
                   default=None, metavar="N", help=f"CPU cores per GPU, or per torchrun process without "
                                                   f"GPUs (default {cluster.DEFAULT_CPUS_PER_GPU})")
    p.add_argument("--slurm-folder", default=None, metavar="DIR",
                   help="the jobs' submitit folder: their logs and results (default <results>/slurm/)")


def _slurm_name(option: str) -> Callable[[str], str]:
    """An argparse ``type`` for a Slurm partition or account name (one line when it is not one)."""
    def convert(raw: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.,-]{1,64}", raw):
            raise argparse.ArgumentTypeError(f"{option} must be a Slurm name (letters, digits, '_', "
                                             f"'.', '-', ',' up to 64 characters), got {raw!r}")
        return raw

    return convert


def _cluster_options(args: argparse.Namespace) -> cluster.ClusterOptions | None:
    """The ``--executor``/``--slurm-*`` options; None for a local reproduction (which takes none)."""
    given = [k for k in ("partition", "account", "time", "gpus_per_node", "cpus_per_gpu", "folder")
             if getattr(args, f"slurm_{k}") is not None]
    if args.executor == "local":
        if given:
            raise CliError(f"--slurm-{given[0].replace('_', '-')} needs --executor slurm")
        return None
    chosen = {"partition": args.slurm_partition, "account": args.slurm_account, "time_min": args.slurm_time,
              "gpus": args.slurm_gpus_per_node, "cpus_per_gpu": args.slurm_cpus_per_gpu,
              "folder": Path(args.slurm_folder).expanduser().resolve() if args.slurm_folder else None}
    return cluster.ClusterOptions(executor=args.executor, jobs=args.jobs,
                                  **{k: v for k, v in chosen.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    # deferred: the plan is read and validated first; torch, papermill and nbconvert load only
    # when the runs start
    from optnb.experiments import plans
    from optnb.experiments.profiles import effective_profile
    from optnb.paths import ensure_dir, results_dir

    options = _cluster_options(args)
    if args.rehearse or args.rehearse_step_gflops is not None:
        return _rehearse(args)
    profile, notes = effective_profile(args.profile, label="--profile")
    plan = (plans.load_plan(args.plan, profile) if args.plan
            else plans.build(profile, args.only, args.seeds or 1, gpu=args.gpu))
    plans.validate(plan)
    for note in notes + [f"NOTE: {n}" for n in plan.notes]:
        print(note, flush=True)
    jobs = args.jobs or (len(plan.runs) if args.executor == "slurm" else plans.default_jobs(plan.profile))
    if args.dry_run:
        print(plan.describe(jobs), flush=True)
        if options is not None:
            print(cluster.describe_jobs(plan, options, results_dir(args.results), args.torchrun), flush=True)
        return 0
    root = ensure_dir(results_dir(args.results))  # one line if it cannot be written, before any run
    # one line when submitit (or Slurm's sbatch) is missing, before torch loads
    executor = None if options is None else cluster.ClusterExecutor(plan, root, options, args.timeout, args.torchrun)
    from optnb.experiments import reproduce  # deferred: torch and nbconvert, for the runs and report
    from optnb.experiments.runner import report

    reproduce.say(f"reproduce: {len(plan.runs)} run(s), profile {plan.profile}, results in {root}")
    try:
        outcomes = reproduce.execute(plan, root, jobs, args.timeout, args.torchrun, executor)
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


def _rehearse(args: argparse.Namespace) -> int:
    """``--rehearse``: ``optnb.experiments.rehearsal`` (the paper profile only, local, no plan file)."""
    if not args.rehearse:
        raise CliError("--rehearse-step-gflops needs --rehearse")
    if args.profile != "paper":
        raise CliError(f"--rehearse rehearses the paper plan: use --profile paper (got --profile {args.profile})")
    for flag, given in (("--plan", args.plan), ("--dry-run", args.dry_run),
                        ("--executor slurm", args.executor != "local"), ("--seeds", args.seeds)):
        if given:
            raise CliError(f"--rehearse takes no {flag}: it rehearses the built-in paper plan, one seed, here")
    # deferred: heavy (torch, the networks, the plans) and only needed here
    from optnb.experiments import rehearsal
    from optnb.experiments.rehearsal_sizing import DEFAULT_STEP_GFLOPS
    from optnb.paths import ensure_dir, results_dir

    root = ensure_dir(results_dir(args.results))
    rehearsal.tables_of(args.only)  # one line for a suite that is not a table, before anything runs
    settings = rehearsal.Settings(
        only=args.only, jobs=args.jobs or 2, steps=args.rehearse_steps, torchrun=args.torchrun,
        timeout=args.timeout,
        step_gflops=DEFAULT_STEP_GFLOPS if args.rehearse_step_gflops is None else args.rehearse_step_gflops)
    try:
        return rehearsal.rehearse(root, settings)
    except KeyboardInterrupt:
        print("\noptnb reproduce --rehearse: interrupted", file=sys.stderr)
        return INTERRUPTED
