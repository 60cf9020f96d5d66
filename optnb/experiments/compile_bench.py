"""``optnb bench --suite compile``: eager against compiled training steps, side by side.

Each model is trained by several *variants* of its own training step: ``eager`` (today's step,
contiguous tensors), ``eager+cl`` (channels_last), ``compiled`` and ``compiled+cl``
(``torch.compile`` of the step's forward + loss, ``optnb.train.compiling``) and, on CUDA only,
``graphed+cl`` (``reduce-overhead``: CUDA graphs); on CUDA the contiguous ``compiled`` variant is
left out (channels_last is the engine's layout there), to bound the compile time. Models: the CIFAR nets of the registry
(default resnet56, hbnet56, densenet40, agdnet40), ``darts_v2`` (the DARTS_V2 evaluation network
of paper §9.3: C = 36, 20 cells, auxiliary head, drop path 0.2 with its masks drawn outside the
graph, ``DropPathStep``) and ``supernet`` (the first-order search step of the darts space,
``BilevelStep`` as ``optnb.nas.bench`` builds it; compiled against today's optimised eager path,
no channels_last variants).

Every variant gets its own copy of the model (same initial weights) and the same batches; one
round runs one step of every (model, variant) in turn, and the order rotates by one each round.
The first ``warmup`` rounds are not timed as steps: the compilation happens there, and its cost
is ``compile_s`` = the variant's warm-up time minus its baseline's (the first compiled case of a
process also pays Dynamo's own start-up), so that ``steps_to_pay = compile_s / (baseline step -
variant step)`` is the number of steps after which the compiled run has caught up (the variant's
step taken as the baseline's median / the speed-up). The baseline is today's step on the device: ``eager`` on
the CPU, ``eager+cl`` on CUDA (the engine's default layout there). Reported per (model,
variant): median step time with min-max and IQR, speed-up = the median of the per-round ratios
baseline / variant, ``compile_s``, ``steps_to_pay``, the peak memory of one step
(``optnb.nas.bench.peak_bytes``: the allocator's peak on CUDA, the profiler's allocation events
on the CPU) and the graphs Dynamo compiled (and any recompilation after warm-up). For
each variant/baseline model pair in the selection (hbnet56/resnet56, agdnet40/densenet40) the
ratio of the median step times per variant.

Targets (issue 15; CPU, 1 thread, reported, never gated in tests): compiled over eager >= 1.3x for
darts_v2, hbnet56 and agdnet40, >= 1.2x for the supernet; compiled hbnet56/resnet56 and
agdnet40/densenet40 <= 1.05. Output: ``compile-latest.{json,md}`` under ``results/bench``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from optnb import models
from optnb.atomic import write_text
from optnb.nas import bench as nas_bench
from optnb.nas.evaluate import DropPathStep, EvalConfig, build_network
from optnb.nas.genotypes import DARTS_V2
from optnb.nas.spaces import SearchNetwork
from optnb.seed import resolve_device
from optnb.train import compiling, recipes
from optnb.train.bench import BenchError, _iqr
from optnb.train.engine import make_optimizer
from optnb.train.steps import ClassifierStep

EVAL_NET, SUPERNET = "darts_v2", "supernet"
NAS_MODELS = (EVAL_NET, SUPERNET)
DEFAULT_MODELS = ("resnet56", "hbnet56", "densenet40", "agdnet40", EVAL_NET, SUPERNET)
#: compiled-over-eager speed-up targets (CPU, 1 thread)
CPU_SPEEDUP_TARGETS = {EVAL_NET: 1.3, "hbnet56": 1.3, "agdnet40": 1.3, SUPERNET: 1.2}
#: variant/baseline step-time ratio targets of the compiled steps (CPU)
CPU_RATIO_TARGETS = {"hbnet56/resnet56": 1.05, "agdnet40/densenet40": 1.05}
#: Dynamo keeps one cache entry per compiled step on the shared ``forward_loss`` code; the default
#: limit (8) would send the later variants of a many-model run back to eager without an error
RECOMPILE_LIMIT = 64


@dataclass(frozen=True)
class Variant:
    name: str
    compile: bool | str  # False: eager; else a ``compiling.compile_kwargs`` spec
    channels_last: bool


@dataclass(frozen=True)
class Sizes:
    """Batch and network sizes, warm-up rounds and timed rounds."""

    batch: int           # the CIFAR nets
    eval_batch: int      # darts_v2
    eval_C: int
    eval_layers: int
    search_batch: int    # supernet (C, cells and image size: ``optnb.nas.bench``'s sizes)
    warmup: int
    steps: int


def sizes_for(device: torch.device, quick: bool, batch: int | None = None, steps: int | None = None
              ) -> Sizes:
    """CUDA: batch 64, the paper's evaluation network (batch 96) and supernet, 5 + 30 rounds.
    CPU: batch 32, the evaluation network at full size (batch 16), the CI-sized supernet, 2 + 15
    rounds; ``quick``: batch 8, a C = 8, 5-cell evaluation network (batch 4), 2 + 3 rounds.
    ``batch`` overrides every model's batch, ``steps`` the timed rounds."""
    if device.type == "cuda":
        s = Sizes(batch=64, eval_batch=96, eval_C=36, eval_layers=20, search_batch=64, warmup=5,
                  steps=10 if quick else 30)
    elif quick:
        s = Sizes(batch=8, eval_batch=4, eval_C=8, eval_layers=5, search_batch=8, warmup=2, steps=3)
    else:
        s = Sizes(batch=32, eval_batch=16, eval_C=36, eval_layers=20, search_batch=8, warmup=2,
                  steps=15)
    if batch is not None:
        s = Sizes(**{**asdict(s), "batch": batch, "eval_batch": batch, "search_batch": batch})
    if steps is not None:
        s = Sizes(**{**asdict(s), "steps": steps})
    return s


