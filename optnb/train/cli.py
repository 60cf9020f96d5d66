"""``optnb train``: train one Table 1/2 row from the command line (also under ``torchrun``).

    optnb train --model hbnet56 --dataset cifar10 --augment --profile paper
    torchrun --nproc_per_node 4 -m optnb train --model densenet40 --dataset cifar100 --no-augment

Writes ``<results>/runs/<run id>/`` (``metrics.jsonl``, ``checkpoint.pt``, ``train_result.json``).
An existing checkpoint is never overwritten: ``--resume`` continues it, otherwise the command
stops with a message. Bad input prints one line to stderr and exits 2; divergence exits 1.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

PROFILES = ("auto", "smoke", "quick", "paper")
DATASETS = ("auto", "embedded", "synthetic", "cifar10", "cifar100", "imagenet")


class UsageError(ValueError):
    """Bad command-line input (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code 2 (argparse's own convention)
        raise UsageError(message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="optnb train", description="Train one Table 1/2 row (paper §8 recipe).")
    p.add_argument("--model", required=True, help="model name (see `optnb list` / models.names())")
    p.add_argument("--dataset", default="auto", help=f"one of {', '.join(DATASETS)}")
    aug = p.add_mutually_exclusive_group()
    aug.add_argument("--augment", dest="augment", action="store_true", default=True,
                     help="the paper's '+' setting: pad-4 random crop + flip (default)")
    aug.add_argument("--no-augment", dest="augment", action="store_false",
                     help="no augmentation; DenseNet/AGDNet get dropout 0.2")
    p.add_argument("--profile", default="auto", help=f"one of {', '.join(PROFILES)}")
    p.add_argument("--recipe", default=None, help="override the recipe (e.g. imagenet:newton_design)")
    p.add_argument("--epochs", type=int, default=None, help="planned epochs (default: profile)")
    p.add_argument("--batch-size", type=int, default=None, help="global batch size (split over torchrun processes)")
    p.add_argument("--lr", type=float, default=None, help="initial learning rate")
    p.add_argument("--beta", type=float, default=None, help="HBNet/AGDNet momentum beta")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra model option, VALUE a Python literal (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--data-root", default=None, help="dataset folder (default: data/)")
    p.add_argument("--results-dir", default=None, help="results root (default: results/)")
    p.add_argument("--run-id", default=None, help="run folder name under <results>/runs/")
    p.add_argument("--resume", action="store_true", help="continue the run's checkpoint")
    p.add_argument("--stop-after", type=int, default=None, help="stop after N epochs in total")
    p.add_argument("--compile", nargs="?", const=True, default=False,
                   help="torch.compile the model (optionally a mode, e.g. max-autotune)")
    p.add_argument("--workers", type=int, default=4, help="ImageNet decoding processes")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p


def _model_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in args.model_option:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--model-option {item!r} is not KEY=VALUE")
        try:
            options[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            options[key] = raw
    if args.beta is not None:
        if not math.isfinite(args.beta):
            raise UsageError(f"--beta must be a finite number, got {args.beta!r}")
        options["beta"] = args.beta
    return options


def _check_model(name: str) -> None:
    from optnb import models

    valid = list(models.names())
    if name not in valid:
        raise UsageError(f"unknown model {name!r}; valid models: {', '.join(valid)}")


def _resolve(args: argparse.Namespace, device_type: str) -> tuple[str, str, list[str]]:
    from optnb import data
    from optnb.train.experiment import is_imagenet_model

    notes: list[str] = []
    if args.profile not in PROFILES:
        raise UsageError(f"unknown profile {args.profile!r}; valid: {', '.join(PROFILES)}")
    profile = args.profile
    if profile == "auto":
        profile = "quick" if device_type == "cuda" else "smoke"
        notes.append(f"profile auto -> {profile}")
    if args.dataset not in DATASETS:
        raise UsageError(f"unknown dataset {args.dataset!r}; valid: {', '.join(DATASETS)}")
    dataset = args.dataset
    if dataset == "auto":
        real = "imagenet" if is_imagenet_model(args.model) else "cifar10"
        root = Path(args.data_root) / ("imagenet" if real == "imagenet" else "") \
            if args.data_root else None
        if profile != "smoke" and data.available(real, root):
            dataset = real
        else:
            dataset = "embedded"
            notes.append(f"dataset auto -> EMBEDDED digits ({real} not used/found): "
                         "not the paper's data")
    return profile, dataset, notes


def run(args: argparse.Namespace) -> int:
    import torch

    from optnb.paths import run_dir as make_run_dir
    from optnb.seed import resolve_device
    from optnb.train import distributed
    from optnb.train.callbacks import ProgressCallback
    from optnb.train.experiment import plan_row, train_row

    _check_model(args.model)
    options = _model_options(args)
    device = resolve_device(args.device)
    info, device = distributed.init_from_env(device)
    try:
        profile, dataset, notes = _resolve(args, device.type)
        plan = plan_row(args.model, dataset, augment=args.augment, profile=profile,
                        seed=args.seed, epochs=args.epochs, batch_size=args.batch_size,
                        recipe=args.recipe, model_options=options)
        if args.lr is not None:
            plan.recipe = plan.recipe.replace(lr=args.lr)
        run_id = args.run_id or (f"train-{args.model}-{dataset}{'+' if args.augment else ''}"
                                 f"-{profile}-s{args.seed}")
        folder = make_run_dir(run_id, args.results_dir)
        say = print if info.is_main else (lambda *a, **k: None)
        say(f"optnb train: {args.model} on {dataset}{'+' if args.augment else ''} "
            f"profile={profile} epochs={plan.epochs} batch={plan.batch_size} "
            f"({info.world_size} process(es)) lr={plan.recipe.lr:g} "
            f"recipe={plan.recipe.name} device={device} -> {folder}"
            + "".join(f" [{n}]" for n in notes))
        root = args.data_root
        if root is not None and dataset == "imagenet":
            root = str(Path(root) / "imagenet")
        callbacks = [] if args.quiet else [ProgressCallback("off", total=plan.epochs)]
        result = train_row(plan, device=device, run_dir=folder, callbacks=callbacks,
                           resume=args.resume, compile=args.compile, data_root=root,
                           stop_after=args.stop_after, num_workers=args.workers)
        if info.is_main:
            summary = {name: value for name, (value, _) in result.results().items()}
            summary.update(model=args.model, dataset=dataset, augment=args.augment,
                           dataset_real=data_is_real(dataset), profile=profile, seed=args.seed,
                           device=str(device), world_size=info.world_size,
                           torch=torch.__version__, model_options=options)
            (folder / "train_result.json").write_text(json.dumps(summary, indent=1) + "\n")
            err = summary.get("test_error")
            say(f"done: test_error {err:.2f}% after {summary['epochs']}/"
                f"{summary['epochs_planned']} epochs ({summary['train_time_s']:.1f} s training)"
                if err is not None else "done")
    finally:
        distributed.shutdown()
    return 0


def data_is_real(name: str) -> bool:
    from optnb import data

    return data.is_real(name)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``optnb train``; returns the exit code (2 for bad input, 1 on divergence)."""
    from optnb.train.checkpoint import CheckpointError
    from optnb.train.engine import TrainingDivergedError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        argv = argv[1:]
    try:
        args = parser().parse_args(argv)
        return run(args)
    except TrainingDivergedError as err:
        print(f"optnb train: {err}", file=sys.stderr)
        return 1
    except (ValueError, KeyError, CheckpointError) as err:
        message = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        print(f"optnb train: {message.splitlines()[0] if message else type(err).__name__}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    raise SystemExit(main())
