"""The rehearsal's per-step batches (issue 11, item 3): what of each paper batch this machine takes.

For every kind of run in the rehearsed plan (a Table 1/2 model, a search space and order, the
CIFAR evaluation network, the ImageNet mobile network) :func:`size` measures

* the FLOPs of one training step at the paper's batch (``optnb.experiments.costs``:
  ``torch.utils.flop_counter`` on the ``meta`` device), and so per sample;
* the memory of one training step per sample (``optnb.train.memory.bytes_per_sample``: two
  small real steps on this machine, a linear fit), and so what the paper's batch needs on a GPU;

and keeps the paper's batch unless it does not fit: not into the memory budget of this machine
(``memory.fit_batch``, shared by the runs that execute at once), or not into the rehearsal's time
budget of ``step_gflops`` GFLOP per step (a rehearsal of the whole plan must finish in 30 minutes
on a 2-core CPU; 0 turns this cap off, e.g. on a GPU). Only the per-step batch shrinks; the
model, resolution, recipe and schedule stay the paper's, and the reason is recorded per run.

Approximations (said in the report): the searched cells of Table 4/5 evaluations do not exist
before their search, so those rows are sized with DARTS_V2 (as ``costs`` does); the search's
memory is the supernet's forward + backward (the architecture step's extra passes run after it
and free their own tensors; the 2nd-order unrolled copy adds one set of weights).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from optnb.experiments.plans import PlannedRun
from optnb.experiments.targets import NB_CIFAR, NB_EVALUATE, NB_IMAGENET, NB_SEARCH, P_DATASET, P_MODEL

#: default FLOP budget of one rehearsed step (about 5 s of one core of a small shared CPU)
DEFAULT_STEP_GFLOPS = 200.0
#: the smallest per-step batch: BatchNorm of the auxiliary head sees 1x1 maps, so it needs 2
MIN_BATCH = 2
#: the batches the memory per sample is measured at (2: BatchNorm in training needs 2 samples
#: where a map is 1x1, as in the evaluation networks' auxiliary heads)
MEMORY_BATCHES = (2, 4)
#: the cell the evaluation networks are sized with (their searched cell does not exist yet)
STAND_IN_CELL = "DARTS_V2"


@dataclass(frozen=True)
class Sizing:
    """One kind of run: its paper batch, the per-step batch the rehearsal uses, and why."""

    key: str                 # the overlay's step-batch key (``rehearsal_overlay.Overlay``)
    paper_batch: int
    step_batch: int
    reason: str              # "" when the paper's batch is kept
    flops_per_step: int      # at the paper's batch
    image_size: int
    memory: Mapping[str, Any]  # ``MemoryPerSample.to_dict()`` plus ``paper_batch_needs``

    @property
    def shrunk(self) -> bool:
        return self.step_batch < self.paper_batch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def key_of(run: PlannedRun) -> str:
    """The overlay's step-batch key of ``run`` (what the loaders of that run ask for)."""
    p = run.parameters
    if run.notebook in (NB_CIFAR, NB_IMAGENET):
        return f"train:{p[P_MODEL]}"
    if run.notebook == NB_SEARCH:
        return f"search:{p['SPACE']}:{int(p['ORDER'])}"
    if run.notebook == NB_EVALUATE:
        return f"evaluate:{'imagenet' if p['TASK'] == 'imagenet' else 'cifar'}"
    raise ValueError(f"the rehearsal sizes Table 1/2/4/5 runs, not {run.notebook}")


@dataclass(frozen=True)
class PaperStep:
    """What one kind of run trains at the paper's configuration, resolved with the functions the
    run itself uses: its ``config`` is the run's ``RowPlan`` (Table 1/2), ``SearchConfig``
    (search) or ``EvalConfig`` (CIFAR evaluation, ImageNet transfer)."""

    notebook: str
    config: Any
    paper_batch: int
    image_size: int
    num_classes: int
    flops_per_step: int  # at the paper batch (``optnb.experiments.costs``)


