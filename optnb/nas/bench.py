"""Search-step benchmark: the DARTS-style naive step against the optimised one, interleaved.

naive      per-edge mixed ops that also compute ``none``; the arch step calls
           ``loss.backward()`` (weight grads too); the weight step builds the softmax graph; fp32.
optimised  mixed ops batched per source state (``grouped.py``), ``none`` skipped, the arch step
           asks autograd for the alpha grads only, the weight step detaches the alphas; bf16
           autocast on CUDA (fp32 on CPU).

Both start from identical weights and see the same random batches. Steps alternate A/B in one
process and the report gives medians and the median of the per-pair ratios (only interleaved
ratios are stable on shared machines). ``epoch_s`` extrapolates to the paper's epoch (25,000
training images at batch 64 = 390 steps). Data loading is not timed (it is GPU-resident).

:func:`search_epoch` times the real thing instead: one epoch of ``optnb.nas.search.search`` at the
paper's size (50,000 random GPU-resident images split 25k/25k, batch 64, first order), training
steps and the validation pass, extrapolated to the 50-epoch search in GPU-days
(``optnb bench --suite nas --epoch``).

:func:`partial_channels` compares PC-DARTS's partial channels (K = 4) with the full supernet
(K = 1), both optimised, same sizes and batches, steps interleaved: the median per-pair ratio of
step time and the ratio of peak memory of one search step (the allocator's peak on CUDA,
``torch.profiler``'s allocation events on the CPU; ``optnb bench --suite nas --partial K``).
"""

from __future__ import annotations

import copy
import itertools
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from optnb.nas.architect import Architect
from optnb.nas.search import BilevelStep, SearchConfig, autocast_factory, search
from optnb.nas.spaces import SearchNetwork
from optnb.seed import resolve_device
from optnb.train import ClassifierStep

PAPER_STEPS_PER_EPOCH = 25_000 // 64