def valid_models() -> list[str]:
    return [*models.names("cifar"), *NAS_MODELS]


def parse_models(text: str | Sequence[str] | None) -> list[str]:
    """``"resnet8,hbnet8"`` (or a list) checked against :func:`valid_models`; None: the defaults."""
    if text is None:
        return list(DEFAULT_MODELS)
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    valid = valid_models()
    bad = [n for n in names if n not in valid]
    if bad or not names:
        raise BenchError(f"unknown model {', '.join(map(repr, bad)) or '(none given)'} for --suite "
                         f"compile; valid models: {', '.join(valid)}")
    return list(dict.fromkeys(names))


def variants_for(model: str, device: torch.device, spec: bool | str = True) -> list[Variant]:
    """The variants of ``model`` on ``device``; the first is the baseline (today's step)."""
    cuda = device.type == "cuda"
    graphed = [Variant("graphed+cl", "reduce-overhead", True)] if cuda else []
    if model == SUPERNET:
        return [Variant("eager", False, False), Variant("compiled", spec, False),
                *([Variant("graphed", "reduce-overhead", False)] if cuda else [])]
    eager = [Variant("eager", False, False), Variant("eager+cl", False, True)]
    compiled = [Variant("compiled+cl", spec, True)] if cuda else [
        Variant("compiled", spec, False), Variant("compiled+cl", spec, True)]
    return [*(eager[::-1] if cuda else eager), *compiled, *graphed]


@dataclass
class Case:
    """One (model, variant): ``run(i)`` takes one training step on the ``i``-th batch."""

    model: str
    variant: Variant
    baseline: str       # the variant this one's speed-up and compile time are relative to
    batch: int
    net: nn.Module
    run: Callable[[int], Any]

    @property
    def key(self) -> str:
        return f"{self.model}/{self.variant.name}"


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _image_batches(n: int, batch: int, device: torch.device, seed: int
                   ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, 32, 32, generator=gen).to(device),
             torch.randint(0, 10, (batch,), generator=gen).to(device)) for _ in range(n)]


def _classifier_case(model: str, v: Variant, baseline: str, base: nn.Module, device: torch.device,
                     batches: list[tuple[torch.Tensor, torch.Tensor]],
                     make: Callable[[nn.Module], ClassifierStep]) -> Case:
    net = copy.deepcopy(base).to(device)
    if v.channels_last:
        net = net.to(memory_format=torch.channels_last)
    step = make(net)
    if v.compile is not False:
        step.compile(v.compile)
    data = [(_layout(x, v.channels_last), y) for x, y in batches]
    return Case(model, v, baseline, len(batches[0][1]), net,
                lambda i: step(*data[i % len(data)]))


