"""``optnb bench``: side-by-side training throughput (``--suite models``, the default: each
baseline/variant pair and the engine against a DataLoader loop) or the NAS search step
(``--suite nas``: naive against optimised, ``--order 1`` or ``2``) or the activation memory of the
reversible HBNet stage (``--suite memory``: saved bytes, step peak and time of HBNet with the
momentum outside, ordinary against reversible, n = 9 ... 144 blocks per stage, up to 36 with
``--quick``, plus the reversible gradients' error per beta and depth). Ratios measured in one run,
never absolute gates. ``--suite nas --epoch`` times one whole search epoch instead (the paper's
size on CUDA) and extrapolates it to the 50-epoch search in GPU-days. ``--suite nas --partial K``
compares PC-DARTS's partial channels (1/K of the channels through the mixed ops) with the full
supernet in each space: step time and peak memory, interleaved, full / partial ratios.
``--suite compile`` sets eager against compiled training steps (``torch.compile``; channels_last;
CUDA graphs on a GPU) of each model (``--models``, default resnet56, hbnet56, densenet40,
agdnet40, the DARTS_V2 evaluation network and the search supernet): step times, speed-ups,
compile time and the steps it takes to pay, peak memory, the pair ratios. ``--suite rows`` times
the training step of every kind of run in the paper plan at the paper's configuration and gives
the share of the device's peak it reaches: the cost model's utilisation
(``optnb.experiments.utilisation``).

Writes ``latest.json/.md`` (models), ``nas-latest.json`` (order 1), ``nas-order2-latest.json``,
``nas-epoch-latest.json``, ``nas-partial-latest.json``, ``memory-latest.json`` and
``compile-latest.json/.md`` and ``rows-latest.json/.md`` under ``--out``
(default ``results/bench``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from optnb.atomic import write_text
from optnb.cli.common import SEED_MAX, CliError, bounded
from optnb.paths import ensure_dir, results_dir

NAME = "bench"
HELP = ("benchmarks: model pairs and the engine (models), the NAS search step (nas), the "
        "reversible HBNet's memory (memory), eager against compiled steps (compile) or the paper "
        "plan's steps and their share of the peak (rows)")
SUITES = ("models", "nas", "memory", "compile", "rows")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="models", choices=SUITES)
    p.add_argument("--quick", action="store_true", help="small sizes (a couple of CPU minutes)")
    p.add_argument("--device", default="auto")
    p.add_argument("--pair", action="append", metavar="BASELINE:VARIANT",
                   help="a model pair, e.g. resnet56:hbnet56 (repeatable)")
    p.add_argument("--no-loader", action="store_true", help="skip engine vs DataLoader")
    p.add_argument("--order", type=int, default=1, choices=(1, 2),
                   help="nas: first- or second-order search step (default 1)")
    p.add_argument("--epoch", action="store_true",
                   help="nas: time one whole search epoch (instead of the step comparison)")
    p.add_argument("--partial", type=bounded("--partial", int, 2), default=None, metavar="K",
                   help="nas: partial channels K against full channels, in every space")
    p.add_argument("--space", action="append", default=None, choices=("darts", "hb", "agd"),
                   help="nas --partial: the space(s) to compare (default: all three)")
    p.add_argument("--epoch-images", type=bounded("--epoch-images", int, 1), default=None,
                   help="images per timed epoch (models: CUDA only; nas --epoch: default 50000 "
                        "on CUDA, 512 on CPU)")
    p.add_argument("--peak-tflops", type=bounded("--peak-tflops", float, 0, above=True), default=None,
                   help="peak bf16 TFLOP/s for MFU (> 0)")
    p.add_argument("--models", default=None, metavar="A,B,...",
                   help="compile: the models (CIFAR nets, darts_v2, supernet; default: resnet56, "
                        "hbnet56, densenet40, agdnet40, darts_v2, supernet)")
    p.add_argument("--batch", type=bounded("--batch", int, 1), default=None,
                   help="compile, rows: the batch of every model (compile default: 32 CIFAR nets, "
                        "16 darts_v2 on the CPU; rows default: the paper's)")
    p.add_argument("--steps", type=bounded("--steps", int, 1), default=None,
                   help="compile: timed rounds (default: 15 on the CPU, 3 with --quick); rows: "
                        "timed steps per kind (default 20)")
    p.add_argument("--only", action="append", default=None, metavar="KEY",
                   help="rows: only this kind of step (repeatable; e.g. train:resnet56, "
                        "search:darts:2, evaluate:cifar; default: every kind in the paper plan)")
    p.add_argument("--compile", default="on", metavar="SPEC",
                   help="compile: how the compiled variants compile (on, a torch.compile mode or "
                        "backend, e.g. aot_eager; default on)")
    p.add_argument("--warm-cache", action="store_true",
                   help="compile: reuse Inductor's on-disk caches (default: empty ones, so the "
                        "compile time is a first run's)")
    p.add_argument("--out", default=None, help="output folder (default: results/bench)")
    p.add_argument("--seed", type=bounded("--seed", int, 0, SEED_MAX), default=0)


def parse_pairs(items: list[str] | None, valid: list[str]) -> list[tuple[str, str]] | None:
    """``["resnet56:hbnet56", ...]`` checked against the model registry (None: the defaults)."""
    if not items:
        return None
    pairs = []
    for item in items:
        a, sep, b = item.partition(":")
        if not sep:
            raise CliError(f"--pair {item!r} is not BASELINE:VARIANT (e.g. resnet56:hbnet56)")
        for name in (a, b):
            if name not in valid:
                raise CliError(f"unknown model {name!r}; valid models: {', '.join(valid)}")
        pairs.append((a, b))
    return pairs


def run(args: argparse.Namespace) -> int:
    # deferred: torch and the models load only when a command needs them (a fast `optnb list`)
    from optnb import models
    from optnb.nas import bench as nas_bench
    from optnb.train import bench, memory

    # checked before minutes of timing: one line if the folder cannot be written
    out = ensure_dir(Path(args.out) if args.out else results_dir() / "bench", what="bench output folder",
                     options="--out")
    compile_only = [o for o, v in (("--models", args.models), ("--compile", args.compile != "on"),
                                   ("--warm-cache", args.warm_cache)) if v]
    if compile_only and args.suite != "compile":
        raise CliError(f"{', '.join(compile_only)}: use with --suite compile")
    sized = [o for o, v in (("--batch", args.batch), ("--steps", args.steps)) if v]
    if sized and args.suite not in ("compile", "rows"):
        raise CliError(f"{', '.join(sized)}: use with --suite compile or --suite rows")
    if args.only and args.suite != "rows":
        raise CliError("--only: use with --suite rows")
    if args.suite == "rows":
        from optnb.experiments import utilisation

        if args.batch is not None and args.batch < utilisation.MIN_BATCH:
            raise CliError(f"--batch {args.batch}: --suite rows needs a batch of at least "
                           f"{utilisation.MIN_BATCH} (the evaluation networks' BatchNorm)")

        try:
            report = utilisation.run(args.device, args.only or (), steps=args.steps or 20,
                                     batch=args.batch, peak_tflops=args.peak_tflops, seed=args.seed)
        except utilisation.UtilisationError as err:
            raise CliError(str(err)) from None
        for stem, text in (("rows-latest.json", json.dumps(report, indent=1) + "\n"),
                           ("rows-latest.md", utilisation.to_markdown(report))):
            write_text(out / stem, text)
        print(utilisation.to_markdown(report))
        print(f"wrote {out / 'rows-latest.json'} and {out / 'rows-latest.md'}")
        bad = utilisation.failed(report)
        for line in bad:
            print(f"optnb: failed: {line}", file=sys.stderr)
        return 1 if bad else 0
    if args.suite == "compile":
        from optnb.experiments import compile_bench

        report = compile_bench.run(args.device, args.quick, compile_bench.parse_models(args.models),
                                   spec=args.compile, batch=args.batch, steps=args.steps,
                                   seed=args.seed, cold_cache=not args.warm_cache)
        js, md = compile_bench.write(report, out)
        print(f"wrote {js} and {md}")
        bad = compile_bench.failed(report)
        for line in bad:
            print(f"optnb: failed: {line}", file=sys.stderr)
        return 1 if bad else 0
    if args.epoch and args.suite != "nas":
        raise CliError("--epoch times a NAS search epoch: use it with --suite nas")
    if args.suite == "memory":
        report = memory.run(args.device, args.quick, args.seed)
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "memory-latest.json", json.dumps(report, indent=1) + "\n")
        print(memory.error_markdown(report))
        print(f"wrote {out / 'memory-latest.json'}")
        return 0
    if (args.partial or args.space) and (args.suite != "nas" or args.epoch):
        raise CliError("--partial/--space compare partial channels: use them with --suite nas, "
                       "without --epoch")
    if args.suite == "nas":
        if args.partial:
            report = {"partial": [nas_bench.partial_channels(args.device, space, args.partial,
                                                             order=args.order, seed=args.seed)
                                  for space in (args.space or ["darts", "hb", "agd"])]}
            name = "nas-partial-latest.json"
        elif args.epoch:
            report = nas_bench.search_epoch(args.device, images=args.epoch_images, order=args.order,
                                            seed=args.seed)
            name = "nas-epoch-latest.json"
        else:
            report = nas_bench.run(args.device, order=args.order, seed=args.seed)
            name = "nas-latest.json" if args.order == 1 else f"nas-order{args.order}-latest.json"
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / name, json.dumps(report, indent=1) + "\n")
        print(f"wrote {out / name}")
        return 0
    pairs = parse_pairs(args.pair, models.names()) or bench.PAIRS
    report = bench.run(args.device, args.quick, pairs, args.seed, loader=not args.no_loader,
                       peak_tflops=args.peak_tflops, epoch_images=args.epoch_images)
    js, md = bench.write(report, out)
    print(bench.to_markdown(report))
    print(f"wrote {js} and {md}")
    return 0
