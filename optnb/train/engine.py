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
good one. bf16 autocast and channels_last are the defaults on CUDA; ``torch.compile`` and DDP
(``torchrun``) are options.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from optnb.models import count_params
from optnb.train import distributed
from optnb.train.callbacks import LOG_NAME, Callback, JsonlLogger
from optnb.train.checkpoint import (
    CHECKPOINT_NAME,
    FORMAT,
    CheckpointExistsError,
    Stateful,
    check_identity,
    load_checkpoint,
    rng_state,
    save_atomic,
    set_rng_state,
)
from optnb.train.recipes import Recipe


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
class StepOutput:
    """What one step reports: the minimised loss and the logits (both detached), and any other
    per-step scalars to average over the epoch (e.g. the search's validation loss)."""

    loss: torch.Tensor
    logits: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


class Step(Protocol):
    """One update from one batch. ``start_epoch``/``end_epoch`` return what the epoch record
    should say about the step's own state (a drop-path probability, the architecture weights)."""

    def start_epoch(self, epoch: int) -> dict[str, Any]: ...
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> StepOutput: ...
    def end_epoch(self) -> dict[str, Any]: ...


@dataclass
class ClassifierStep:
    """Forward, cross-entropy (plus ``aux_weight`` x the auxiliary head's, when the network returns
    ``(logits, aux)``), backward, optional gradient-norm clipping, one optimiser update."""

    net: nn.Module  # what the forward runs through: the model, or its DDP/compiled wrapper
    optimizer: torch.optim.Optimizer
    amp: bool = False  # bf16 autocast
    grad_clip: float | None = None
    label_smoothing: float = 0.0
    aux_weight: float = 0.0
    forward_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.device_type = next(self.net.parameters()).device.type
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]

    def start_epoch(self, epoch: int) -> dict[str, Any]:
        return {}

    def end_epoch(self) -> dict[str, Any]:
        return {}

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.net(x, **self.forward_kwargs)
        logits, aux = out if isinstance(out, tuple) else (out, None)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        if aux is not None and self.aux_weight:
            loss = loss + self.aux_weight * F.cross_entropy(aux.float(), y,
                                                            label_smoothing=self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        return StepOutput(loss.detach(), logits.detach())


#: ``make_step(net, optimizer, amp) -> Step``: how a task turns the prepared network into its step
StepFactory = Callable[[nn.Module, torch.optim.Optimizer, bool], Step]


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
    channels_last: bool | None = None     # default: on CUDA
    compile: bool | str = False           # True or a torch.compile mode
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
    def complete(self) -> bool:
        return self.epochs_run >= self.epochs_planned

    def summary(self) -> dict[str, Any]:
        last = self.final
        held_out = {k: v for k, v in last.items() if k.endswith(("_error", "_loss"))}
        return {"epochs": self.epochs_run, "epochs_planned": self.epochs_planned,
                "train_time_s": self.train_time_s, "wall_s": self.wall_s,
                "resumed_from": self.resumed_from, "params": self.params,
                "complete": self.complete, **held_out}


def make_optimizer(model: nn.Module, recipe: Recipe, device: torch.device) -> torch.optim.SGD:
    """SGD (Nesterov per recipe), weight decay on every parameter (DenseNet/CliqueNet practice);
    the fused kernel on CUDA, the multi-tensor (foreach) path on CPU."""
    kw: dict[str, Any] = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                           nesterov=recipe.nesterov, weight_decay=recipe.weight_decay, **kw)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _finite_weights(model: nn.Module) -> bool:
    norms = torch._foreach_norm([p.detach() for p in model.parameters()])
    return bool(torch.isfinite(torch.stack(norms)).all()) if norms else True


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: torch.device, amp: bool = False,
             max_samples: int | None = None) -> dict[str, float]:
    """Mean cross-entropy, top-1 and top-5 accuracy (%) over ``loader`` (summed over ranks).

    Networks that return ``(logits, aux)`` are scored on their logits.
    """
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, top5, n
    for x, y in loader:
        if max_samples is not None and sums[3] >= max_samples:
            break
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(x)
        out = (out[0] if isinstance(out, tuple) else out).float()
        top = out.topk(min(5, out.shape[1]), dim=1).indices
        hit = top.eq(y[:, None])
        sums += torch.stack([F.cross_entropy(out, y, reduction="sum").double(),
                             hit[:, 0].sum().double(), hit.any(1).sum().double(),
                             torch.tensor(float(len(y)), dtype=torch.float64, device=device)])
    model.train(was_training)
    sums = distributed.all_reduce_sum(sums)
    n = max(float(sums[3]), 1.0)
    return {"loss": float(sums[0]) / n, "acc": 100 * float(sums[1]) / n,
            "top5_acc": 100 * float(sums[2]) / n, "n": int(sums[3])}


