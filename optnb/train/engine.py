"""The one training loop of optnb: ``fit`` = restore, then per epoch: run the step over the
batches, evaluate, save, report.

Every training in the suite goes through it: the Table 1/2 rows (``ClassifierStep``, SGD with the
paper §8 recipe), the NAS search (its bilevel step, ``optnb.nas.search``), the NAS evaluation
(``optnb.nas.evaluate``: auxiliary head, drop path, gradient clipping) and the small nets of
notebook 04 (``optnb.train.inspired``). What differs between them is the *step* (one update from
one batch) and the *schedule* (epochs and the learning rate of each epoch); the loop, the
checkpoint, the divergence guard, the logs and the callbacks are shared.

Resume is exact: a checkpoint (``optnb.train.checkpoint``) holds the model with its BatchNorm
buffers, the optimiser (momentum buffers), the task's other state (an architecture optimiser, a
validation loader, a drop-path generator), the epoch, every RNG and the loader's data order, so on
a CPU "2 epochs straight" and "1 epoch, resume, 1 epoch" give bitwise equal weights. A checkpoint
is only written after an epoch whose loss and weights are finite, so a diverged run keeps the last
good one. bf16 autocast is the default on CUDA, channels_last everywhere (on the CPU too: its
convolutions ran 1.2-1.46x faster in ``optnb bench --suite compile``); ``torch.compile`` and DDP
(``torchrun``) are options. A callback's ``stop_reason`` may end a fit after an epoch (recorded as
``stopped_early``; the run is then complete and a resume trains no further).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from optnb.models import count_params
from optnb.train import compiling, distributed, rehearsal_overlay
from optnb.train.callbacks import LOG_NAME, Callback, JsonlLogger
from optnb.train.checkpoint import (
    CHECKPOINT_NAME,
    FORMAT,
    REMEDY,
    CheckpointCorruptError,
    CheckpointError,
    CheckpointExistsError,
    Stateful,
    check_optimizer,
    check_tensors,
    load_checkpoint,
    rng_state,
    save_atomic,
    set_rng_state,
)
from optnb.train.evaluation import evaluate, held_out_metrics
from optnb.train.recipes import Recipe
from optnb.train.steps import Step, StepFactory, classifier_step


class TrainingDivergedError(FloatingPointError):
    """The loss (or a weight) became NaN/inf; the message names the last good checkpoint."""


class Loader(Protocol):
    """Batches ``(x, y)`` on the device, and a data order that a checkpoint can restore."""

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...
    def __len__(self) -> int: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Schedule(Protocol):
    """How long to train and at which learning rate: a ``Recipe``, ``SearchConfig``, ``EvalConfig``."""

    epochs: int

    def lr_at(self, epoch: int, epochs: int | None = None) -> float: ...


@dataclass
class FitOptions:
    """How to run a schedule. ``None`` means "the sensible default for the device"."""

    epochs: int | None = None             # planned epochs (default: the schedule's)
    steps_per_epoch: int | None = None    # cap per epoch (smoke runs, benchmarks)
    stop_after: int | None = None         # stop cleanly once this many epochs are done in total
    eval_every: int = 1                   # evaluate every k epochs; 0: only after the last
    eval_split: str = "test"              # names the held-out metrics: test_error, val_loss, ...
    eval_samples: int | None = None       # evaluate on the first N held-out images only
    amp: bool | None = None               # bf16 autocast (default: on CUDA)
    channels_last: bool | None = None     # default: on (CUDA and CPU: benchmarks/RESULTS.md)
    compile: bool | str = False           # True, a torch.compile mode or backend (train.compiling)
    resume: bool = False                  # continue from <run_dir>/checkpoint.pt if present
    restart: bool = False                 # without resume: replace an existing checkpoint
    checkpoint: bool = True               # write <run_dir>/checkpoint.pt every epoch
    log_every: int = 10                   # step-level loss records and callbacks (0: none)
    check_every: int | None = None        # NaN check period in steps (default 1 CPU, 25 CUDA)
    sync_bn: bool = False                 # SyncBatchNorm under DDP
    identity: dict[str, Any] = field(default_factory=dict)  # what the run is, checked on resume


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    epochs_run: int
    epochs_planned: int
    train_time_s: float  # the training steps of every epoch, over all resumes
    wall_s: float        # everything (steps, evaluation, checkpoints), over all resumes
    resumed_from: int = 0
    checkpoint: Path | None = None
    params: int = 0

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}

    @property
    def stopped_early(self) -> str | None:
        """The reason a callback ended the fit before its planned epochs (``stop_reason``), or None."""
        return self.final.get("stopped_early")

    @property
    def complete(self) -> bool:
        """Finished: every planned epoch, or stopped early by a callback (a resume trains no more)."""
        return self.epochs_run >= self.epochs_planned or self.stopped_early is not None

    def summary(self) -> dict[str, Any]:
        last = self.final
        held_out = {k: v for k, v in last.items() if k.endswith(("_error", "_loss"))}
        stopped = {"stopped_early": self.stopped_early} if self.stopped_early is not None else {}
        return {"epochs": self.epochs_run, "epochs_planned": self.epochs_planned,
                "train_time_s": self.train_time_s, "wall_s": self.wall_s,
                "resumed_from": self.resumed_from, "params": self.params,
                "complete": self.complete, **held_out, **stopped}


@dataclass(frozen=True)
class _Plan:
    """``FitOptions`` made concrete for one fit: the device's defaults filled in."""

    device: torch.device
    amp: bool
    channels_last: bool
    check_every: int
    epochs: int       # planned (the schedule's length)
    stop: int         # where this call stops
    batches: int      # steps per epoch
    path: Path | None  # the checkpoint

    @classmethod
    def of(cls, opts: FitOptions, schedule: Schedule, model: nn.Module, train: Loader,
           device: torch.device | str | None, run_dir: str | Path | None) -> _Plan:
        dev = torch.device(device) if device is not None else next(model.parameters()).device
        cuda = dev.type == "cuda"
        epochs = opts.epochs or schedule.epochs
        return cls(dev, cuda if opts.amp is None else opts.amp,
                   True if opts.channels_last is None else opts.channels_last,
                   opts.check_every or (25 if cuda else 1), epochs,
                   min(epochs, opts.stop_after) if opts.stop_after else epochs,
                   len(train) if opts.steps_per_epoch is None else min(len(train), opts.steps_per_epoch),
                   Path(run_dir) / CHECKPOINT_NAME if run_dir is not None else None)