def paper_step(run: PlannedRun) -> PaperStep:
    """The :class:`PaperStep` of ``run``'s kind (evaluations with :data:`STAND_IN_CELL`)."""
    from dataclasses import replace

    # deferred: heavy (torch, the networks, the plans) and only needed here
    from optnb import data
    from optnb.experiments import costs
    from optnb.nas import params
    from optnb.nas.search import SearchConfig
    from optnb.train.experiment import plan_row

    p = run.parameters
    if run.notebook in (NB_CIFAR, NB_IMAGENET):
        dataset = p.get(P_DATASET, "cifar10")
        row = plan_row(p[P_MODEL], dataset, bool(p.get("AUGMENT", True)), "paper")
        options = tuple(sorted((k, v) for k, v in row.model_options.items() if k != "dropout"))
        flops = costs.train_step_flops(row.trained_model, options, row.resolution, row.batch_size)
        return PaperStep(run.notebook, row, row.batch_size, row.resolution, data.NUM_CLASSES[dataset], flops)
    if run.notebook == NB_SEARCH:
        sizes = params.SEARCH_SIZES["paper"]
        cfg = SearchConfig(space=p["SPACE"], init=p["INIT"], order=int(p["ORDER"]), C=sizes["C"],
                           layers=sizes["layers"], batch_size=sizes["batch_size"]).checked()
        flops = costs.search_step_flops(cfg.space, cfg.order, 1, cfg.C, cfg.layers, cfg.batch_size)
        return PaperStep(run.notebook, cfg, cfg.batch_size, 32, 10, flops)
    if p["TASK"] == "imagenet":
        cfg = replace(params.IMAGENET_RECIPE, **params.TRANSFER_SIZES["paper"])
        side, classes = params.TRANSFER_IMAGE_SIZE["paper"], 1000
    else:
        cfg = replace(params.EvalConfig(), **params.EVAL_SIZES["paper"])
        side, classes = 32, 10
    flops = costs.eval_step_flops(STAND_IN_CELL, cfg.network, cfg.C, cfg.layers, cfg.batch_size, side,
                                  cfg.auxiliary, cfg.aux_weight)
    return PaperStep(run.notebook, cfg, cfg.batch_size, side, classes, flops)


def paper_network(step: PaperStep) -> Any:
    """The network of ``step``, built on the CPU as its run builds it."""
    # deferred: heavy (torch, the networks, the plans) and only needed here
    from optnb import models
    from optnb.nas import genotypes
    from optnb.nas.evaluate import build_network
    from optnb.nas.search import build_model

    if step.notebook in (NB_CIFAR, NB_IMAGENET):
        row = step.config
        return models.build(row.trained_model, num_classes=step.num_classes, **row.model_options)
    if step.notebook == NB_SEARCH:
        return build_model(step.config, step.num_classes)
    return build_network(genotypes.get(STAND_IN_CELL), step.config, step.num_classes)


