"""``optnb bench``: training throughput of each model pair side by side, and the engine's loader.

For every pair (ResNet-56 / HBNet-56, DenseNet-40 / AGDNet-40 by default) the two models train
on the same random batches, one step of each in turn (the order alternates), and the report gives
median step times, images/s and the median of the per-pair step-time ratios -- the only CPU
statistic that is stable on shared machines (docs/performance.md). On CUDA it adds peak
memory, a timed engine epoch (GPU-resident data, bf16 autocast, channels_last; the second of two
epochs, so warm-up is excluded) and model FLOP utilisation (MFU = 6 x MACs x images/s / peak
bf16 FLOP/s; backward counted as twice the forward). A second section compares the engine's
images/s (``GpuLoader`` + ``fit``) with a plain torchvision ``DataLoader`` loop on the same model.

Targets (CPU, reported, never gated in tests): HBNet-56/ResNet-56 <= 1.10, AGDNet-40/DenseNet-40
<= 1.15. Results: JSON + Markdown under ``results/bench/`` (``--out`` to change).
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from optnb import data, models
from optnb.devices import PEAK_BF16_TFLOPS
from optnb.seed import resolve_device
from optnb.train import recipes
from optnb.train.engine import FitOptions, fit, make_optimizer
from optnb.train.steps import ClassifierStep

PAIRS = (("resnet56", "hbnet56"), ("densenet40", "agdnet40"))
CPU_TARGETS = {"hbnet56/resnet56": 1.10, "agdnet40/densenet40": 1.15}



class BenchError(ValueError):
    """Bad bench option (unknown model, suite, pair syntax)."""


@dataclass(frozen=True)
class Sizes:
    batch: int
    warmup: int
    steps: int
    loader_steps: int      # steps per round in the engine-vs-DataLoader comparison
    loader_rounds: int
    epoch_images: int      # CUDA: images per timed engine epoch
    loader_model: str


def sizes_for(device: torch.device, quick: bool) -> Sizes:
    if device.type == "cuda":
        return Sizes(batch=64, warmup=20, steps=50 if quick else 100, loader_steps=100,
                     loader_rounds=3, epoch_images=50_000, loader_model="resnet56")
    if quick:  # a couple of minutes on 2 CPU cores
        return Sizes(batch=32, warmup=2, steps=12, loader_steps=8, loader_rounds=5,
                     epoch_images=0, loader_model="resnet20")
    return Sizes(batch=64, warmup=5, steps=30, loader_steps=20, loader_rounds=5,
                 epoch_images=0, loader_model="resnet56")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stepper(name: str, device: torch.device, seed: int) -> ClassifierStep:
    """The engine's own training step for ``name``, with its settings for the device."""
    torch.manual_seed(seed)
    cuda = device.type == "cuda"
    model = models.build(name).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    return ClassifierStep(model, make_optimizer(model, recipes.get("densenet_cifar"), device), amp=cuda)