def make_optimizer(model: nn.Module, recipe: Recipe, device: torch.device) -> torch.optim.SGD:
    """SGD (Nesterov per recipe), weight decay on every parameter (DenseNet/CliqueNet practice);
    the fused kernel (one pass over each weight; on the CPU too, where it takes 0.4x the time of
    the multi-tensor path: ``benchmarks/RESULTS.md``)."""
    return torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                           nesterov=recipe.nesterov, weight_decay=recipe.weight_decay, fused=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _finite_weights(model: nn.Module) -> bool:
    norms = torch._foreach_norm([p.detach() for p in model.parameters()])
    return bool(torch.isfinite(torch.stack(norms)).all()) if norms else True


@dataclass
class _Run:
    """The mutable state of one fit: what a checkpoint saves and restores."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    train: Loader
    state: Mapping[str, Stateful]
    identity: dict[str, Any]
    planned: int
    epoch: int = 0
    step: int = 0
    train_time_s: float = 0.0
    wall_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

    def checkpoint(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "identity": self.identity, "epoch": self.epoch, "step": self.step,
            "train_time_s": self.train_time_s, "wall_s": self.wall_s, "history": self.history,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "data": self.train.state_dict(), "rng": rng_state(),
            "state": {name: obj.state_dict() for name, obj in self.state.items()},
        }

    def restore(self, path: Path, device: torch.device) -> None:
        """Load ``path`` into this run. It is verified first (checksum, format, identity, content, the
        model's names, shapes and dtypes); what still does not fit while loading is refused in one
        line too, and the fit stops before anything is trained or written."""
        saved = load_checkpoint(path, map_location=device, identity=self.identity, names=tuple(self.state))
        check_tensors(saved["model"], self.model.state_dict(), path)
        try:
            self.model.load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.train.load_state_dict(saved["data"])
            for name, obj in self.state.items():
                obj.load_state_dict(saved["state"][name])
            set_rng_state(saved["rng"])
        except (RuntimeError, KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
            raise CheckpointCorruptError(
                f"checkpoint {path} does not fit this run ({type(err).__name__}: {_first(err)}); {REMEDY}") from err
        check_optimizer(self.optimizer, path)
        self.epoch, self.step = int(saved["epoch"]), int(saved["step"])
        self.train_time_s, self.wall_s = float(saved["train_time_s"]), float(saved["wall_s"])
        self.history = list(saved["history"])


def _first(err: BaseException, limit: int = 160) -> str:
    """An exception's message on one line, shortened."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _open(run: _Run, path: Path | None, opts: FitOptions, device: torch.device) -> None:
    """Resume ``run`` from ``path``, or make sure a fresh start overwrites nothing unasked.

    Whatever is refused (another run's checkpoint, a damaged one, something that is not a file) is
    left as it is: nothing is written before this returns."""
    if path is None or not (path.exists() or path.is_symlink()):
        return
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file, so it cannot be a checkpoint; move it away, or use "
                              "another run folder")
    if opts.resume:
        run.restore(path, device)
    elif not opts.restart:
        raise CheckpointExistsError(
            f"a checkpoint already exists at {path}; resume it (resume=True / --resume) "
            "or use another run folder: a fresh start would overwrite it")