def build_cases(model: str, device: torch.device, sizes: Sizes, spec: bool | str = True,
                seed: int = 0, batches: int = 4) -> list[Case]:
    """Every variant of ``model`` (:func:`variants_for`), from the same weights and batches."""
    cuda = device.type == "cuda"
    variants = variants_for(model, device, spec)
    baseline = variants[0].name
    if model == SUPERNET:
        C, layers, batch, image, _ = nas_bench._sizes(cuda, None, None, sizes.search_batch, None, 1)
        torch.manual_seed(seed)
        base = SearchNetwork("darts", C=C, layers=layers)
        base.init_arch("random", generator=torch.Generator().manual_seed(seed))
        gen = torch.Generator().manual_seed(seed + 1)
        data = [nas_bench._random_batch(gen, batch, image, device) for _ in range(batches)]
        cases = []
        for v in variants:
            net = copy.deepcopy(base).to(device)
            step = nas_bench.search_step(net, True, 1, device)
            if v.compile is not False:
                step.compile(v.compile)
            cases.append(Case(model, v, baseline, batch, net,
                              lambda i, s=step: s.update(*data[i % len(data)])))
        return cases
    if model == EVAL_NET:
        cfg = EvalConfig(C=sizes.eval_C, layers=sizes.eval_layers)
        torch.manual_seed(seed)
        base = build_network(DARTS_V2, cfg)
        data = _image_batches(batches, sizes.eval_batch, device, seed + 1)

        def make(net: nn.Module) -> ClassifierStep:
            # the last epoch's drop-path probability, masks from a generator of the same seed
            net.drop_path_prob = cfg.drop_path
            net.drop_path_generator = torch.Generator(device=device).manual_seed(seed)
            opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                  weight_decay=cfg.weight_decay, fused=True)
            return DropPathStep(net, opt, amp=cuda, grad_clip=cfg.grad_clip,
                                label_smoothing=cfg.label_smoothing, aux_weight=cfg.aux_weight,
                                network=net, drop_path=cfg.drop_path, epochs=1)
    else:
        torch.manual_seed(seed)
        base = models.build(model)
        data = _image_batches(batches, sizes.batch, device, seed + 1)
        recipe = recipes.get("densenet_cifar")

        def make(net: nn.Module) -> ClassifierStep:
            return ClassifierStep(net, make_optimizer(net, recipe, device), amp=cuda)
    return [_classifier_case(model, v, baseline, base, device, data, make) for v in variants]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_cases(cases: Sequence[Case], device: torch.device, warmup: int, steps: int,
               clock: Callable[[], float] = time.perf_counter) -> dict[str, dict[str, Any]]:
    """Round-robin steps of every case (the order rotates by one each round): per case the
    warm-up and timed step seconds, the graphs Dynamo compiled in each, and the error that
    stopped it, if any (the others go on)."""
    out: dict[str, dict[str, Any]] = {c.key: {"warmup_s": [], "step_s": [], "graphs_warmup": 0,
                                              "graphs_after_warmup": 0, "graph_breaks": 0}
                                      for c in cases}
    for i in range(warmup + steps):
        k = i % len(cases)
        for case in [*cases[k:], *cases[:k]]:
            rec = out[case.key]
            if "error" in rec:
                continue
            try:
                with compiling.CompileCounter() as counted:
                    _sync(device)
                    t0 = clock()
                    case.run(i)
                    _sync(device)
                    dt = clock() - t0
            except Exception as err:  # noqa: BLE001 -- one failed variant must not stop the rest
                rec["error"] = " ".join(f"{type(err).__name__}: {err}".split())[:300]
                continue
            rec["warmup_s" if i < warmup else "step_s"].append(dt)
            rec["graphs_warmup" if i < warmup else "graphs_after_warmup"] += counted.graphs
            rec["graph_breaks"] += counted.graph_breaks
    return out