def _batches(n: int, batch: int, device: torch.device, seed: int) -> list[tuple[torch.Tensor, ...]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randn(batch, 3, 32, 32, generator=gen).to(device)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        out.append((x, torch.randint(0, 10, (batch,), generator=gen).to(device)))
    return out


def _peak_mib(stepper: ClassifierStep, batch: tuple[torch.Tensor, ...], device: torch.device,
              steps: int = 3) -> float:
    torch.cuda.reset_peak_memory_stats(device)
    for _ in range(steps):
        stepper(*batch)
    _sync(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


@functools.lru_cache(maxsize=1)
def _synthetic(images: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    return data.load("synthetic", num_samples=images, seed=seed)


def _engine_epoch(name: str, device: torch.device, images: int, batch: int, seed: int
                  ) -> dict[str, float]:
    """Seconds and images/s of the second of two engine epochs on ``images`` synthetic images."""
    x, y = _synthetic(images, seed)
    loader = data.make_loader("synthetic", x, y, batch, device=device, channels_last=True)
    torch.manual_seed(seed)
    model = models.build(name)
    recipe = recipes.get("densenet_cifar").replace(epochs=2)
    result = fit(model, loader, recipe, device=device,
                 options=FitOptions(checkpoint=False, log_every=0, check_every=10**9))
    last = result.history[-1]
    return {"epoch_s": last["epoch_s"], "epoch_images_per_s": last["images_per_s"]}


def _peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def bench_pair(a: str, b: str, device: torch.device, sizes: Sizes, seed: int = 0,
               peak_tflops: float | None = None) -> dict[str, Any]:
    """Interleaved A/B training steps; medians, ratio ``b/a``, and on CUDA memory/epoch/MFU."""
    steppers = {a: _stepper(a, device, seed), b: _stepper(b, device, seed)}
    batches = _batches(min(sizes.warmup + sizes.steps, 8), sizes.batch, device, seed + 1)
    times: dict[str, list[float]] = {a: [], b: []}
    for i in range(sizes.warmup + sizes.steps):
        order = (a, b) if i % 2 == 0 else (b, a)
        for name in order:
            x, y = batches[i % len(batches)]
            _sync(device)
            t0 = time.perf_counter()
            steppers[name](x, y)
            _sync(device)
            if i >= sizes.warmup:
                times[name].append(time.perf_counter() - t0)
    ratios = [tb / ta for ta, tb in zip(times[a], times[b])]
    out: dict[str, Any] = {"a": a, "b": b, "ratio": statistics.median(ratios),
                           "ratio_min": min(ratios), "ratio_max": max(ratios)}
    for key, name in (("a", a), ("b", b)):
        med = statistics.median(times[name])
        info = models.measure(name)
        out[key + "_step_s"] = med
        out[key + "_step_iqr_s"] = _iqr(times[name])
        out[key + "_images_per_s"] = sizes.batch / med
        out[key + "_params"] = info["params"]
        out[key + "_macs"] = info["macs"]
    target = CPU_TARGETS.get(f"{b}/{a}")
    if target is not None:
        out["cpu_target"] = target
    if device.type == "cuda":
        peak = _peak_tflops(device, peak_tflops)
        out["peak_bf16_tflops"] = peak
        for key, name in (("a", a), ("b", b)):
            out[key + "_peak_mib"] = _peak_mib(steppers[name], batches[0], device)
        del steppers
        torch.cuda.empty_cache()
        for key, name in (("a", a), ("b", b)):
            if sizes.epoch_images:
                ep = _engine_epoch(name, device, sizes.epoch_images, sizes.batch, seed)
                out[key + "_epoch_s"] = ep["epoch_s"]
                out[key + "_epoch_images_per_s"] = ep["epoch_images_per_s"]
            if peak:
                rate = out.get(key + "_epoch_images_per_s", out[key + "_images_per_s"])
                out[key + "_mfu"] = 6 * out[key + "_macs"] * rate / (peak * 1e12)
    return out


def _iqr(values: Sequence[float]) -> float:
    if len(values) < 4:
        return 0.0
    q = statistics.quantiles(values, n=4)
    return q[2] - q[0]


def engine_vs_dataloader(model: str, device: torch.device, sizes: Sizes, seed: int = 0
                         ) -> dict[str, Any]:
    """images/s of the engine (``GpuLoader`` + ``fit``) and of a plain torchvision
    ``DataLoader`` loop (per-sample v2 transforms: crop, flip, normalise), same model and batch,
    alternating rounds of ``loader_steps`` steps."""
    n = sizes.batch * sizes.loader_steps
    x, y = data.load("synthetic", num_samples=n, seed=seed)
    mean, std = data.MEAN["synthetic"], data.STD["synthetic"]
    recipe = recipes.get("densenet_cifar").replace(epochs=10**6)
    transform = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(),
                            v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])

    class _Set(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return n

        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            return transform(x[i]), y[i]

    torch.manual_seed(seed)
    engine_model, plain_model = models.build(model).to(device), models.build(model).to(device)
    plain_opt = make_optimizer(plain_model, recipe, device)
    engine_loader = data.GpuLoader(x, y, sizes.batch, device, seed=seed, mean=mean, std=std)
    plain_loader = torch.utils.data.DataLoader(_Set(), batch_size=sizes.batch, shuffle=True,
                                               drop_last=True, num_workers=0,
                                               pin_memory=device.type == "cuda")
    engine_rates, plain_rates = [], []
    for _ in range(sizes.loader_rounds):
        res = fit(engine_model, engine_loader, recipe, device=device,
                  options=FitOptions(epochs=10**6, stop_after=1, checkpoint=False, log_every=0,
                                     amp=False, channels_last=False))
        engine_rates.append(res.history[-1]["images_per_s"])
        _sync(device)
        t0, seen = time.perf_counter(), 0
        plain_model.train()
        for xb, yb in plain_loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            loss = F.cross_entropy(plain_model(xb), yb)
            plain_opt.zero_grad(set_to_none=True)
            loss.backward()
            plain_opt.step()
            seen += len(yb)
        _sync(device)
        plain_rates.append(seen / (time.perf_counter() - t0))
    ratios = [e / p for e, p in zip(engine_rates, plain_rates)]
    return {"model": model, "engine_images_per_s": statistics.median(engine_rates),
            "dataloader_images_per_s": statistics.median(plain_rates),
            "engine_over_dataloader": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios),
            "engine_rates": engine_rates, "dataloader_rates": plain_rates,
            "rounds": sizes.loader_rounds, "steps_per_round": sizes.loader_steps}


def run(device: str = "auto", quick: bool = False, pairs: Sequence[tuple[str, str]] = PAIRS,
        seed: int = 0, loader: bool = True, peak_tflops: float | None = None,
        epoch_images: int | None = None, quiet: bool = False) -> dict[str, Any]:
    """Benchmark ``pairs`` (and the loader comparison); returns a JSON-able report."""
    dev = resolve_device(device)
    sizes = sizes_for(dev, quick)
    if epoch_images is not None:
        sizes = Sizes(**{**asdict(sizes), "epoch_images": epoch_images})
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "quick": quick, "sizes": asdict(sizes),
        "precision": "bf16 autocast, channels_last" if dev.type == "cuda" else "fp32",
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "pairs": [],
    }
    for a, b in pairs:
        t0 = time.perf_counter()
        row = bench_pair(a, b, dev, sizes, seed, peak_tflops)
        row["wall_s"] = time.perf_counter() - t0
        report["pairs"].append(row)
        if not quiet:
            print(f"{b}/{a}: step-time ratio {row['ratio']:.3f} "
                  f"({row['a_images_per_s']:.1f} vs {row['b_images_per_s']:.1f} img/s)", flush=True)
    if loader:
        report["loader"] = engine_vs_dataloader(sizes.loader_model, dev, sizes, seed)
        if not quiet:
            r = report["loader"]
            print(f"engine/DataLoader on {r['model']}: {r['engine_over_dataloader']:.3f}", flush=True)
    return report


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables (what ``benchmarks/RESULTS.md`` quotes)."""
    s = report["sizes"]
    cuda = report["device"] != "cpu"
    lines = [
        f"Measured {report['date']} on {report['device']} ({report['threads']} threads, "
        f"torch {report['torch']}, {report['precision']}), batch {s['batch']}, "
        f"{s['steps']} interleaved steps per model after {s['warmup']} warm-up"
        + (f", load average {report['loadavg'][0]:.1f}" if report.get("loadavg") else "") + ".",
        "",
        "| pair (B/A) | A img/s | B img/s | A ms/step | B ms/step | ratio B/A (median, min-max) "
        "| CPU target |" + (" peak MiB A/B | epoch s A/B | MFU A/B |" if cuda else ""),
        "|---|---|---|---|---|---|---|" + ("---|---|---|" if cuda else ""),
    ]
    for r in report["pairs"]:
        target = r.get("cpu_target")
        ok = "" if target is None or cuda else (" (met)" if r["ratio"] <= target else " (missed)")
        row = (f"| {r['b']}/{r['a']} | {r['a_images_per_s']:.1f} | {r['b_images_per_s']:.1f} | "
               f"{1e3 * r['a_step_s']:.1f} | {1e3 * r['b_step_s']:.1f} | {r['ratio']:.3f} "
               f"({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) | "
               f"{'' if target is None else f'<= {target:.2f}'}{ok} |")
        if cuda:
            ep = (f"{r.get('a_epoch_s', float('nan')):.2f} / {r.get('b_epoch_s', float('nan')):.2f}")
            mfu = (f"{100 * r['a_mfu']:.1f} % / {100 * r['b_mfu']:.1f} %" if "a_mfu" in r else "n/a")
            row += f" {r['a_peak_mib']:.0f} / {r['b_peak_mib']:.0f} | {ep} | {mfu} |"
        lines.append(row)
    if "loader" in report:
        r = report["loader"]
        lines += ["", "| model | engine img/s (GpuLoader + fit) | torchvision DataLoader loop img/s "
                      "| engine / DataLoader (median of rounds, min-max) |", "|---|---|---|---|",
                  f"| {r['model']} | {r['engine_images_per_s']:.1f} | "
                  f"{r['dataloader_images_per_s']:.1f} | {r['engine_over_dataloader']:.3f} "
                  f"({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) |",
                  "", f"({r['rounds']} alternating rounds of {r['steps_per_round']} steps, "
                      "medians; DataLoader with num_workers=0 and per-sample v2 transforms)"]
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """``bench-<stamp>.json/.md`` plus ``latest.json/.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = report["date"].replace(":", "").replace("-", "")[:15]
    js, md = json.dumps(report, indent=1) + "\n", to_markdown(report)
    for stem in (f"bench-{stamp}", "latest"):
        (out / f"{stem}.json").write_text(js)
        (out / f"{stem}.md").write_text(md)
    return out / f"bench-{stamp}.json", out / f"bench-{stamp}.md"