def run_epoch(run: _Run, step: Step, plan: _Plan, callbacks: Sequence[Callback],
              log_every: int) -> dict[str, Any]:
    """One pass of ``step`` over (at most ``plan.batches``) training batches; the epoch's averages."""
    device = plan.device
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss * n, correct, n
    extra: dict[str, torch.Tensor] = {}
    done = 0
    _sync(device)
    t0 = time.perf_counter()
    for i, (x, y) in enumerate(run.train):
        if i >= plan.batches:
            break
        out = step(x, y)
        run.step += 1
        done += 1
        with torch.no_grad():
            sums += torch.stack([out.loss.double() * len(y), (out.logits.argmax(1) == y).sum().double(),
                                 torch.tensor(float(len(y)), dtype=torch.float64, device=device)])
            for key, value in out.extra.items():
                extra[key] = extra.get(key, 0.0) + value.double()
        if run.step % plan.check_every == 0 and not math.isfinite(out.loss.item()):
            _diverged(out.loss.item(), run, plan.path)
        if callbacks and log_every and run.step % log_every == 0:
            record = {"loss": out.loss.item(), "epoch": run.epoch + (i + 1) / plan.batches}
            for cb in callbacks:
                cb.on_step(run.step, record)
    _sync(device)
    seconds = time.perf_counter() - t0
    sums = distributed.all_reduce_sum(sums)
    n = max(float(sums[2]), 1.0)
    metrics = {"train_loss": float(sums[0]) / n, "train_acc": 100 * float(sums[1]) / n,
               "epoch_s": seconds, "images_per_s": float(sums[2]) / max(seconds, 1e-9)}
    metrics.update({k: float(v) / max(done, 1) for k, v in extra.items()})
    return metrics