def summarise(cases: Sequence[Case], timed: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per case from :func:`time_cases`'s record (pure: the statistics of the module
    docstring)."""
    rows = []
    for case in cases:
        rec = timed[case.key]
        row: dict[str, Any] = {"model": case.model, "variant": case.variant.name,
                               "compile": str(case.variant.compile),
                               "channels_last": case.variant.channels_last,
                               "baseline": case.baseline, "batch": case.batch, **rec}
        rows.append(row)
        t = rec["step_s"]
        if "error" in rec or not t:
            continue
        row.update(step_med_s=statistics.median(t), step_min_s=min(t), step_max_s=max(t),
                   step_iqr_s=_iqr(t), images_per_s=case.batch / statistics.median(t))
        base = timed[f"{case.model}/{case.baseline}"]
        if "error" in base or not base["step_s"]:
            continue
        ratios = [b / v for b, v in zip(base["step_s"], t)]
        row.update(speedup=statistics.median(ratios), speedup_min=min(ratios),
                   speedup_max=max(ratios))
        if case.variant.compile is not False:
            compile_s = sum(rec["warmup_s"]) - sum(base["warmup_s"])
            # the saving per step implied by the speed-up (the robust statistic), at the
            # baseline's median: a difference of two separate medians can contradict it
            base_med = statistics.median(base["step_s"])
            gain = base_med - base_med / row["speedup"]
            row["compile_s"] = compile_s
            # None: the compiled step is not faster, so it never pays for its compilation
            row["steps_to_pay"] = max(compile_s, 0.0) / gain if gain > 0 else None
        target = CPU_SPEEDUP_TARGETS.get(case.model)
        if target is not None and case.variant.compile is not False:
            row["cpu_target"] = target
    return rows


def pair_ratios(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """variant/baseline model ratios of the median step times, per step variant, for every
    registry pair in the selection (``models.baseline_of``)."""
    med = {(r["model"], r["variant"]): r["step_med_s"] for r in rows if "step_med_s" in r}
    chosen = list(dict.fromkeys(r["model"] for r in rows))
    out = []
    for m in chosen:
        if m in NAS_MODELS or (b := models.baseline_of(m)) == m or b not in chosen:
            continue
        ratios = {v: med[(m, v)] / med[(b, v)] for (mm, v) in med if mm == m and (b, v) in med}
        pair = f"{m}/{b}"
        out.append({"pair": pair, "ratios": ratios, "cpu_target": CPU_RATIO_TARGETS.get(pair)})
    return out


def peak_mib(case: Case, device: torch.device) -> float:
    """The peak memory of one step of ``case`` above what was allocated before it (parameters,
    optimiser state, the batches; no gradients), MiB: ``optnb.nas.bench.peak_bytes``."""
    case.run(0)  # warm: a CUDA graph is captured, optimiser state exists
    # freed before measuring: the CPU profiler does not see frees of blocks allocated before it
    case.net.zero_grad(set_to_none=True)
    return nas_bench.peak_bytes(lambda: case.run(0), device) / 2**20


def _caches(cold: bool) -> contextlib.AbstractContextManager:
    """Inductor's on-disk caches (compiled graphs, C++/Triton kernels) in a fresh folder when
    ``cold``, so that ``compile_s`` is what a first run pays rather than a rerun's cache hits."""
    if not cold:
        return contextlib.nullcontext()
    from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir

    stack = contextlib.ExitStack()
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="optnb-inductor-"))
    stack.enter_context(temporary_cache_dir(folder))
    return stack


def run(device: str = "auto", quick: bool = False, names: Sequence[str] | None = None,
        spec: bool | str = True, batch: int | None = None, steps: int | None = None,
        seed: int = 0, measure_memory: bool = True, cold_cache: bool = True, quiet: bool = False
        ) -> dict[str, Any]:
    """The compile suite on ``names`` (default :data:`DEFAULT_MODELS`); a JSON-able report.
    ``cold_cache``: compile with empty Inductor caches (:func:`_caches`)."""
    compiling.compile_kwargs(spec)  # an unknown spec fails before anything is built
    names = parse_models(names)
    dev = resolve_device(device)
    sizes = sizes_for(dev, quick, batch, steps)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    t0 = time.perf_counter()
    cases = [c for name in names for c in build_cases(name, dev, sizes, spec, seed)]
    with _caches(cold_cache), torch._dynamo.config.patch(
            recompile_limit=RECOMPILE_LIMIT, accumulated_recompile_limit=4 * RECOMPILE_LIMIT):
        timed = time_cases(cases, dev, sizes.warmup, sizes.steps)
        rows = summarise(cases, timed)
        if measure_memory:
            for case, row in zip(cases, rows):
                if "error" not in row:
                    row["peak_mib"] = peak_mib(case, dev)
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
        "threads": torch.get_num_threads(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "quick": quick, "compile": str(spec), "sizes": asdict(sizes), "seed": seed,
        "inductor_caches": "empty at start (cold compile)" if cold_cache else "as found (warm)",
        "precision": "bf16 autocast" if cuda else "fp32",
        "memory": ("allocator peak of one step" if cuda else "profiler allocation events of one step")
                  if measure_memory else "not measured",
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "rows": rows, "pairs": pair_ratios(rows), "wall_s": time.perf_counter() - t0,
    }
    if not quiet:
        print(to_markdown(report), flush=True)
    return report