def held_out_metrics(result: Mapping[str, float], split: str) -> dict[str, Any]:
    """``evaluate``'s numbers under the record's names: ``<split>_loss``, ``_acc``, ``_error``,
    ``_top5_error`` (percent) and ``_samples``."""
    return {f"{split}_loss": result["loss"], f"{split}_acc": result["acc"],
            f"{split}_error": 100 - result["acc"], f"{split}_top5_error": 100 - result["top5_acc"],
            f"{split}_samples": result["n"]}


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
        saved = load_checkpoint(path, map_location=device)
        check_identity(saved, self.identity, path)
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.train.load_state_dict(saved["data"])
        for name, obj in self.state.items():
            obj.load_state_dict(saved["state"][name])
        set_rng_state(saved["rng"])
        self.epoch, self.step = int(saved["epoch"]), int(saved["step"])
        self.train_time_s, self.wall_s = float(saved["train_time_s"]), float(saved["wall_s"])
        self.history = list(saved["history"])


def _open(run: _Run, path: Path | None, opts: FitOptions, device: torch.device) -> None:
    """Resume ``run`` from ``path``, or make sure a fresh start overwrites nothing unasked."""
    if path is None or not path.exists():
        return
    if opts.resume:
        run.restore(path, device)
    elif not opts.restart:
        raise CheckpointExistsError(
            f"a checkpoint already exists at {path}; resume it (resume=True / --resume) "
            "or use another run folder: a fresh start would overwrite it")


def run_epoch(run: _Run, step: Step, batches: int, check_every: int, callbacks: Sequence[Callback],
              log_every: int, path: Path | None) -> dict[str, Any]:
    """One pass of ``step`` over (at most ``batches``) training batches; the epoch's averages."""
    device = next(run.model.parameters()).device
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss * n, correct, n
    extra: dict[str, torch.Tensor] = {}
    done = 0
    _sync(device)
    t0 = time.perf_counter()
    for i, (x, y) in enumerate(run.train):
        if i >= batches:
            break
        out = step(x, y)
        run.step += 1
        done += 1
        with torch.no_grad():
            sums += torch.stack([out.loss.double() * len(y), (out.logits.argmax(1) == y).sum().double(),
                                 torch.tensor(float(len(y)), dtype=torch.float64, device=device)])
            for key, value in out.extra.items():
                extra[key] = extra.get(key, 0.0) + value.double()
        if run.step % check_every == 0 and not math.isfinite(out.loss.item()):
            _diverged(out.loss.item(), run, path)
        if callbacks and log_every and run.step % log_every == 0:
            record = {"loss": out.loss.item(), "epoch": run.epoch + (i + 1) / batches}
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


def _default_step(net: nn.Module, optimizer: torch.optim.Optimizer, amp: bool) -> Step:
    return ClassifierStep(net, optimizer, amp=amp)


