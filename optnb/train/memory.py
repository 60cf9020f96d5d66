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

For the dress rehearsal of the paper plan on a small machine, :func:`bytes_per_sample` fits one
training step's peak as ``fixed + per_sample x batch`` (:class:`MemoryPerSample`, whose
``needs_bytes(batch)`` says what the paper batch needs on a GPU) and :func:`fit_batch` picks the
largest batch up to the paper's that fits a memory budget.
"""

from __future__ import annotations

import itertools
import math
import os
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


def _step(model: nn.Module, x: Tensor, y: Tensor, amp: bool = False, keep_grads: bool = False) -> None:
    """Forward, cross-entropy, backward; a network returning ``(logits, aux)`` gets both losses
    (as ``optnb.train.steps.ClassifierStep`` with an auxiliary head); ``amp``: bf16 autocast;
    ``keep_grads``: backward accumulates into the existing gradients instead of new ones."""
    if not keep_grads:
        model.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(x)
    outs = out if isinstance(out, tuple) else (out,)
    sum(F.cross_entropy(o.float() if amp else o, y) for o in outs).backward()


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


def peak_step_bytes(model: nn.Module, x: Tensor, y: Tensor, *, amp: bool = False,
                    keep_grads: bool = False) -> int:
    """Peak memory of one training step (activations, workspaces and the gradients it allocates)
    above what was allocated before it (parameters, buffers, the batch; no gradients): the
    allocator's peak on CUDA, the running sum of ``torch.profiler``'s allocation events on CPU.

    ``keep_grads``: the gradients exist before the step (allocate them, e.g. as zeros) and
    backward adds into them, so the peak is the activations' and transients' only."""
    if x.device.type == "cuda":
        # warm-up: cuDNN autotuning and workspaces out of the measurement
        _step(model, x, y, amp, keep_grads)
        if not keep_grads:
            model.zero_grad(set_to_none=True)
        torch.cuda.synchronize(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        base = torch.cuda.memory_allocated(x.device)
        _step(model, x, y, amp, keep_grads)
        torch.cuda.synchronize(x.device)
        return torch.cuda.max_memory_allocated(x.device) - base
    if not keep_grads:
        # freed before profiling: the profiler does not see frees of blocks allocated before it started
        model.zero_grad(set_to_none=True)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _step(model, x, y, amp, keep_grads)
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


# ---------------------------------------------------------------------------------------------
# memory per sample: what a paper batch needs, and the largest batch a machine can take

#: the default budget of :func:`fit_batch`: this fraction of the memory available now
#: (``MemAvailable``), the rest left to the process itself, the data and the loader workers
BUDGET_FRACTION = 0.5
GIB = 2**30


def _size(b: float) -> str:
    """Bytes in GiB from 1 GiB up, else in MiB."""
    return f"{b / GIB:.2f} GiB" if b >= GIB else f"{b / 2**20:.2f} MiB"


class MemoryBudgetError(ValueError):
    """Not even the smallest allowed batch fits the memory budget (the message is one line)."""


@dataclass(frozen=True)
class MemoryPerSample:
    """One training step's memory as ``fixed + per_sample x batch`` bytes, fitted to two batches.

    ``step_peaks``: the step's measured peak at ``batches`` (:func:`peak_step_bytes` with the
    gradients allocated before) plus the input batch; ``per_sample_bytes``/``step_fixed_bytes``: the
    line through them (the fixed part is transients, small); ``state_bytes``: what lives before the
    step (parameters, buffers, gradients, ``optimizer_copies`` x the trainable parameters).
    """

    batches: tuple[int, int]
    step_peaks: tuple[int, int]
    per_sample_bytes: float
    step_fixed_bytes: float
    state_bytes: int
    image_size: tuple[int, int]
    device: str
    dtype: str
    amp: bool
    method: str

    @property
    def fixed_bytes(self) -> float:
        """Batch-independent bytes: the state plus the step's fixed part (never below the state)."""
        return self.state_bytes + max(self.step_fixed_bytes, 0.0)

    def activation_bytes(self, batch: int) -> float:
        """The part of the step's peak that grows with the batch (activations, input, workspaces)."""
        return self.per_sample_bytes * batch

    def needs_bytes(self, batch: int) -> int:
        """The memory a step at ``batch`` needs: fixed + per-sample x batch (rounded up)."""
        return int(math.ceil(self.fixed_bytes + self.activation_bytes(batch)))

    def describe(self, batch: int) -> str:
        """One line for a report, e.g. "the paper batch of 256 needs about 30.1 GiB ..."."""
        h, w = self.image_size
        precision = "bf16 autocast" if self.amp else self.dtype
        return (f"a batch of {batch} at {h}x{w} px needs about {_size(self.needs_bytes(batch))}: "
                f"{_size(self.activation_bytes(batch))} per-sample ({_size(self.per_sample_bytes)} x {batch}) + "
                f"{_size(self.fixed_bytes)} fixed (weights, gradients, optimiser state); {precision}, measured "
                f"on {self.device} via {self.method} at batches {self.batches[0]} and {self.batches[1]}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields plus ``fixed_bytes``."""
        return {**asdict(self), "fixed_bytes": self.fixed_bytes}


def _state_bytes(model: nn.Module, optimizer_copies: int) -> int:
    """Parameters, buffers, and per trainable parameter a gradient and ``optimizer_copies``."""
    params = sum(p.nbytes for p in model.parameters())
    trainable = sum(p.nbytes for p in model.parameters() if p.requires_grad)
    return params + sum(b.nbytes for b in model.buffers()) + (1 + optimizer_copies) * trainable


def bytes_per_sample(model: nn.Module, image_size: int | tuple[int, int], batches: tuple[int, int] = (2, 4), *,
                     amp: bool = False, optimizer_copies: int = 1, seed: int = 0) -> MemoryPerSample:
    """Measure one training step of ``model`` (forward, cross-entropy (+ auxiliary head), backward;
    on its own device and in its dtype, in train mode) at two batches of random ``3 x H x W``
    images and fit ``fixed + per_sample x batch``. ``optimizer_copies``: optimiser state per
    trainable parameter (1 for SGD with momentum, the paper's optimiser; 2 for Adam). The steps
    update BatchNorm's running statistics and leave no gradients: measure a copy if that matters.

    The gradients are allocated before the measured step (and counted in the fixed state): a step
    that allocates them during backward peaks there at small batches, which would bend the line
    and underestimate large batches (ResNet-34 at 224 px, batches 1 and 2: 25.8 MiB per sample that
    way against 30.7 MiB of saved activations alone). So the estimate is an upper bound of a step
    with ``zero_grad(set_to_none=True)``, tight where activations dominate (the paper batches).
    What remains of backward's transients (the gradient being added) is at most a few weight
    tensors: choose ``batches`` where one sample's activations outweigh the largest weight tensor,
    as the paper's models do from batch 1 (ResNet-110 on CIFAR: 8.03 MiB per sample fitted at
    batches 1, 2 and 8.06 at 8, 16; ResNet-34 and DenseNet-121 at 224 px: the same at 1, 2 and 2, 4).

    Approximations, stated: the fit is linear (activations are; cuDNN workspaces and allocator
    rounding are not quite); on CPU the peak is the running sum of ``torch.profiler``'s allocation
    events (exact bytes asked for), on CUDA the caching allocator's peak (block rounding, cuDNN
    workspaces, other kernels' choices), so a CPU measurement predicts the GPU's to some tens of
    per cent, not exactly; bf16 autocast (``amp=True``, the paper recipes on GPU) roughly halves
    the activations, so measure with the precision the GPU run uses; DDP gradient buckets (about
    one more copy of the parameters per process), the data loader and the CUDA context are not
    included.
    """
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size must be a side or (H, W) >= 1, got {image_size!r}")
    b1, b2 = batches
    if not 1 <= b1 < b2:
        raise ValueError(f"batches must be two sizes 1 <= b1 < b2, got {batches!r}")
    if optimizer_copies < 0:
        raise ValueError(f"optimizer_copies must be >= 0, got {optimizer_copies}")
    first = next(model.parameters())
    device, dtype = first.device, first.dtype
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.train()
    peaks = []
    try:
        for p in model.parameters():
            if p.requires_grad:
                p.grad = torch.zeros_like(p)
        for b in (b1, b2):
            x = torch.randn(b, 3, *size, generator=gen, dtype=torch.float32).to(device, dtype)
            y = torch.zeros(b, dtype=torch.long, device=device)  # any valid label: memory does not care
            peaks.append(peak_step_bytes(model, x, y, amp=amp, keep_grads=True) + x.nbytes)
            del x, y
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    per_sample = (peaks[1] - peaks[0]) / (b2 - b1)
    if per_sample <= 0:
        raise ValueError(f"the step's peak did not grow with the batch ({peaks[0]} B at {b1}, {peaks[1]} B at "
                         f"{b2}); measure at batches further apart")
    return MemoryPerSample(
        batches=(b1, b2), step_peaks=(peaks[0], peaks[1]), per_sample_bytes=per_sample,
        step_fixed_bytes=peaks[0] - per_sample * b1, state_bytes=_state_bytes(model, optimizer_copies),
        image_size=(int(size[0]), int(size[1])), device=str(device),
        dtype=str(dtype).removeprefix("torch."), amp=amp,
        method="cuda allocator" if device.type == "cuda" else "torch.profiler")


def available_memory_bytes() -> int:
    """Memory available to a new allocation now: ``MemAvailable`` of ``/proc/meminfo`` (Linux),
    else the free physical pages."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the kernel writes kB (KiB)
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def default_budget_bytes(fraction: float = BUDGET_FRACTION) -> int:
    """:data:`BUDGET_FRACTION` of :func:`available_memory_bytes`."""
    return int(fraction * available_memory_bytes())


def fit_batch(paper_batch: int, per_sample: MemoryPerSample, budget_bytes: int | None = None,
              multiple_of: int = 1) -> int:
    """The largest batch <= ``paper_batch`` whose step fits ``budget_bytes``
    (default :func:`default_budget_bytes`): ``paper_batch`` itself when it fits, else the largest
    multiple of ``multiple_of`` (e.g. the number of processes) that does.

    Raises :class:`MemoryBudgetError` when not even ``multiple_of`` samples fit.
    """
    if paper_batch < 1 or multiple_of < 1:
        raise ValueError(f"fit_batch needs paper_batch >= 1 and multiple_of >= 1, got {paper_batch}, {multiple_of}")
    budget = default_budget_bytes() if budget_bytes is None else int(budget_bytes)
    if per_sample.needs_bytes(paper_batch) <= budget:
        return paper_batch
    room = budget - per_sample.fixed_bytes
    batch = int(room // per_sample.per_sample_bytes) if room > 0 else 0
    batch = min(batch, paper_batch) // multiple_of * multiple_of
    while batch >= multiple_of and per_sample.needs_bytes(batch) > budget:  # float rounding at the edge
        batch -= multiple_of
    if batch < multiple_of:
        raise MemoryBudgetError(
            f"not even a batch of {multiple_of} fits the memory budget of {_size(budget)}: it needs "
            f"{_size(per_sample.needs_bytes(multiple_of))} ({_size(per_sample.fixed_bytes)} fixed)")
    return batch
