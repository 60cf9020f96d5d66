"""``optnb search`` and ``optnb evaluate``: the notebooks 08/09 without Jupyter.

    optnb search --space hb --init hb --order 1 --profile paper --dataset cifar10 --seed 2
    optnb search --space agd --seeds 0 1 2 3 --jobs 4       # one process per seed
    optnb evaluate --genotype DARTS_V2 --profile quick
    optnb evaluate --search-run 08_nas_search-1a2b3c4d --task imagenet

Parameters go through the same ``resolve`` as the notebooks (same validation, run ids, sidecars
and per-profile sizes), so a CLI run and a notebook run of the same settings share one run folder
and resume each other's checkpoints. Bad input prints one line to stderr and returns 2.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

BAD_INPUT = 2


class UsageError(ValueError):
    """Bad command-line input (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise UsageError(message)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="auto", help="smoke | quick | paper | auto")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dataset", default="auto", help="auto | embedded | synthetic | cifar10 | ...")
    p.add_argument("--epochs", type=int, default=0, help="0: the profile's default")
    p.add_argument("--results-dir", default="", help="results root (default: results/)")
    p.add_argument("--run-id", default="", help="run folder name (default: derived)")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")


def parser(command: str) -> argparse.ArgumentParser:
    if command == "search":
        p = _Parser(prog="optnb search", description="Search a cell (paper §9; notebook 08).")
        p.add_argument("--space", default="darts", help="darts | hb | agd")
        p.add_argument("--init", default="random", help="random | zeros | hb")
        p.add_argument("--order", type=int, default=1, help="1 or 2")
        p.add_argument("--hb-init-logit", type=float, default=5.0)
        p.add_argument("--derive", default="auto", help="derive rule (auto: the space's)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--seeds", type=int, nargs="+", default=None,
                       help="several seeds, each in its own process")
        p.add_argument("--jobs", type=int, default=1, help="processes at once with --seeds")
    elif command == "evaluate":
        p = _Parser(prog="optnb evaluate",
                    description="Train a genotype from scratch (paper §9.3; notebook 09).")
        p.add_argument("--genotype", default="", help="name (DARTS_V2, ...), JSON or text")
        p.add_argument("--search-run", default="", help="an 08_nas_search run id")
        p.add_argument("--task", default="cifar10", help="cifar10 (Table 4) | imagenet (Table 5)")
        p.add_argument("--seed", type=int, default=0)
    else:
        raise UsageError(f"unknown command {command!r}; valid: search, evaluate")
    _common(p)
    return p


def _namespace(command: str, args: argparse.Namespace) -> dict[str, Any]:
    ns = {"PROFILE": args.profile, "SEED": args.seed, "DEVICE": args.device,
          "DATASET": args.dataset, "LIVE": "off", "RESULTS_DIR": args.results_dir,
          "RUN_ID": args.run_id, "EPOCHS": args.epochs}
    if command == "search":
        ns.update(SPACE=args.space, INIT=args.init, ORDER=args.order,
                  HB_INIT_LOGIT=args.hb_init_logit, DERIVE=args.derive)
    else:
        ns.update(TASK=args.task, GENOTYPE=args.genotype, SEARCH_RUN=args.search_run)
    return ns


def run_search(ns: dict[str, Any], resume: bool = True) -> int:
    from optnb.experiments import record, resolve
    from optnb.experiments.results import mark_complete
    from optnb.nas.experiment import load_search_data, search_summary
    from optnb.nas.params import search_config
    from optnb.nas.search import search

    cfg = resolve(ns, notebook="08_nas_search")
    settings = search_config(cfg)  # validated before any data is loaded
    images, labels = load_search_data(cfg)
    result = search(settings, images, labels, cfg.device, cfg.dataset, cfg.run_dir,
                    resume=resume)
    for name, value, unit in search_summary(result):
        record(name, value, unit)
    if result.complete:
        mark_complete(cfg.run_dir)
    print(f"run folder: {cfg.run_dir}")
    return 0


def run_evaluate(ns: dict[str, Any], resume: bool = True) -> int:
    from optnb.experiments import record, resolve
    from optnb.experiments.results import mark_complete
    from optnb.nas.evaluate import train_genotype
    from optnb.nas.experiment import eval_loaders, eval_summary, resolve_genotype
    from optnb.nas.params import eval_config

    cfg = resolve(ns, notebook="09_nas_evaluate")
    genotype, source = resolve_genotype(cfg.genotype, cfg.search_run, cfg.results_dir)
    settings = eval_config(cfg).checked()
    train, test, num_classes = eval_loaders(cfg, settings)
    result = train_genotype(genotype, settings, train, test, cfg.device, cfg.run_dir,
                            resume=resume, num_classes=num_classes)
    for name, value, unit in eval_summary(result, cfg.task, source):
        record(name, value, unit)
    mark_complete(cfg.run_dir)
    print(f"run folder: {cfg.run_dir}")
    return 0


def _spawn_seeds(args: argparse.Namespace) -> int:
    """Run one ``optnb search`` process per seed, at most ``args.jobs`` at once."""
    base = ["search", "--space", args.space, "--init", args.init, "--order", str(args.order),
            "--hb-init-logit", str(args.hb_init_logit), "--derive", args.derive,
            "--profile", args.profile, "--device", args.device, "--dataset", args.dataset,
            "--epochs", str(args.epochs), "--results-dir", args.results_dir]
    base += ["--no-resume"] if args.no_resume else []
    running: list[subprocess.Popen] = []
    worst = 0
    for seed in args.seeds:
        running.append(subprocess.Popen([sys.executable, "-m", "optnb.nas.cli", *base,
                                         "--seed", str(seed)]))
        while len(running) >= max(args.jobs, 1):
            worst = max(worst, running.pop(0).wait())
    for proc in running:
        worst = max(worst, proc.wait())
    return worst


def main(argv: Sequence[str]) -> int:
    """``argv[0]`` is ``search`` or ``evaluate``; returns the exit code."""
    from optnb.nas.errors import NasError

    argv = list(argv)
    try:
        if not argv:
            raise UsageError("expected a command: search or evaluate")
        command = argv[0]
        args = parser(command).parse_args(argv[1:])
        if command == "search" and args.seeds:
            if args.run_id:
                raise UsageError("--run-id names one run; it cannot be used with --seeds")
            return _spawn_seeds(args)
        ns = _namespace(command, args)
        runner = run_search if command == "search" else run_evaluate
        return runner(ns, resume=not args.no_resume)
    except (UsageError, NasError, ValueError) as err:  # ParameterError, DataError: ValueErrors
        message = " ".join(str(err).split())
        print(f"optnb {argv[0] if argv else ''}: {message}".replace("  ", " "), file=sys.stderr)
        return BAD_INPUT


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
