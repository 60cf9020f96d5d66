"""``optnb search``: search a cell (paper §9; notebook 08 without Jupyter).

    optnb search --space hb --init hb --order 1 --profile paper --dataset cifar10 --seed 2
    optnb search --space agd --seeds 0,1,2,3 --jobs 4       # one process per seed
    optnb search --space hb --partial-channels 4            # PC-DARTS: 1/4 of the channels
    optnb search --space darts --max-skip 2 --early-stop darts+   # the collapse remedies
    torchrun --nproc_per_node 4 -m optnb search --space hb   # data parallel; the batch is global

Parameters go through the notebook's own ``resolve`` (same validation, run ids, sidecars and
per-profile sizes), so a command and a notebook run of the same settings share one run folder and
resume each other's checkpoints.

Under ``torchrun`` every process searches its shard of each global batch (``optnb.nas.search``);
rank 0 alone claims the run folder and writes the sidecar, the log, the checkpoint and the
genotype; ``--seeds`` (a process per seed) cannot be combined with it.
"""

from __future__ import annotations

import argparse
import os

from optnb.cli.common import (
    MAX_PROCESSES,
    SEED_MAX,
    CliError,
    Parser,
    add_run_options,
    bounded,
    compile_choice,
    exit_code,
    flatten,
    int_list,
    run_parameters,
)
from optnb.experiments.workers import WorkerPool

NAME = "search"
HELP = "search a cell (notebook 08 without Jupyter)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", default="darts", help="darts | hb | agd")
    p.add_argument("--init", default="random", help="random | zeros | hb")
    p.add_argument("--order", type=int, default=1, help="1 or 2")
    p.add_argument("--hb-init-logit", type=float, default=5.0)
    p.add_argument("--derive", default="auto", help="derive rule (auto: the space's)")
    p.add_argument("--partial-channels", type=int, default=1, metavar="K",
                   help="PC-DARTS: 1/K of the channels through the mixed ops (1: all; K divides C)")
    p.add_argument("--max-skip", type=int, default=-1, metavar="N",
                   help="P-DARTS: at most N skips in the derived normal cell (-1: no cap; the remedy: 2)")
    p.add_argument("--skip-hb-pair", action="store_true",
                   help="hb: eq. (18)'s identity pair per node is not counted as skips")
    p.add_argument("--early-stop", default="off", help="off | darts+ (DARTS+'s early-stopping rule)")
    p.add_argument("--stable-epochs", type=int, default=10, metavar="N",
                   help="darts+: stop when the alpha ranking is unchanged N epochs (0: off)")
    add_run_options(p)
    p.add_argument("--seeds", type=int_list("--seeds", 0, SEED_MAX), nargs="+", default=None,
                   help="several seeds (0,1,2,3 or 0 1 2 3), each in its own process")
    p.add_argument("--jobs", type=bounded("--jobs", int, 1, MAX_PROCESSES), default=1,
                   help="processes at once with --seeds")
    p.add_argument("--no-resume", action="store_true", help="start over, replacing a checkpoint")


def run(args: argparse.Namespace) -> int:
    args.seeds = flatten(args.seeds)
    if args.seeds:
        if distributed_world() > 1:
            raise CliError("--seeds starts one process per seed; it cannot run under torchrun "
                           "(use either torchrun or --seeds)")
        return run_seeds(args)
    # deferred: torch loads only when a command needs it (a fast `optnb list`)
    from optnb.experiments import record, resolve
    from optnb.experiments.profiles import registered
    from optnb.experiments.results import mark_complete
    from optnb.nas.experiment import load_search_data, search_summary
    from optnb.nas.params import search_config
    from optnb.nas.search import rank_batch, search
    from optnb.seed import resolve_device
    from optnb.train import distributed

    params = {**run_parameters(args), "SPACE": args.space, "INIT": args.init, "ORDER": args.order,
              "HB_INIT_LOGIT": args.hb_init_logit, "DERIVE": args.derive,
              "PARTIAL_CHANNELS": args.partial_channels, "MAX_SKIP": args.max_skip,
              "SKIP_HB_PAIR": args.skip_hb_pair, "EARLY_STOP": args.early_stop,
              "STABLE_EPOCHS": args.stable_epochs}
    info, device = distributed.init_from_env(resolve_device(args.device))
    try:
        cfg = resolve(params, notebook="08_nas_search", register=False, quiet=not info.is_main)
        settings = search_config(cfg)  # validated before the run folder is claimed
        rank_batch(settings.batch_size, info.world_size)
        with registered(cfg, register=info.is_main):  # claims the run folder, writes the sidecar
            images, labels = load_search_data(cfg)
            result = search(settings, images, labels, device if info.enabled else cfg.device,
                            cfg.dataset, cfg.run_dir, resume=not args.no_resume,
                            compile=compile_choice(args, cfg.profile, "search"))
            if info.is_main:
                for name, value, unit in search_summary(result):
                    record(name, value, unit)
                record("world_size", info.world_size, "processes (torchrun)" if info.enabled else "process")
                if result.complete:
                    mark_complete(cfg.run_dir)
    finally:
        distributed.shutdown()
    if info.is_main:
        print(f"run folder: {cfg.run_dir}")
    return 0


def distributed_world() -> int:
    """The number of processes torchrun started (1 outside torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def seed_argv(args: argparse.Namespace, seed: int) -> list[str]:
    """The ``optnb search`` arguments of one seed of a ``--seeds`` run."""
    argv = ["--space", args.space, "--init", args.init, "--order", str(args.order),
            "--hb-init-logit", str(args.hb_init_logit), "--derive", args.derive,
            "--partial-channels", str(args.partial_channels), "--max-skip", str(args.max_skip),
            "--early-stop", args.early_stop, "--stable-epochs", str(args.stable_epochs),
            *(["--skip-hb-pair"] if args.skip_hb_pair else []),
            "--profile", args.profile, "--device", args.device, "--dataset", args.dataset,
            "--epochs", str(args.epochs), "--results", args.results, "--seed", str(seed)]
    return argv + (["--no-resume"] if args.no_resume else [])


def run_seeds(args: argparse.Namespace) -> int:
    """One search per seed in worker processes (``optnb.experiments.workers``: spawned, stopped
    on Ctrl-C, never outliving this one), at most ``--jobs`` at once; the worst exit code."""
    if args.run_id:
        raise CliError("--run-id names one run; it cannot be used with --seeds")
    if len(set(args.seeds)) != len(args.seeds):
        raise CliError(f"--seeds {' '.join(map(str, args.seeds))} names a seed twice; give each once")
    pool = WorkerPool(min(args.jobs, len(args.seeds)))
    try:
        futures = [pool.submit(run_seed, seed_argv(args, s)) for s in args.seeds]
        codes = [f.result() for f in futures]
    except KeyboardInterrupt:
        pool.stop()
        raise
    pool.close()
    return max(codes)


def run_seed(argv: list[str]) -> int:
    """``optnb search ARGV`` in a worker process, with the command's exit codes."""
    parser = Parser(prog="optnb search")
    add_arguments(parser)
    return exit_code(lambda: run(parser.parse_args(argv)))
