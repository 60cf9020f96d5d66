"""``optnb train``: one Table 1/2 row without Jupyter (notebooks 06/07), also under ``torchrun``.

    optnb train --model hbnet56 --dataset cifar10 --augment --profile paper
    torchrun --nproc_per_node 4 -m optnb train --model densenet40 --dataset cifar100 --no-augment

The row goes through the notebook's own ``resolve`` (same validation, run id and sidecar) and
writes ``<results>/runs/<run id>/`` (``result.json``, ``metrics.jsonl``, ``checkpoint.pt``). An
existing checkpoint is never overwritten: ``--resume`` continues it, otherwise the command stops
with a message.

``--epochs``, ``--batch-size``, ``--lr``, ``--recipe``, ``--model-option`` and ``--beta`` are the
notebook's EPOCHS, BATCH_SIZE, LR, RECIPE and MODEL_OPTIONS (``optnb.train.params.ROW_OVERRIDES``:
0, '' and {} keep the profile's or recipe's value; model options are checked as the model checks
them). Everything is checked before the run folder is claimed and its sidecar written; a run
that fails afterwards marks its sidecar ``failed`` with the error.
"""

from __future__ import annotations

import argparse
import ast
import math
import os
from typing import Any

from optnb.cli.common import (
    MAX_PROCESSES,
    CliError,
    add_run_options,
    bounded,
    run_parameters,
)

NAME = "train"
HELP = "train one Table 1/2 row (notebooks 06/07 without Jupyter; works under torchrun)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a Table 1 or Table 2 model (see `optnb list`)")
    aug = p.add_mutually_exclusive_group()
    aug.add_argument("--augment", dest="augment", action="store_true", default=True,
                     help="the paper's '+' setting: pad-4 random crop + flip (default)")
    aug.add_argument("--no-augment", dest="augment", action="store_false",
                     help="no augmentation; DenseNet/AGDNet get dropout 0.2")
    add_run_options(p)
    p.add_argument("--recipe", default="", help="override the recipe (e.g. imagenet:newton_design)")
    p.add_argument("--batch-size", type=int, default=0,
                   help="BATCH_SIZE: 0 (default) the profile's; else the global batch, split over "
                        "torchrun processes, lr scaled linearly")
    p.add_argument("--lr", type=float, default=0.0, help="LR: 0 (default) the recipe's (after batch "
                                                         "scaling)")
    p.add_argument("--beta", type=float, default=None,
                   help="HBNet/AGDNet momentum beta (MODEL_OPTIONS beta; any finite number the "
                        "model accepts)")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra model option, VALUE a Python literal (repeatable)")
    p.add_argument("--data-root", default=None, help="dataset folder (default: data/ or $OPTNB_DATA)")
    p.add_argument("--resume", action="store_true", help="continue the run's checkpoint")
    p.add_argument("--stop-after", type=bounded("--stop-after", int, 1, 10_000), default=None,
                   metavar="N", help="stop after N epochs in total (1 to 10000)")
    p.add_argument("--workers", type=bounded("--workers", int, 0, MAX_PROCESSES), default=4,
                   help=f"ImageNet decoding processes (0: in this process; at most {MAX_PROCESSES})")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--model-option KEY=VALUE`` (literals) and ``--beta`` as one mapping."""
    options: dict[str, Any] = {}
    for item in args.model_option:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise CliError(f"--model-option {item!r} is not KEY=VALUE")
        try:
            options[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            options[key] = raw
    if args.beta is not None:
        if not math.isfinite(args.beta):
            raise CliError(f"--beta must be a finite number, got {args.beta!r}")
        options["beta"] = args.beta
    return options


def run(args: argparse.Namespace) -> int:
    # deferred: torch and the model zoo load only when a command needs them (a fast `optnb list`)
    from optnb import models
    from optnb.experiments import resolve, rows
    from optnb.experiments.profiles import registered
    from optnb.experiments.results import mark_complete
    from optnb.seed import resolve_device
    from optnb.train import ProgressCallback, distributed, train_row
    from optnb.train.experiment import is_imagenet_model
    from optnb.train.rehearsal_overlay import expected_epochs

    if args.model not in models.names():
        raise CliError(f"unknown model {args.model!r}; valid models: {', '.join(models.names())}")
    params = {**run_parameters(args), "MODEL": args.model, "BATCH_SIZE": args.batch_size,
              "LR": args.lr, "RECIPE": args.recipe, "MODEL_OPTIONS": model_options(args)}
    imagenet = is_imagenet_model(args.model)
    if not imagenet:
        params["AUGMENT"] = args.augment
    saved_root = os.environ.get("OPTNB_DATA")
    if args.data_root:
        os.environ["OPTNB_DATA"] = os.path.abspath(args.data_root)  # where resolve and data look
    info, device = distributed.init_from_env(resolve_device(args.device))
    try:
        cfg = resolve(params, notebook="07_train_imagenet" if imagenet else "06_train_cifar",
                      quiet=not info.is_main, register=False)
        plan = rows.plan_for(cfg)
        with registered(cfg, register=info.is_main):  # claims the run folder, writes the sidecar
            if info.is_main:
                print(f"optnb train: {plan.model} (trains {plan.trained_model}) for {plan.epochs} "
                      f"epochs, batch {plan.batch_size} over {info.world_size} process(es), "
                      f"lr {plan.recipe.lr:g}, recipe {plan.recipe.name} -> {cfg.run_dir}", flush=True)
            callbacks = [] if args.quiet else [ProgressCallback("off", total=plan.epochs)]
            result = train_row(plan, device=device, run_dir=cfg.run_dir, callbacks=callbacks,
                               resume=args.resume, compile=args.compile,
                               stop_after=args.stop_after, num_workers=args.workers)
            if info.is_main:
                rows.record(cfg, result, world_size=info.world_size)
                if result.fit.complete or result.fit.epochs_run >= expected_epochs(result.fit.epochs_planned):
                    mark_complete(cfg.run_dir)  # all epochs, or all of a dress rehearsal's
                error = result.fit.final.get("test_error")
                shown = "n/a" if error is None else f"{error:.2f}%"
                print(f"done: test_error {shown} after {result.fit.epochs_run}/"
                      f"{result.fit.epochs_planned} epochs ({result.fit.train_time_s:.1f} s training)",
                      flush=True)
    finally:
        distributed.shutdown()
        if saved_root is None:
            os.environ.pop("OPTNB_DATA", None)
        else:
            os.environ["OPTNB_DATA"] = saved_root
    return 0