def fit(model: nn.Module, train: Loader, schedule: Schedule, *, test: Iterable | None = None,
        optimizer: torch.optim.Optimizer | None = None, make_step: StepFactory = _default_step,
        state: Mapping[str, Stateful] | None = None, device: torch.device | str | None = None,
        run_dir: str | Path | None = None, callbacks: Sequence[Callback] = (),
        options: FitOptions | None = None) -> FitResult:
    """Train ``model`` on ``train`` for ``schedule``; evaluate on ``test`` (see the module docstring).

    ``optimizer`` defaults to :func:`make_optimizer` of a ``Recipe`` schedule; the schedule sets its
    learning rate at the start of every epoch. ``make_step(net, optimizer, amp)`` builds the step
    from the prepared network (moved to the device, wrapped for DDP, compiled); the default is a
    :class:`ClassifierStep`. ``state`` names the other objects the checkpoint must restore.

    With ``run_dir``: writes ``checkpoint.pt`` after every good epoch (rank 0, atomically) and the
    JSONL log ``metrics.jsonl``. Raises :class:`TrainingDivergedError` on a NaN/inf loss,
    ``CheckpointExistsError`` when a checkpoint is present and neither ``options.resume`` nor
    ``options.restart`` is set, ``CheckpointMismatchError`` when resuming another run's checkpoint.
    """
    opts = options or FitOptions()
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    info = distributed.current()
    cuda = dev.type == "cuda"
    amp = cuda if opts.amp is None else opts.amp
    channels_last = cuda if opts.channels_last is None else opts.channels_last
    check_every = opts.check_every or (25 if cuda else 1)
    planned = opts.epochs or schedule.epochs
    folder = Path(run_dir) if run_dir is not None else None
    path = folder / CHECKPOINT_NAME if folder is not None else None
    cbs = list(callbacks) if info.is_main else []
    if info.is_main and folder is not None:
        cbs.insert(0, JsonlLogger(folder / LOG_NAME))

    raw = model.to(dev)
    if channels_last:
        raw = raw.to(memory_format=torch.channels_last)
    if optimizer is None:
        if not isinstance(schedule, Recipe):
            raise TypeError(f"fit needs an optimizer for a {type(schedule).__name__} schedule")
        optimizer = make_optimizer(raw, schedule, dev)
    run = _Run(raw, optimizer, train, dict(state or {}),
               {**opts.identity, "epochs_planned": planned}, planned)
    _open(run, path, opts, dev)
    resumed_from = run.epoch

    net = distributed.wrap(raw, info, dev, sync_bn=opts.sync_bn)
    if opts.compile:
        net = torch.compile(net, mode=None if opts.compile is True else opts.compile)
    step = make_step(net, optimizer, amp)
    stop = min(planned, opts.stop_after) if opts.stop_after else planned
    batches = len(train) if opts.steps_per_epoch is None else min(len(train), opts.steps_per_epoch)
    for cb in cbs:
        cb.on_fit_start({"start_epoch": run.epoch, "start_step": run.step, "epochs_planned": planned,
                         "params": count_params(raw), "device": str(dev),
                         "world_size": info.world_size, "amp": amp, "channels_last": channels_last,
                         "compile": str(opts.compile), **opts.identity})
    epochs: Iterable[int] = range(run.epoch, stop)
    for cb in cbs:
        epochs = cb.wrap_epochs(epochs)

    for epoch in epochs:
        t0 = time.perf_counter()
        lr = schedule.lr_at(epoch, planned)
        for group in optimizer.param_groups:
            group["lr"] = lr
        net.train()
        record: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, **step.start_epoch(epoch)}
        record.update(run_epoch(run, step, batches, check_every, cbs, opts.log_every, path))
        if not math.isfinite(record["train_loss"]) or not _finite_weights(raw):
            _diverged(record["train_loss"], run, path)
        record["step"] = run.step
        last = epoch + 1 == planned
        if test is not None and (last or (opts.eval_every and (epoch + 1) % opts.eval_every == 0)):
            result = evaluate(raw, test, dev, amp=amp, max_samples=opts.eval_samples)
            record.update(held_out_metrics(result, opts.eval_split))
        record.update(step.end_epoch())
        run.epoch = epoch + 1
        run.train_time_s += record["epoch_s"]
        run.wall_s += time.perf_counter() - t0
        record["wall_s"] = run.wall_s
        run.history.append(record)
        if info.is_main and path is not None and opts.checkpoint:
            save_atomic(run.checkpoint(), path)
        for cb in cbs:
            cb.on_epoch_end(epoch, record)
        distributed.barrier()

    result = FitResult(run.history, run.epoch, planned, run.train_time_s, run.wall_s, resumed_from,
                       path if path is not None and path.exists() else None, count_params(raw))
    for cb in cbs:
        cb.on_fit_end(result)
    return result
