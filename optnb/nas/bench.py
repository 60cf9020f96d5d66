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
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from optnb.nas.architect import Architect
from optnb.nas.search import autocast_factory
from optnb.nas.spaces import SearchNetwork

PAPER_STEPS_PER_EPOCH = 25_000 // 64


class _Stepper:
    """One search step (arch step, then weight step) of one variant."""

    def __init__(self, model: SearchNetwork, optimised: bool, order: int,
                 device: torch.device) -> None:
        self.model, self.optimised = model, optimised
        model.skip_none = optimised
        for cell in model.cells:
            cell.grouped = optimised
        self.w_opt = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9,
                                     weight_decay=3e-4)
        a_opt = torch.optim.Adam(model.arch_parameters(), lr=3e-4, betas=(0.5, 0.999),
                                 weight_decay=1e-3)
        self.autocast = autocast_factory(device, "auto" if optimised else "fp32")
        self.architect = Architect(model, a_opt, self.w_opt, order, fast=optimised,
                                   autocast=self.autocast)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor,
                 yv: torch.Tensor) -> None:
        self.architect.step(x, y, xv, yv)
        with self.autocast():
            logits = self.model(x, detach_arch=self.optimised)
        loss = F.cross_entropy(logits.float(), y)
        self.w_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.weight_parameters(), 5.0)
        self.w_opt.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(device: str = "auto", space: str = "darts", order: int = 1, C: int | None = None,
        layers: int | None = None, batch_size: int | None = None, image_size: int | None = None,
        steps: int | None = None, warmup: int = 2, seed: int = 0, quiet: bool = False
        ) -> dict[str, Any]:
    """Time ``steps`` interleaved search steps of both variants; returns a JSON-able report.

    Sizes default to the paper's search net (C=16, 8 cells, batch 64, 32px) on CUDA and to a
    small one (C=4, 3 cells, batch 8, 16px, 5 steps) on CPU, sized for CI.
    """
    from optnb.seed import resolve_device

    dev = resolve_device(device)
    gpu = dev.type == "cuda"
    C = C or (16 if gpu else 4)
    layers = layers or (8 if gpu else 3)
    batch_size = batch_size or (64 if gpu else 8)
    image_size = image_size or (32 if gpu else 16)
    steps = steps or (20 if gpu else 5)
    torch.manual_seed(seed)
    base = SearchNetwork(space, C=C, layers=layers)
    base.init_arch("random", generator=torch.Generator().manual_seed(seed))
    variants = {"naive": _Stepper(copy.deepcopy(base).to(dev), False, order, dev),
                "optimised": _Stepper(copy.deepcopy(base).to(dev), True, order, dev)}
    times: dict[str, list[float]] = {k: [] for k in variants}
    memory: dict[str, float] = {}
    gen = torch.Generator(device="cpu").manual_seed(seed + 1)
    for i in range(warmup + steps):
        batch = [torch.randn(batch_size, 3, image_size, image_size, generator=gen).to(dev),
                 torch.randint(0, 10, (batch_size,), generator=gen).to(dev),
                 torch.randn(batch_size, 3, image_size, image_size, generator=gen).to(dev),
                 torch.randint(0, 10, (batch_size,), generator=gen).to(dev)]
        for name, stepper in variants.items():
            if gpu:
                torch.cuda.reset_peak_memory_stats(dev)
            _sync(dev)
            t0 = time.perf_counter()
            stepper(*batch)
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


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m optnb.nas.bench", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--space", default="darts", choices=("darts", "hb", "agd"))
    p.add_argument("--order", type=int, default=1, choices=(1, 2))
    for name in ("C", "layers", "batch-size", "steps"):
        p.add_argument(f"--{name}", type=int, default=None)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args(argv)
    try:
        report = run(args.device, args.space, args.order, args.C, args.layers, args.batch_size,
                     args.image_size, args.steps, quiet=args.json)
    except ValueError as err:
        print(f"optnb bench nas: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
    return 0



if __name__ == "__main__":
    sys.exit(main())
