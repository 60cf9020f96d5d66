"""``optnb bench --suite memory``: what the reversible HBNet stage saves, and what it costs.

HBNet with the momentum outside the closing ReLU (the literal eq. (10)) can be run backwards
inside a stage (:func:`optnb.models.reversible.reversible_hb_stage`), so its activation memory
should stay flat in the number of blocks ``n`` per stage while the ordinary network's grows
linearly. :func:`activation_memory` measures, for ``reversible=False`` and ``True`` side by side
at several depths ``6 n + 2``:

* the bytes of the tensors autograd saves for backward, counted exactly (distinct storages,
  parameters and buffers excluded) with :func:`torch.autograd.graph.saved_tensors_hooks`;
* the peak memory of one training step (forward + loss + backward) above what was allocated
  before it: ``torch.profiler`` allocation events on CPU, the allocator's peak on CUDA;
* the time per training step (median of interleaved steps; a ratio, not a gate).

:func:`gradient_error` measures the price in accuracy: the relative difference between the
reversible and the ordinary gradients, per ``beta`` and depth, in float64 and float32 (the
reconstruction divides by ``beta`` once per block, see :mod:`optnb.models.reversible`).
Rows are plain dicts; :func:`run` bundles both tables into a JSON-able report.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

from optnb import models
from optnb.seed import resolve_device

#: ``builder(depth, reversible=..., beta=...)`` -> a CIFAR-shaped classifier (3 x image x image)
Builder = Callable[..., nn.Module]
#: reversible gradients count as usable while their relative error against ordinary backprop (same
#: dtype) is at most USABLE_REL_ERR, or, below float64, at most FLOOR_FACTOR times the dtype's own
#: error (ordinary float32 against float64, already ~1e-3 for ResNet-56 at init with batch 8) --
#: and never above MAX_REL_ERR. Past the limit the error grows geometrically with depth anyway.
USABLE_REL_ERR = 1e-3
FLOOR_FACTOR = 10.0
MAX_REL_ERR = 0.1


@dataclass(frozen=True)
class MemorySizes:
    n: tuple[int, ...]          # blocks per stage (depth 6 n + 2) for the memory table
    batch: int
    image: int                  # side of the random input images
    width: int                  # channels of the first stage
    beta: float                 # the memory table's beta
    warmup: int                 # untimed steps per model
    steps: int                  # timed steps per model (interleaved)
    error_n: tuple[int, ...]    # depths of the gradient-error table
    error_betas: tuple[float, ...]
    error_batch: int


def sizes_for(quick: bool) -> MemorySizes:
    """The full table (n = 9 ... 144, depth 56 ... 866) or ``quick`` (n up to 36)."""
    n = (9, 18, 36) if quick else (9, 18, 36, 72, 144)
    return MemorySizes(n=n, batch=8, image=32, width=16, beta=0.5, warmup=1, steps=3 if quick else 5,
                       error_n=n, error_betas=(0.1, 0.3, 0.5, 0.9), error_batch=8)


def hbnet_outside(depth: int, *, reversible: bool, beta: float = 0.5, width: int = 16) -> nn.Module:
    """HBNet (10) with the momentum outside the closing ReLU, ordinary or reversible."""
    return models.build("hbnet", depth=depth, width=width, beta=beta, momentum="outside",
                        reversible=reversible)


def _pair(builder: Builder, depth: int, beta: float, seed: int) -> tuple[nn.Module, nn.Module]:
    """The ordinary and the reversible model with the same weights (and buffers)."""
    torch.manual_seed(seed)
    ordinary = builder(depth, reversible=False, beta=beta)
    reversible = builder(depth, reversible=True, beta=beta)
    reversible.load_state_dict(ordinary.state_dict())
    return ordinary.train(), reversible.train()


def _batch(batch: int, image: int, seed: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, image, image, generator=gen, dtype=torch.float64)
    return x.to(device, dtype), torch.randint(0, 10, (batch,), generator=gen).to(device)


def _step(model: nn.Module, x: Tensor, y: Tensor) -> None:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()


def saved_tensor_bytes(model: nn.Module, x: Tensor, y: Tensor) -> int:
    """Bytes of the distinct storages autograd saves for backward during ``model``'s forward and
    loss, parameters and buffers excluded (exact and deterministic). Backward then runs and frees
    them."""
    state = {t.untyped_storage().data_ptr() for t in itertools.chain(model.parameters(), model.buffers())}
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in state:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    return sum(seen.values())


def peak_step_bytes(model: nn.Module, x: Tensor, y: Tensor) -> int:
    """Peak memory of one training step (activations, workspaces and the gradients it allocates)
    above what was allocated before it (parameters, buffers, the batch; no gradients): the
    allocator's peak on CUDA, the running sum of ``torch.profiler``'s allocation events on CPU."""
    if x.device.type == "cuda":
        _step(model, x, y)  # warm-up: cuDNN autotuning and workspaces out of the measurement
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        base = torch.cuda.memory_allocated(x.device)
        _step(model, x, y)
        torch.cuda.synchronize(x.device)
        return torch.cuda.max_memory_allocated(x.device) - base
    # freed before profiling: the profiler does not see frees of blocks allocated before it started
    model.zero_grad(set_to_none=True)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _step(model, x, y)
    # the raw event list: the FunctionEvent view folds allocations into their operators
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
              and e.device_type() == torch.autograd.DeviceType.CPU]
    events.sort(key=lambda e: e.start_ns())
    return max(itertools.accumulate((e.nbytes() for e in events), initial=0))


def _step_seconds(models_: Sequence[nn.Module], x: Tensor, y: Tensor, warmup: int, steps: int) -> list[float]:
    """Median seconds per training step of each model, steps interleaved (drift hits all alike)."""
    cuda = x.device.type == "cuda"
    times: list[list[float]] = [[] for _ in models_]
    for i in range(warmup + steps):
        for j, model in enumerate(models_):
            if cuda:
                torch.cuda.synchronize(x.device)
            t0 = time.perf_counter()
            _step(model, x, y)
            if cuda:
                torch.cuda.synchronize(x.device)
            if i >= warmup:
                times[j].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def activation_memory(model_builder: Builder = hbnet_outside, n: Sequence[int] = (9, 18, 36, 72, 144), *,
                      batch: int = 8, image: int = 32, beta: float = 0.5, device: str | torch.device = "cpu",
                      seed: int = 0, warmup: int = 1, steps: int = 3,
                      dtype: torch.dtype = torch.float32, peak: bool = True) -> list[dict[str, Any]]:
    """One row per ``n`` (depth ``6 n + 2``): saved-tensor bytes, step peak bytes and ms per step
    for the ordinary and the reversible model (same weights, same batch) and their ratios.

    The step peak includes the parameter gradients allocated by backward (as many bytes as
    ``param_bytes``, which grows with depth for both models); the saved bytes are activations only.
    ``peak=False`` skips the peak (on CPU it runs ``torch.profiler``, which logs to stderr)."""
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    x, y = _batch(batch, image, seed, dev, dtype)
    rows = []
    for blocks in n:
        depth = 6 * blocks + 2
        pair = [m.to(dev, dtype) for m in _pair(model_builder, depth, beta, seed)]
        saved = [saved_tensor_bytes(m, x, y) for m in pair]
        peaks = [peak_step_bytes(m, x, y) for m in pair] if peak else [None, None]
        secs = _step_seconds(pair, x, y, warmup, steps)
        rows.append({
            "n": blocks, "depth": depth, "param_bytes": sum(p.nbytes for p in pair[0].parameters()),
            "ordinary_saved_bytes": saved[0], "reversible_saved_bytes": saved[1],
            "saved_ratio": saved[0] / saved[1],
            "ordinary_peak_bytes": peaks[0], "reversible_peak_bytes": peaks[1],
            "peak_ratio": peaks[0] / peaks[1] if peak else None,
            "ordinary_ms": 1e3 * secs[0], "reversible_ms": 1e3 * secs[1],
            "time_ratio": secs[1] / secs[0],
        })
        del pair
    return rows


def _grads(model: nn.Module, x: Tensor, y: Tensor) -> list[Tensor]:
    _step(model, x, y)
    return [p.grad.detach().clone() for p in model.parameters()]


def _rel_err(got: Sequence[Tensor], want: Sequence[Tensor]) -> tuple[float, float]:
    """(relative error of the whole gradient vector, worst relative error of one tensor)."""
    diff = torch.stack([(g.double() - w.double()).norm() for g, w in zip(got, want)])
    norm = torch.stack([w.double().norm() for w in want])
    whole = (diff.norm() / norm.norm()).item()
    worst = max(d / w if w > 0 else (0.0 if d == 0 else float("inf")) for d, w in zip(diff.tolist(), norm.tolist()))
    return whole, worst


def _finite(v: float) -> float | None:
    """``None`` for nan/inf, so that the report is strict JSON."""
    return v if math.isfinite(v) else None


def gradient_error(model_builder: Builder = hbnet_outside, n: Sequence[int] = (9, 18, 36, 72, 144),
                   betas: Sequence[float] = (0.1, 0.3, 0.5, 0.9), *,
                   dtypes: Sequence[torch.dtype] = (torch.float64, torch.float32), batch: int = 8,
                   image: int = 32, device: str | torch.device = "cpu", seed: int = 0) -> list[dict[str, Any]]:
    """Reversible against ordinary gradients (all parameters, same weights and batch), one row per
    ``(dtype, beta, n)``: ``rel_err`` of the whole gradient, ``max_tensor_rel_err`` of the worst
    parameter tensor (the first blocks, reconstructed last, drift most), below float64 ``floor``:
    the ordinary gradient's own error against float64 (what the dtype costs without reversal), and
    ``usable``: finite (nan/inf are reported as None) and
    ``rel_err <= min(MAX_REL_ERR, max(USABLE_REL_ERR, FLOOR_FACTOR * floor))``."""
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    rows = []
    for beta, blocks in itertools.product(betas, n):
        depth = 6 * blocks + 2
        ordinary, reversible = _pair(model_builder, depth, beta, seed)
        start = {k: v.clone() for k, v in ordinary.state_dict().items()}
        exact: list[Tensor] | None = None
        for dtype in sorted(dtypes, key=lambda d: -torch.finfo(d).bits):
            for m in (ordinary, reversible):
                m.load_state_dict(start)
                m.to(dev, dtype)
            x, y = _batch(batch, image, seed, dev, dtype)
            want, got = _grads(ordinary, x, y), _grads(reversible, x, y)
            whole, worst = _rel_err(got, want)
            row = {"dtype": str(dtype).removeprefix("torch."), "beta": beta, "n": blocks, "depth": depth,
                   "rel_err": _finite(whole), "max_tensor_rel_err": _finite(worst)}
            limit = USABLE_REL_ERR
            if exact is None and dtype == torch.float64:
                exact = want
            elif exact is not None:
                floor = _rel_err(want, exact)[0]
                row["floor"] = _finite(floor)
                limit = min(MAX_REL_ERR, max(USABLE_REL_ERR, FLOOR_FACTOR * floor))
            row["usable"] = bool(whole <= limit)  # False for nan
            rows.append(row)
    return rows


def run(device: str = "auto", quick: bool = False, seed: int = 0, builder: Builder | None = None,
        sizes: MemorySizes | None = None, quiet: bool = False) -> dict[str, Any]:
    """Both tables as a JSON-able report (``sizes`` and ``builder`` override the defaults)."""
    dev = resolve_device(device)
    sizes = sizes or sizes_for(quick)
    build = builder or hbnet_outside
    width = sizes.width

    def sized(depth: int, *, reversible: bool, beta: float) -> nn.Module:
        return build(depth, reversible=reversible, beta=beta, width=width)

    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "torch": torch.__version__, "quick": quick, "seed": seed,
        "sizes": asdict(sizes), "peak_method": "cuda allocator" if dev.type == "cuda" else "torch.profiler",
        "usable": {"rel_err": USABLE_REL_ERR, "floor_factor": FLOOR_FACTOR, "max_rel_err": MAX_REL_ERR},
    }
    report["memory"] = activation_memory(sized, sizes.n, batch=sizes.batch, image=sizes.image, beta=sizes.beta,
                                         device=dev, seed=seed, warmup=sizes.warmup, steps=sizes.steps)
    if not quiet:
        print(memory_markdown(report), flush=True)
    report["gradient_error"] = gradient_error(sized, sizes.error_n, sizes.error_betas, batch=sizes.error_batch,
                                              image=sizes.image, device=dev, seed=seed)
    return report


def _mib(b: float) -> str:
    return f"{b / 2**20:.2f}"


def memory_markdown(report: dict[str, Any]) -> str:
    """The memory table: saved bytes, step peak and ms/step, ordinary / reversible."""
    s = report["sizes"]
    lines = [
        f"HBNet (momentum outside), beta {s['beta']}, batch {s['batch']} at {s['image']}x{s['image']}, "
        f"width {s['width']}, fp32 on {report['device']} ({report['threads']} threads, torch {report['torch']}); "
        f"peak via {report['peak_method']}, time: median of {s['steps']} interleaved steps.",
        "",
        "| n | depth | params MiB | saved MiB ord / rev | ratio | peak MiB ord / rev | ratio "
        "| ms/step ord / rev | rev/ord time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["memory"]:
        lines.append(
            f"| {r['n']} | {r['depth']} | {_mib(r['param_bytes'])} | "
            f"{_mib(r['ordinary_saved_bytes'])} / {_mib(r['reversible_saved_bytes'])} | "
            f"{r['saved_ratio']:.1f} | {_mib(r['ordinary_peak_bytes'])} / {_mib(r['reversible_peak_bytes'])} | "
            f"{r['peak_ratio']:.1f} | {r['ordinary_ms']:.0f} / {r['reversible_ms']:.0f} | {r['time_ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def _e(v: float | None) -> str:
    return "nan" if v is None else f"{v:.1e}"


def error_markdown(report: dict[str, Any]) -> str:
    """The gradient-error table: relative error (worst tensor) per dtype, beta and n."""
    rows = report["gradient_error"]
    ns = sorted({r["n"] for r in rows})
    u = report["usable"]
    lines = [f"Relative gradient error, reversible vs ordinary backprop in the same dtype (whole gradient; worst "
             f"tensor in brackets; float32: [ordinary float32 vs float64]). * = not usable: above "
             f"{u['rel_err']:g} and above {u['floor_factor']:g} x the float32 floor, or above {u['max_rel_err']:g}.",
             "",
             "| dtype | beta | " + " | ".join(f"n={n} (depth {6 * n + 2})" for n in ns) + " |",
             "|---|---|" + "---|" * len(ns)]
    keys = sorted({(r["dtype"], r["beta"]) for r in rows}, key=lambda k: (k[0] != "float64", k[0], k[1]))
    for dtype, beta in keys:
        by_n = {r["n"]: r for r in rows if r["dtype"] == dtype and r["beta"] == beta}
        cells = [f"{_e(by_n[n]['rel_err'])} ({_e(by_n[n]['max_tensor_rel_err'])})"
                 + (f" [{_e(by_n[n]['floor'])}]" if "floor" in by_n[n] else "")
                 + ("" if by_n[n]["usable"] else "*") if n in by_n else "" for n in ns]
        lines.append(f"| {dtype} | {beta} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_markdown(report: dict[str, Any]) -> str:
    return memory_markdown(report) + "\n" + error_markdown(report)