def train_epoch(run: _Run, step: Step, schedule: Schedule, plan: _Plan, test: Iterable | None,
                opts: FitOptions, callbacks: Sequence[Callback]) -> dict[str, Any]:
    """Epoch ``run.epoch``: its learning rate, the steps, the divergence check, the held-out
    evaluation when due; returns the epoch's record (``run`` has moved on by one epoch)."""
    t0 = time.perf_counter()
    epoch = run.epoch
    lr = schedule.lr_at(epoch, plan.epochs)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    run.model.train()
    record: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, **step.start_epoch(epoch)}
    record.update(run_epoch(run, step, plan, callbacks, opts.log_every))
    if not math.isfinite(record["train_loss"]) or not _finite_weights(run.model):
        _diverged(record["train_loss"], run, plan.path)
    record["step"] = run.step
    due = opts.eval_every and (epoch + 1) % opts.eval_every == 0
    if test is not None and (due or epoch + 1 == plan.epochs):
        result = evaluate(run.model, test, plan.device, amp=plan.amp, max_samples=opts.eval_samples)
        record.update(held_out_metrics(result, opts.eval_split))
    record.update(step.end_epoch())
    run.epoch = epoch + 1
    run.train_time_s += record["epoch_s"]
    run.wall_s += time.perf_counter() - t0
    record["wall_s"] = run.wall_s
    run.history.append(record)
    return record


def _diverged(value: float, run: _Run, path: Path | None) -> None:
    done = len(run.history)
    if path is not None and path.exists() and done:
        keep = f"the last good checkpoint {path} (epoch {done}/{run.planned}) is kept"
    else:
        keep = "no checkpoint was written"
    lr = run.optimizer.param_groups[0]["lr"]
    raise TrainingDivergedError(
        f"training diverged: loss is {value} at epoch {run.epoch + 1}, step {run.step} (lr {lr:g}); "
        f"stopped without saving this epoch; {keep}. Lower the learning rate or check the data, "
        "then resume")


def _prepare(model: nn.Module, plan: _Plan) -> nn.Module:
    model = model.to(plan.device)
    return model.to(memory_format=torch.channels_last) if plan.channels_last else model


def _wrap(model: nn.Module, opts: FitOptions, plan: _Plan) -> nn.Module:
    """What the step runs the forward through: the model, or its DDP wrapper under torchrun."""
    return distributed.wrap(model, distributed.current(), plan.device, sync_bn=opts.sync_bn)


def _compile(step: Step, spec: bool | str) -> Step:
    """Compile what ``step`` runs per batch (``optnb.train.compiling``) when ``spec`` asks for it."""
    if compiling.compile_kwargs(spec) is None:
        return step
    if not hasattr(step, "compile"):
        raise compiling.CompileOptionError(f"a {type(step).__name__} cannot be compiled; "
                                           "run it with compile off")
    step.compile(spec)
    return step