def size(run: PlannedRun, step_gflops: float = DEFAULT_STEP_GFLOPS, budget_bytes: int | None = None,
         multiple_of: int = 1) -> Sizing:
    """The :class:`Sizing` of ``run``'s kind (see the module docstring); ``budget_bytes``: the
    memory one run may use (default ``memory.default_budget_bytes()``); ``multiple_of``: the
    per-step batch must split over this many processes (torchrun)."""
    import torch

    # deferred: heavy (torch, the networks, the plans) and only needed here
    from optnb.train import memory

    multiple = max(MIN_BATCH, multiple_of)
    step = paper_step(run)
    paper_batch, side, flops = step.paper_batch, step.image_size, step.flops_per_step
    with torch.random.fork_rng(devices=[]):
        # SGD with momentum: one optimiser buffer per weight (the search's Adam holds the alphas only)
        measured = memory.bytes_per_sample(paper_network(step), side, MEMORY_BATCHES, optimizer_copies=1)
    budget = memory.default_budget_bytes() if budget_bytes is None else budget_bytes
    reasons, batch = [], paper_batch
    try:
        fits = memory.fit_batch(paper_batch, measured, budget, multiple_of=multiple)
    except memory.MemoryBudgetError:
        fits = multiple
    if fits < batch:
        batch = fits
        reasons.append(f"memory: the paper batch needs {measured.needs_bytes(paper_batch) / 2**30:.1f} GiB, "
                       f"this machine's budget per run is {budget / 2**30:.1f} GiB")
    if step_gflops > 0:
        per_sample = flops / paper_batch
        quick = max(multiple, int(step_gflops * 1e9 // per_sample) // multiple * multiple)
        if quick < batch:
            batch = quick
            reasons.append(f"time: {flops / 1e9:.0f} GFLOP per paper step is over the rehearsal's "
                           f"{step_gflops:g} GFLOP per step on this CPU")
    mem = {**measured.to_dict(), "paper_batch_needs": measured.needs_bytes(paper_batch),
           "describe": measured.describe(paper_batch)}
    return Sizing(key_of(run), paper_batch, batch, "; ".join(reasons), flops, side, mem)


def _stderr_to(path: str) -> None:
    """Worker initializer: the CPU profiler of the memory measurement (kineto) writes start/stop
    lines and a "gpuGetDeviceCount failed" error to fd 2 on every measurement; keep them in
    ``path`` instead of the rehearsal's console (Python errors still reach the parent)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)


def _size_one(run: PlannedRun, step_gflops: float, budget: int, multiple_of: int) -> Sizing:
    import torch

    torch.set_num_threads(1)
    return size(run, step_gflops, budget, multiple_of)


def size_plan(runs: list[PlannedRun], step_gflops: float = DEFAULT_STEP_GFLOPS, jobs: int = 1,
              multiple_of: int = 1, log: Any = None, cache: Path | None = None) -> dict[str, Sizing]:
    """:func:`size` once per kind of run (key) of ``runs``, in ``jobs`` worker processes; the
    memory budget is shared by the ``jobs`` runs that execute at once. ``cache``: a JSON file
    that keeps the sizings of earlier rehearsals (same key, budget, FLOP cap and torch); the
    workers' stderr goes to ``sizing-stderr.log`` beside it."""
    import json
    from concurrent.futures import ProcessPoolExecutor

    import torch

    # deferred: heavy (torch, the networks, the plans) and only needed here
    from optnb.train import memory

    budget = memory.default_budget_bytes() // max(1, jobs)
    tag = f"{torch.__version__}|{step_gflops:g}|{budget // 2**28}|{multiple_of}"  # budget in 1/4 GiB
    known: dict[str, Any] = {}
    if cache is not None and cache.is_file():
        try:
            known = json.loads(cache.read_text())
        except ValueError:
            known = {}
    todo = {}
    for run in runs:
        key = key_of(run)
        if key not in todo and f"{key}|{tag}" not in known:
            todo[key] = run
    out: dict[str, Sizing] = {}
    if todo:
        stderr = str(cache.with_name("sizing-stderr.log")) if cache is not None else os.devnull
        with ProcessPoolExecutor(max(1, min(jobs, len(todo))), initializer=_stderr_to,
                                 initargs=(stderr,)) as pool:
            futures = {k: pool.submit(_size_one, r, step_gflops, budget,
                                      multiple_of if r.notebook in (NB_CIFAR, NB_IMAGENET) else 1)
                       for k, r in todo.items()}
            for key, future in futures.items():
                known[f"{key}|{tag}"] = future.result().to_dict()
        if cache is not None:
            cache.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n")
    for run in runs:
        key = key_of(run)
        if key not in out:
            out[key] = Sizing(**known[f"{key}|{tag}"])
            if log is not None:
                s = out[key]
                log(f"size {key}: paper batch {s.paper_batch}, per step {s.step_batch}"
                    + (f" ({s.reason})" if s.reason else ""))
    return out