def search_step(model: SearchNetwork, optimised: bool, order: int, device: torch.device) -> BilevelStep:
    """The search's own step (``optnb.nas.search.BilevelStep``), configured as DARTS's code does
    it (naive) or as optnb does it (optimised)."""
    model.skip_none = optimised
    for cell in model.cells:
        cell.grouped = optimised
    w_opt = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(model.arch_parameters(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    precision = "auto" if optimised else "fp32"
    architect = Architect(model, a_opt, w_opt, order, fast=optimised,
                          autocast=autocast_factory(device, precision))
    amp = optimised and device.type == "cuda"
    weights = ClassifierStep(model, w_opt, amp=amp, grad_clip=5.0,
                             forward_kwargs={"detach_arch": optimised})
    return BilevelStep(model, architect, weights, val=None, derive_rule="auto")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _sizes(gpu: bool, C: int | None, layers: int | None, batch_size: int | None, image_size: int | None,
           steps: int | None) -> tuple[int, int, int, int, int]:
    """The given sizes, else the paper's search net on CUDA (C=16, 8 cells, batch 64, 32 px, 20
    steps) and a CI-sized one on the CPU (C=4, 3 cells, batch 8, 16 px, 5 steps)."""
    return (C or (16 if gpu else 4), layers or (8 if gpu else 3), batch_size or (64 if gpu else 8),
            image_size or (32 if gpu else 16), steps or (20 if gpu else 5))


def _random_batch(gen: torch.Generator, batch_size: int, image_size: int, dev: torch.device) -> list[torch.Tensor]:
    """A training and a validation batch of random images and labels (what ``update`` takes)."""
    return [torch.randn(batch_size, 3, image_size, image_size, generator=gen).to(dev),
            torch.randint(0, 10, (batch_size,), generator=gen).to(dev),
            torch.randn(batch_size, 3, image_size, image_size, generator=gen).to(dev),
            torch.randint(0, 10, (batch_size,), generator=gen).to(dev)]


def run(device: str = "auto", space: str = "darts", order: int = 1, C: int | None = None,
        layers: int | None = None, batch_size: int | None = None, image_size: int | None = None,
        steps: int | None = None, warmup: int = 2, seed: int = 0, quiet: bool = False
        ) -> dict[str, Any]:
    """Time ``steps`` interleaved search steps of both variants; returns a JSON-able report.

    Sizes default to the paper's search net (C=16, 8 cells, batch 64, 32px) on CUDA and to a
    small one (C=4, 3 cells, batch 8, 16px, 5 steps) on CPU, sized for CI.
    """
    dev = resolve_device(device)
    gpu = dev.type == "cuda"
    C, layers, batch_size, image_size, steps = _sizes(gpu, C, layers, batch_size, image_size, steps)
    torch.manual_seed(seed)
    base = SearchNetwork(space, C=C, layers=layers)
    base.init_arch("random", generator=torch.Generator().manual_seed(seed))
    variants = {"naive": search_step(copy.deepcopy(base).to(dev), False, order, dev),
                "optimised": search_step(copy.deepcopy(base).to(dev), True, order, dev)}
    times: dict[str, list[float]] = {k: [] for k in variants}
    memory: dict[str, float] = {}
    gen = torch.Generator(device="cpu").manual_seed(seed + 1)
    for i in range(warmup + steps):
        batch = _random_batch(gen, batch_size, image_size, dev)
        for name, stepper in variants.items():
            if gpu:
                torch.cuda.reset_peak_memory_stats(dev)
            _sync(dev)
            t0 = time.perf_counter()
            stepper.update(*batch)
            _sync(dev)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
            if gpu:
                memory[name] = torch.cuda.max_memory_allocated(dev) / 2**20
    ratios = [a / b for a, b in zip(times["naive"], times["optimised"])]
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(dev) if gpu else "cpu",
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "space": space, "order": order, "C": C, "layers": layers, "batch_size": batch_size,
        "image_size": image_size, "steps": steps, "warmup": warmup,
        "precision_optimised": "bf16 autocast" if gpu else "fp32",
    }
    for name in variants:
        med = statistics.median(times[name])
        report[f"{name}_step_s"] = med
        report[f"{name}_epoch_s"] = med * PAPER_STEPS_PER_EPOCH
        if name in memory:
            report[f"{name}_peak_mib"] = memory[name]
    report["speedup_median_pair"] = statistics.median(ratios)
    if not quiet:
        print(format_report(report))
    return report


def format_report(r: dict[str, Any]) -> str:
    lines = [f"NAS search step, {r['space']} space, order {r['order']}, C={r['C']}, "
             f"{r['layers']} cells, batch {r['batch_size']}, {r['image_size']}px, on "
             f"{r['device']} ({r['steps']} interleaved steps after {r['warmup']} warm-up)",
             f"{'variant':<10} {'s/step':>9} {'s/epoch (390 steps)':>20} {'peak MiB':>9}"]
    for name in ("naive", "optimised"):
        mem = r.get(f"{name}_peak_mib")
        lines.append(f"{name:<10} {r[f'{name}_step_s']:>9.4f} {r[f'{name}_epoch_s']:>20.1f} "
                     f"{'' if mem is None else f'{mem:9.0f}'}")
    lines.append(f"speed-up (median of per-pair ratios): {r['speedup_median_pair']:.2f}x")
    return "\n".join(lines)


def search_epoch(device: str = "auto", images: int | None = None, space: str = "darts",
                 order: int = 1, C: int | None = None, layers: int | None = None,
                 batch_size: int | None = None, epochs: int = 50, seed: int = 0,
                 quiet: bool = False) -> dict[str, Any]:
    """Time one epoch of the real search (``search`` with ``epochs_limit=1``); a JSON-able report.

    ``images`` random uint8 32 px images are split in halves (train / validation) as the search
    does. The first epoch includes warm-up (cuDNN autotuning, allocator growth), so the
    extrapolation to ``epochs`` epochs is an upper bound. Sizes default to the paper's (50,000
    images, C=16, 8 cells, batch 64) on CUDA and to a small setting (512 images, C=4, 3 cells,
    batch 8) on the CPU.
    """
    dev = resolve_device(device)
    gpu = dev.type == "cuda"
    images = images or (50_000 if gpu else 512)
    cfg = SearchConfig(space=space, order=order, C=C or (16 if gpu else 4),
                       layers=layers or (8 if gpu else 3), batch_size=batch_size or (64 if gpu else 8),
                       epochs=epochs, epochs_limit=1, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (images, 3, 32, 32), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 10, (images,), generator=gen)
    if gpu:
        torch.cuda.reset_peak_memory_stats(dev)
    result = search(cfg, x, y, dev, "synthetic")
    last = result.history[-1]
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(dev) if gpu else "cpu",
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "space": space, "order": order, "C": cfg.C, "layers": cfg.layers,
        "batch_size": cfg.batch_size, "images": images, "steps": last["step"],
        "precision": "bf16 autocast" if gpu else "fp32",
        "epoch_s": last["epoch_s"], "step_s": last["epoch_s"] / max(last["step"], 1),
        "wall_s": last["wall_s"], "val_s": last["wall_s"] - last["epoch_s"],
        "epochs": epochs, "search_gpu_days": epochs * last["wall_s"] / 86400,
    }
    if gpu:
        report["peak_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
    if not quiet:
        print(format_epoch(report))
    return report


def format_epoch(r: dict[str, Any]) -> str:
    """:func:`search_epoch`'s report as a few lines of text."""
    mem = f", peak {r['peak_mib']:.0f} MiB" if "peak_mib" in r else ""
    return "\n".join([
        f"NAS search epoch, {r['space']} space, order {r['order']}, C={r['C']}, {r['layers']} cells, "
        f"batch {r['batch_size']}, {r['images']} images (half train, half val), {r['precision']}, "
        f"on {r['device']}",
        f"{r['steps']} steps in {r['epoch_s']:.1f} s ({r['step_s']:.4f} s/step), validation "
        f"{r['val_s']:.1f} s, epoch {r['wall_s']:.1f} s{mem}",
        f"{r['epochs']}-epoch search: {r['search_gpu_days']:.3f} GPU-days (first epoch x "
        f"{r['epochs']}, warm-up included)"])


def peak_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """Peak memory ``fn()`` allocates above what was allocated before it: the allocator's peak on
    CUDA, the running sum of ``torch.profiler``'s allocation events on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
              and e.device_type() == torch.autograd.DeviceType.CPU]
    events.sort(key=lambda e: e.start_ns())
    return max(itertools.accumulate((e.nbytes() for e in events), initial=0))


def partial_channels(device: str = "auto", space: str = "darts", k: int = 4, order: int = 1,
                     C: int | None = None, layers: int | None = None, batch_size: int | None = None,
                     image_size: int | None = None, steps: int | None = None, warmup: int = 2,
                     seed: int = 0, quiet: bool = False) -> dict[str, Any]:
    """PC-DARTS's K against the full supernet, interleaved; a JSON-able report of medians and
    ratios (``full / partial``: above 1 means partial channels are cheaper). Default sizes as
    :func:`run` (paper's on CUDA, C=4, 3 cells, batch 8, 16 px on the CPU); PC-DARTS's edge
    normalisation is on in both (``edge``; agd keeps ``path``, its eq. (20))."""
    dev = resolve_device(device)
    gpu = dev.type == "cuda"
    C, layers, batch_size, image_size, steps = _sizes(gpu, C, layers, batch_size, image_size, steps)
    mode = "path" if space == "agd" else "edge"
    variants: dict[str, BilevelStep] = {}
    for name, kk in (("full", 1), ("partial", k)):
        torch.manual_seed(seed)
        net = SearchNetwork(space, C=C, layers=layers, partial_channels=kk, edge_normalization=mode)
        net.init_arch("random", generator=torch.Generator().manual_seed(seed))
        variants[name] = search_step(net.to(dev), True, order, dev)
    times: dict[str, list[float]] = {n: [] for n in variants}
    gen = torch.Generator(device="cpu").manual_seed(seed + 1)
    for i in range(warmup + steps):
        b = _random_batch(gen, batch_size, image_size, dev)
        for name, stepper in variants.items():
            _sync(dev)
            t0 = time.perf_counter()
            stepper.update(*b)
            _sync(dev)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    b = _random_batch(gen, batch_size, image_size, dev)
    peaks = {name: peak_bytes(lambda s=stepper: s.update(*b), dev) for name, stepper in variants.items()}
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(dev) if gpu else "cpu",
        "threads": torch.get_num_threads(), "torch": torch.__version__, "space": space, "k": k,
        "edge_normalization": mode, "order": order, "C": C, "layers": layers,
        "batch_size": batch_size, "image_size": image_size, "steps": steps, "warmup": warmup,
        "precision": "bf16 autocast" if gpu else "fp32",
    }
    for name in variants:
        report[f"{name}_step_s"] = statistics.median(times[name])
        report[f"{name}_peak_mib"] = peaks[name] / 2**20
    report["time_ratio_median_pair"] = statistics.median(
        a / b for a, b in zip(times["full"], times["partial"]))
    report["memory_ratio"] = peaks["full"] / max(peaks["partial"], 1)
    if not quiet:
        print(format_partial(report))
    return report


def format_partial(r: dict[str, Any]) -> str:
    """:func:`partial_channels`'s report as a few lines of text."""
    lines = [f"NAS search step, partial channels K={r['k']} vs full, {r['space']} space "
             f"(edge normalisation {r['edge_normalization']}), order {r['order']}, C={r['C']}, "
             f"{r['layers']} cells, batch {r['batch_size']}, {r['image_size']}px, {r['precision']}, "
             f"on {r['device']} ({r['threads']} threads; {r['steps']} interleaved steps after "
             f"{r['warmup']} warm-up)",
             f"{'variant':<8} {'s/step':>9} {'peak MiB':>9}"]
    for name in ("full", "partial"):
        lines.append(f"{name:<8} {r[f'{name}_step_s']:>9.4f} {r[f'{name}_peak_mib']:>9.1f}")
    lines.append(f"full / partial: time {r['time_ratio_median_pair']:.2f}x (median of per-pair "
                 f"ratios), peak memory {r['memory_ratio']:.2f}x")
    return "\n".join(lines)