def fit(model: nn.Module, train: Loader, schedule: Schedule, *, test: Iterable | None = None,
        optimizer: torch.optim.Optimizer | None = None, make_step: StepFactory = classifier_step,
        state: Mapping[str, Stateful] | None = None, device: torch.device | str | None = None,
        run_dir: str | Path | None = None, callbacks: Sequence[Callback] = (),
        options: FitOptions | None = None) -> FitResult:
    """Train ``model`` on ``train`` for ``schedule``; evaluate on ``test`` (see the module docstring).

    ``optimizer`` defaults to :func:`make_optimizer` of a ``Recipe`` schedule; the schedule sets its
    learning rate at the start of every epoch. ``make_step(net, optimizer, amp)`` builds the step
    from the prepared network (moved to the device, wrapped for DDP); the default is a
    ``ClassifierStep``; ``options.compile`` then compiles the step's per-batch work
    (``step.compile``). ``state`` names the other objects the checkpoint must restore.

    With ``run_dir``: writes ``checkpoint.pt`` after every good epoch (rank 0, atomically) and the
    JSONL log ``metrics.jsonl``. Raises :class:`TrainingDivergedError` on a NaN/inf loss,
    ``CheckpointExistsError`` when a checkpoint is present and neither ``options.resume`` nor
    ``options.restart`` is set, ``CheckpointMismatchError`` when resuming another run's checkpoint,
    another ``CheckpointError`` when resuming one that is damaged or inconsistent (the file is kept).
    """
    opts = rehearsal_overlay.fit_options(options or FitOptions())  # a no-op outside a rehearsal
    compiling.compile_kwargs(opts.compile)  # an unknown option fails before anything is built
    plan = _Plan.of(opts, schedule, model, train, device, run_dir)
    main = distributed.current().is_main
    raw = _prepare(model, plan)
    if optimizer is None:
        if not isinstance(schedule, Recipe):
            raise TypeError(f"fit needs an optimizer for a {type(schedule).__name__} schedule")
        optimizer = make_optimizer(raw, schedule, plan.device)
    run = _Run(raw, optimizer, train, dict(state or {}),
               {**opts.identity, "epochs_planned": plan.epochs}, plan.epochs)
    _open(run, plan.path, opts, plan.device)
    resumed_from = run.epoch
    step = _compile(make_step(_wrap(raw, opts, plan), optimizer, plan.amp), opts.compile)
    cbs = _callbacks(callbacks, run_dir, main)
    for cb in cbs:
        cb.on_fit_start({"start_epoch": run.epoch, "start_step": run.step, "epochs_planned": plan.epochs,
                         "params": count_params(raw), "device": str(plan.device),
                         "world_size": distributed.current().world_size, "amp": plan.amp,
                         "channels_last": plan.channels_last, "compile": str(opts.compile),
                         **opts.identity})
    stopped = bool(run.history) and run.history[-1].get("stopped_early") is not None
    epochs: Iterable[int] = range(run.epoch, run.epoch if stopped else plan.stop)
    for cb in cbs:
        epochs = cb.wrap_epochs(epochs)
    for epoch in epochs:
        record = train_epoch(run, step, schedule, plan, test, opts, cbs)
        reason = _stop_reason(cbs, run, plan, test, opts)
        # the log before the checkpoint: a crash between the two leaves a log record the next
        # resume drops (JsonlLogger keeps what the checkpoint covers), never a lost one
        for cb in cbs:
            cb.on_epoch_end(epoch, record)
        if main and plan.path is not None and opts.checkpoint:
            save_atomic(run.checkpoint(), plan.path)
        distributed.barrier()
        if reason is not None:
            break
    result = FitResult(run.history, run.epoch, plan.epochs, run.train_time_s, run.wall_s, resumed_from,
                       plan.path if plan.path is not None and plan.path.exists() else None,
                       count_params(raw))
    for cb in cbs:
        cb.on_fit_end(result)
    return result


def _stop_reason(cbs: Sequence[Callback], run: _Run, plan: _Plan, test: Iterable | None,
                 opts: FitOptions) -> str | None:
    """The first callback's reason to stop after this epoch (rank 0 decides, every rank stops).

    A stopping epoch is recorded as ``stopped_early`` and, if it had no held-out evaluation (the
    ``eval_every`` period), is evaluated now: the last record always has held-out metrics. The
    last planned epoch is never "early"."""
    if run.epoch >= plan.epochs:
        return None
    reason = next((r for cb in cbs if (r := cb.stop_reason(run.history)) is not None), None)
    stop = reason is not None
    if distributed.current().enabled:  # callbacks run on rank 0 only
        stop = float(distributed.all_reduce_sum(torch.tensor([float(stop)], device=plan.device))[0]) > 0
    if not stop:
        return None
    record = run.history[-1]
    record["stopped_early"] = reason or "stopped early by rank 0"
    if test is not None and f"{opts.eval_split}_loss" not in record:
        result = evaluate(run.model, test, plan.device, amp=plan.amp, max_samples=opts.eval_samples)
        record.update(held_out_metrics(result, opts.eval_split))
    return record["stopped_early"]


def _callbacks(callbacks: Sequence[Callback], run_dir: str | Path | None, main: bool) -> list[Callback]:
    """Rank 0's callbacks, led by the run folder's JSONL log."""
    if not main:
        return []
    log = [JsonlLogger(Path(run_dir) / LOG_NAME)] if run_dir is not None else []
    return [*log, *callbacks]
