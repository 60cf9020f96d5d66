"""``optnb bench --suite rows``: the cost model's utilisation, measured (issue 11, item 4).

The dry run's GPU-hours are ``FLOPs per step x steps / (utilisation x peak)`` (``costs``); this
bench measures the utilisation. For each kind of step in the paper plan
(``rehearsal_sizing.key_of``: every Table 1/2 model, every search space and order, the CIFAR and
the ImageNet evaluation network) it builds the network and the step its run builds, with the
functions the run uses, at the paper's batch and resolution, and times ``steps`` training steps
after ``warmup`` on random device-resident batches:

    utilisation = FLOPs per step (``costs``, counted) / (median step seconds x dense bf16 peak)

The steps are the engine's on that device: bf16 autocast and channels_last on CUDA (the search:
its own precision, no channels_last), the recipe's fused SGD, the evaluation's auxiliary head and
drop path (at half its ramp), the search's architecture step of its order. Eager: the paper
profile compiles the ResNet and HBNet rows (``compiling.default_for``), which then run faster than
measured here. Not timed: loading and augmenting data (GPU-resident for CIFAR; the host's JPEG
decoding for ImageNet, which may bound those runs lower), held-out evaluations, and the first
``warmup`` steps (cuDNN's autotuning). Peak memory is the allocator's over the timed steps.

A ``batch`` smaller than the paper's times that batch instead (the CPU check of this code); the
FLOPs are then scaled by ``batch / paper batch`` (a step's counted FLOPs are linear in the batch:
tests/test_costs.py).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import torch

from optnb.experiments import costs, plans
from optnb.experiments.plans import PlannedRun
from optnb.experiments.rehearsal import TABLES
from optnb.experiments.rehearsal_sizing import MIN_BATCH, key_of, paper_network, paper_step
from optnb.experiments.targets import NB_CIFAR, NB_IMAGENET, NB_SEARCH
from optnb.nas.evaluate import drop_path_step, eval_optimizer
from optnb.nas.search import bilevel_step, make_architect
from optnb.seed import resolve_device
from optnb.train.engine import make_optimizer
from optnb.train.steps import ClassifierStep

__all__ = ["MIN_BATCH", "Timed", "UtilisationError", "build", "describe", "failed", "measure",
           "paper_runs", "run", "summary", "to_markdown"]


class UtilisationError(ValueError):
    """An unknown kind of step (the message names the valid ones)."""


@dataclass
class Timed:
    """One kind of step, built for timing: ``step(*batch)`` is one training step."""

    key: str
    kind: str                  # the cost model's kind (``costs.KINDS``)
    step: Callable[..., Any]
    batch: tuple[torch.Tensor, ...]
    paper_batch: int
    image_size: int
    flops_at_paper_batch: int


def paper_runs(only: Sequence[str] = ()) -> dict[str, PlannedRun]:
    """One run of the paper plan per kind of step (key), in plan order; ``only``: these keys."""
    plan = plans.build("paper", TABLES, 1, available=lambda _name: True)
    runs: dict[str, PlannedRun] = {}
    for run in plan.runs:
        try:
            runs.setdefault(key_of(run), run)
        except ValueError:  # a run the rehearsal does not size (no training step of its own)
            continue
    unknown = [k for k in only if k not in runs]
    if unknown:
        raise UtilisationError(f"unknown kind of step {unknown[0]!r}; valid: {', '.join(runs)}")
    return {k: r for k, r in runs.items() if not only or k in only}


def _images(batch: int, side: int, classes: int, device: torch.device, channels_last: bool,
            gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(batch, 3, side, side, generator=gen).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, classes, (batch,), generator=gen).to(device)


#: the cost model's kind of each notebook's step (evaluations: by network, below)
_KINDS = {NB_CIFAR: "cifar", NB_IMAGENET: "imagenet", NB_SEARCH: "search"}


def build(key: str, run: PlannedRun, device: torch.device, batch: int | None = None,
          seed: int = 0) -> Timed:
    """The step of ``run``'s kind on ``device`` at the paper's configuration
    (``rehearsal_sizing.paper_step``; ``batch``: the paper's unless given)."""
    cuda = device.type == "cuda"
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    setup = paper_step(run)
    cfg, n, side = setup.config, batch or setup.paper_batch, setup.image_size
    net = paper_network(setup).to(device)
    if run.notebook == NB_SEARCH:
        architect = make_architect(net, cfg, device)
        amp = cuda if cfg.bf16 is None else cfg.bf16
        bilevel = bilevel_step(net, architect, cfg, net, architect.weight_optimizer, amp, None)
        images = (*_images(n, side, setup.num_classes, device, False, gen),
                  *_images(n, side, setup.num_classes, device, False, gen))
        return Timed(key, "search", bilevel.update, images, setup.paper_batch, side, setup.flops_per_step)
    if cuda:
        net = net.to(memory_format=torch.channels_last)
    if run.notebook in (NB_CIFAR, NB_IMAGENET):
        step: ClassifierStep = ClassifierStep(net, make_optimizer(net, cfg.recipe, device), amp=cuda)
        kind = _KINDS[run.notebook]
    else:
        net.drop_path_generator = torch.Generator(device=device).manual_seed(seed)
        step = drop_path_step(net, cfg, net, eval_optimizer(net, cfg), cuda if cfg.bf16 is None else cfg.bf16)
        step.start_epoch(cfg.epochs // 2)  # drop path halfway up its ramp
        kind = "transfer" if cfg.network == "imagenet" else "evaluate"
    return Timed(key, kind, step, _images(n, side, setup.num_classes, device, cuda, gen), setup.paper_batch,
                 side, setup.flops_per_step)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(timed: Timed, device: torch.device, warmup: int, steps: int, peak_tflops: float | None,
            clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Median step seconds of ``timed`` and the utilisation of ``peak_tflops`` they imply."""
    cuda = device.type == "cuda"
    for _ in range(warmup):
        timed.step(*timed.batch)
    _sync(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps):
        t0 = clock()
        timed.step(*timed.batch)
        _sync(device)
        times.append(clock() - t0)
    batch = len(timed.batch[1])
    flops = timed.flops_at_paper_batch * batch / timed.paper_batch
    median = statistics.median(times)
    out: dict[str, Any] = {
        "key": timed.key, "kind": timed.kind, "batch": batch, "paper_batch": timed.paper_batch,
        "image_size": timed.image_size, "flops_per_step": flops, "step_s": median,
        "step_s_min": min(times), "step_s_max": max(times), "images_per_s": batch / median,
        "achieved_tflops": flops / median / 1e12,
    }
    if peak_tflops:
        out["utilisation"] = flops / (median * peak_tflops * 1e12)
    if cuda:
        out["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def run(device: str = "auto", only: Sequence[str] = (), warmup: int = 5, steps: int = 20,
        batch: int | None = None, peak_tflops: float | None = None, seed: int = 0,
        log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Measure every kind of step of the paper plan (``only``: these keys); a JSON-able report
    with a per-kind summary (median, min and max utilisation over that kind's steps)."""
    if batch is not None and batch < MIN_BATCH:
        raise UtilisationError(f"batch {batch} is too small; the evaluation networks' BatchNorm "
                               f"needs at least {MIN_BATCH}")
    dev = resolve_device(device)
    runs = paper_runs(only)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(dev)
        peak = peak_tflops or next((v for k, v in costs.PEAK_BF16_TFLOPS.items() if k in name), None)
    else:
        name, peak = "cpu", peak_tflops
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "device": name,
        "peak_bf16_tflops": peak, "torch": torch.__version__, "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(), "warmup": warmup, "steps": steps, "batch": batch,
        "precision": "bf16 autocast, channels_last (search: no channels_last), eager" if cuda
                     else "fp32, eager", "rows": [],
    }
    for key, planned in runs.items():
        t0 = time.perf_counter()
        try:
            row = measure(build(key, planned, dev, batch, seed), dev, warmup, steps, peak)
        except Exception as err:  # noqa: BLE001 -- one failed step must not cost the others' numbers
            first = (str(err).strip().splitlines() or [""])[0][:300]
            row = {"key": key, "error": f"{type(err).__name__}: {first}"}
        if cuda:
            torch.cuda.empty_cache()
        row["wall_s"] = time.perf_counter() - t0
        report["rows"].append(row)
        if log is not None:
            log(describe(row))
    report["kinds"] = summary(report["rows"])
    return report


def failed(report: dict[str, Any]) -> list[str]:
    """``key: error`` of every step that could not be measured."""
    return [f"{r['key']}: {r['error']}" for r in report["rows"] if "error" in r]


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per cost-model kind: how many steps were measured and their median, min and max
    utilisation (where a peak was known)."""
    out: dict[str, dict[str, Any]] = {}
    for kind in costs.KINDS:
        shares = [r["utilisation"] for r in rows if r.get("kind") == kind and "utilisation" in r]
        if shares:
            out[kind] = {"measured": len(shares), "median": statistics.median(shares),
                         "min": min(shares), "max": max(shares)}
    return out


def describe(row: dict[str, Any]) -> str:
    """One line per measured step."""
    if "error" in row:
        return f"{row['key']}: {row['error']}"
    share = f", utilisation {100 * row['utilisation']:.1f} %" if "utilisation" in row else ""
    return (f"{row['key']}: batch {row['batch']} at {row['image_size']} px, "
            f"{1e3 * row['step_s']:.1f} ms/step, {row['flops_per_step'] / 1e9:.0f} GFLOP/step, "
            f"{row['achieved_tflops']:.1f} TFLOP/s{share}")


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown (what ``benchmarks/RESULTS.md`` quotes)."""
    lines = [f"Measured {report['date']} on {report['device']} (torch {report['torch']}, "
             f"{report['precision']}), peak {report['peak_bf16_tflops']} TFLOP/s dense bf16, median "
             f"of {report['steps']} steps after {report['warmup']} warm-up, random device-resident "
             "batches.", "",
             "| step | batch | px | ms/step | GFLOP/step | TFLOP/s | utilisation | peak MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        if "error" in r:
            lines.append(f"| {r['key']} | {r['error']} | | | | | | |")
            continue
        share = f"{100 * r['utilisation']:.2f} %" if "utilisation" in r else "n/a"
        mib = f"{r['peak_mib']:.0f}" if "peak_mib" in r else "n/a"
        lines.append(f"| {r['key']} | {r['batch']} | {r['image_size']} | {1e3 * r['step_s']:.1f} | "
                     f"{r['flops_per_step'] / 1e9:.1f} | {r['achieved_tflops']:.2f} | {share} | {mib} |")
    if report.get("kinds"):
        lines += ["", "| kind | steps measured | utilisation median (min-max) |", "|---|---|---|"]
        for kind, s in report["kinds"].items():
            lines.append(f"| {kind} | {s['measured']} | {100 * s['median']:.2f} % "
                         f"({100 * s['min']:.2f}-{100 * s['max']:.2f} %) |")
    return "\n".join(lines) + "\n"