def _f(value: float | None, fmt: str, none: str = "") -> str:
    return none if value is None else format(value, fmt)


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: a header line, one row per (model, variant), then the pair ratios."""
    s = report["sizes"]
    cpu = report["device"] == "cpu"
    load = report.get("loadavg")
    lines = [
        f"Measured {report['date']} on {report['device']} ({report['threads']} threads, torch "
        f"{report['torch']}, {report['precision']}, compile {report['compile']}, Inductor caches "
        f"{report.get('inductor_caches', 'as found')}), batch {s['batch']} "
        f"(CIFAR nets) / {s['eval_batch']} ({EVAL_NET}, C={s['eval_C']}, {s['eval_layers']} cells) "
        f"/ {s['search_batch']} ({SUPERNET}), {s['steps']} interleaved rounds after {s['warmup']} "
        f"warm-up" + (f", load average {load[0]:.1f}" if load else "") + f"; peak memory: "
        f"{report['memory']}.",
        "",
        "| model | variant | batch | ms/step (median, min-max) | speed-up vs baseline (median, "
        "min-max) | compile s | steps to pay | peak MiB | graphs (after warm-up) | CPU target |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        if "error" in r or "step_med_s" not in r:
            why = r.get("error", "no timed step")
            lines.append(f"| {r['model']} | {r['variant']} | {r['batch']} | failed: {why} |"
                         " | | | | | |")
            continue
        ms = (f"{1e3 * r['step_med_s']:.1f} ({1e3 * r['step_min_s']:.1f}-"
              f"{1e3 * r['step_max_s']:.1f})")
        if r["variant"] == r["baseline"]:
            speed = "baseline"
        elif "speedup" in r:
            speed = f"{r['speedup']:.2f}x ({r['speedup_min']:.2f}-{r['speedup_max']:.2f})"
        else:
            speed = "n/a"
        pay = ("never" if "compile_s" in r and r["steps_to_pay"] is None
               else _f(r.get("steps_to_pay"), ".0f"))
        target = r.get("cpu_target")
        mark = ("" if target is None or not cpu or "speedup" not in r
                else (" (met)" if r["speedup"] >= target else " (missed)"))
        graphs = f"{r['graphs_warmup']} ({r['graphs_after_warmup']})" if r["compile"] != "False" else ""
        lines.append(f"| {r['model']} | {r['variant']} | {r['batch']} | {ms} | {speed} | "
                     f"{_f(r.get('compile_s'), '.1f')} | {pay} | {_f(r.get('peak_mib'), '.1f')} | "
                     f"{graphs} | {'' if target is None else f'>= {target:.2f}x'}{mark} |")
    if report["pairs"]:
        variants = list(dict.fromkeys(v for p in report["pairs"] for v in p["ratios"]))
        lines += ["", "| pair (ratio of median step times) | " + " | ".join(variants)
                  + " | CPU target (compiled) |", "|---|" + "---|" * (len(variants) + 1)]
        for p in report["pairs"]:
            cells = []
            for v in variants:
                ratio = p["ratios"].get(v)
                ok = p["cpu_target"] is not None and cpu and v.startswith("compiled") and ratio is not None
                cells.append(_f(ratio, ".3f", "n/a")
                             + ((" (met)" if ratio <= p["cpu_target"] else " (missed)") if ok else ""))
            target = p["cpu_target"]
            lines.append(f"| {p['pair']} | " + " | ".join(cells)
                         + f" | {'' if target is None else f'<= {target:.2f}'} |")
    lines += ["", "Speed-up: median of the per-round ratios baseline / variant (baseline: today's "
                  "step, eager on the CPU, eager+cl on CUDA). Compile s: the variant's warm-up time "
                  "minus the baseline's; steps to pay: compile s / (baseline median step time x (1 - "
                  "1 / speed-up))."]
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """``compile-latest.json`` and ``compile-latest.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "compile-latest.json", out / "compile-latest.md"
    write_text(js, json.dumps(report, indent=1) + "\n")
    write_text(md, to_markdown(report))
    return js, md


def failed(report: dict[str, Any]) -> list[str]:
    """``model/variant: error`` of every case that failed."""
    return [f"{r['model']}/{r['variant']}: {r['error']}" for r in report["rows"] if "error" in r]
