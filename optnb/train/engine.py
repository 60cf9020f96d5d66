"""The fit loop: SGD with a step schedule, bf16 autocast + channels_last on CUDA, optional
``torch.compile``, per-epoch atomic checkpoints, exact resume, divergence guard, DDP.

Resume is exact: a checkpoint holds the model (with BatchNorm buffers), the optimizer (momentum
buffers), the scheduler, the epoch, every RNG (python, numpy, torch CPU/CUDA) and the loader's
data-order state, so on CPU "2 epochs straight" and "1 epoch, resume, 1 epoch" give bitwise equal
weights (tests/test_train_engine.py). A checkpoint is only written after an epoch whose loss and
weights are finite, so a diverged run keeps the last good one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from optnb.train import distributed
from optnb.train.callbacks import Callback
from optnb.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_atomic,
    set_rng_state,
)
from optnb.train.recipes import Recipe

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "optnb.train/1"


class TrainingDivergedError(FloatingPointError):
    """The loss (or a weight) became NaN/inf; the message names the last good checkpoint."""


class CheckpointExistsError(CheckpointError, ValueError):
    """Starting afresh would overwrite a checkpoint; resume it or use another run folder."""


class CheckpointMismatchError(CheckpointError, ValueError):
    """The checkpoint belongs to a different model/dataset/schedule than the one requested."""


class Loader(Protocol):
    def __iter__(self) -> Any: ...
    def __len__(self) -> int: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class FitOptions:
    """How to run a recipe. ``None`` means "the sensible default for the device"."""

    epochs: int | None = None             # planned epochs (the schedule's length)
    steps_per_epoch: int | None = None    # cap per epoch (smoke runs, benchmarks)
    stop_after: int | None = None         # stop cleanly once this many epochs are done in total
    eval_samples: int | None = None       # evaluate on the first N test images only
    amp: bool | None = None               # bf16 autocast (default: on CUDA)
    channels_last: bool | None = None     # default: on CUDA
    compile: bool | str = False           # True or a torch.compile mode
    resume: bool = False                  # continue from <run_dir>/checkpoint.pt if present
    checkpoint: bool = True               # write <run_dir>/checkpoint.pt every epoch
    log_every: int = 10                   # step-level loss records (0: none)
    check_every: int | None = None        # NaN check period in steps (default 1 CPU, 25 CUDA)
    sync_bn: bool = False                 # SyncBatchNorm under DDP
    meta: dict[str, Any] = field(default_factory=dict)  # identity, checked on resume


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    epochs_run: int
    epochs_planned: int
    train_time_s: float
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
        return {
            "epochs": self.epochs_run, "epochs_planned": self.epochs_planned,
            "train_time_s": self.train_time_s, "resumed_from": self.resumed_from,
            "params": self.params, "test_error": last.get("test_error"),
            "top5_error": last.get("top5_error"), "test_loss": last.get("test_loss"),
            "train_loss": last.get("train_loss"), "complete": self.complete,
        }


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def make_optimizer(model: torch.nn.Module, recipe: Recipe, device: torch.device) -> torch.optim.SGD:
    """SGD (Nesterov per recipe), weight decay on every parameter (DenseNet/CliqueNet practice);
    the fused kernel on CUDA, the multi-tensor (foreach) path on CPU."""
    kw: dict[str, Any] = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                           nesterov=recipe.nesterov, weight_decay=recipe.weight_decay, **kw)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _finite_weights(model: torch.nn.Module) -> bool:
    norms = torch._foreach_norm([p.detach() for p in model.parameters()])
    return bool(torch.isfinite(torch.stack(norms)).all()) if norms else True


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: Iterable, device: torch.device,
             amp: bool = False, max_samples: int | None = None) -> dict[str, float]:
    """Mean cross-entropy, top-1 and top-5 accuracy (%) over ``loader`` (summed over ranks)."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, top5, n
    for x, y in loader:
        if max_samples is not None and sums[3] >= max_samples:
            break
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(x)
        out = out.float()
        k = min(5, out.shape[1])
        top = out.topk(k, dim=1).indices
        hit = top.eq(y[:, None])
        sums += torch.stack([F.cross_entropy(out, y, reduction="sum").double(),
                             hit[:, 0].sum().double(), hit.any(1).sum().double(),
                             torch.tensor(float(len(y)), dtype=torch.float64, device=device)])
    model.train(was_training)
    sums = distributed.all_reduce_sum(sums)
    n = max(float(sums[3]), 1.0)
    return {"loss": float(sums[0]) / n, "acc": 100 * float(sums[1]) / n,
            "top5_acc": 100 * float(sums[2]) / n, "n": int(sums[3])}


def _check_meta(state: dict[str, Any], meta: dict[str, Any], path: Path) -> None:
    stored = state.get("meta", {})
    diff = [f"{k}: checkpoint {stored[k]!r} vs requested {v!r}" for k, v in meta.items()
            if k in stored and stored[k] != v]
    if diff:
        raise CheckpointMismatchError(f"checkpoint {path} is for another run ({'; '.join(diff)}); "
                                      "use another run folder or the matching settings")


def fit(model: torch.nn.Module, train: Loader, recipe: Recipe, *, test: Iterable | None = None,
        device: torch.device | str | None = None, run_dir: str | Path | None = None,
        callbacks: Sequence[Callback] = (), options: FitOptions | None = None) -> FitResult:
    """Train ``model`` with ``recipe`` on ``train`` batches; evaluate on ``test`` every epoch.

    Writes ``<run_dir>/checkpoint.pt`` after every good epoch (rank 0, atomically). Raises
    :class:`TrainingDivergedError` on a NaN/inf loss, :class:`CheckpointExistsError` when a
    checkpoint is present and ``options.resume`` is false (nothing is ever overwritten by a fresh
    start), :class:`CheckpointMismatchError` when resuming another run's checkpoint.
    """
    opts = options or FitOptions()
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    info = distributed.current()
    cuda = dev.type == "cuda"
    amp = cuda if opts.amp is None else opts.amp
    channels_last = cuda if opts.channels_last is None else opts.channels_last
    check_every = opts.check_every or (25 if cuda else 1)
    planned = opts.epochs or recipe.epochs
    ckpt_path = Path(run_dir) / CHECKPOINT_NAME if run_dir is not None else None
    cbs = list(callbacks) if info.is_main else []

    raw = model.to(dev)
    if channels_last:
        raw = raw.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(raw, recipe, dev)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, recipe.milestone_epochs(planned), gamma=recipe.gamma)
    history: list[dict[str, Any]] = []
    start, train_time, step = 0, 0.0, 0
    if ckpt_path is not None and ckpt_path.exists():
        if not opts.resume:
            raise CheckpointExistsError(
                f"a checkpoint already exists at {ckpt_path}; resume it (resume=True / --resume) "
                "or use another run folder: a fresh start would overwrite it")
        state = load_checkpoint(ckpt_path, map_location=dev)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{ckpt_path} is not an {CHECKPOINT_FORMAT} checkpoint "
                                  f"(format {state.get('format')!r}); use another run folder")
        _check_meta(state, {**opts.meta, "epochs_planned": planned}, ckpt_path)
        raw.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        train.load_state_dict(state["data"])
        set_rng_state(state["rng"])
        start, train_time, step = state["epoch"], state["train_time_s"], state["step"]
        history = list(state["history"])
    resumed_from = start

    net = distributed.wrap(raw, info, dev, sync_bn=opts.sync_bn)
    if opts.compile:
        net = torch.compile(net, mode=None if opts.compile is True else opts.compile)
    stop = min(planned, opts.stop_after) if opts.stop_after else planned
    batches = len(train) if opts.steps_per_epoch is None else min(len(train), opts.steps_per_epoch)
    for cb in cbs:
        cb.on_fit_start({"epochs_planned": planned, "start_epoch": start, "recipe": recipe.name,
                         "params": count_params(raw), "device": str(dev),
                         "world_size": info.world_size, "amp": amp,
                         "channels_last": channels_last, "compile": str(opts.compile), **opts.meta})
    epochs: Iterable[int] = range(start, stop)
    for cb in cbs:
        epochs = cb.wrap_epochs(epochs)

    for epoch in epochs:
        net.train()
        lr = optimizer.param_groups[0]["lr"]
        sums = torch.zeros(3, dtype=torch.float64, device=dev)  # loss*n, correct, n
        _sync(dev)
        t0 = time.perf_counter()
        for i, (x, y) in enumerate(train):
            if i >= batches:
                break
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                out = net(x)
                loss = F.cross_entropy(out.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            with torch.no_grad():
                sums += torch.stack([loss.detach().double() * len(y),
                                     (out.argmax(1) == y).sum().double(),
                                     torch.tensor(float(len(y)), dtype=torch.float64, device=dev)])
            if step % check_every == 0 and not math.isfinite(loss.item()):
                _diverged(loss.item(), epoch, step, lr, ckpt_path, history, planned)
            if cbs and opts.log_every and step % opts.log_every == 0:
                for cb in cbs:
                    cb.on_step(step, {"loss": loss.item(), "epoch": epoch + (i + 1) / batches})
        _sync(dev)
        seconds = time.perf_counter() - t0
        train_time += seconds
        sums = distributed.all_reduce_sum(sums)
        n = max(float(sums[2]), 1.0)
        train_loss = float(sums[0]) / n
        if not math.isfinite(train_loss) or not _finite_weights(raw):
            _diverged(train_loss, epoch, step, lr, ckpt_path, history, planned)
        scheduler.step()
        metrics: dict[str, Any] = {
            "epoch": epoch + 1, "step": step, "lr": lr, "train_loss": train_loss,
            "train_acc": 100 * float(sums[1]) / n, "epoch_time_s": seconds,
            "images_per_s": float(sums[2]) / max(seconds, 1e-9),
        }
        if test is not None:
            ev = evaluate(raw, test, dev, amp=amp, max_samples=opts.eval_samples)
            metrics.update(test_loss=ev["loss"], test_acc=ev["acc"], test_error=100 - ev["acc"],
                           top5_error=100 - ev["top5_acc"], test_samples=ev["n"])
        history.append(metrics)
        if info.is_main and ckpt_path is not None and opts.checkpoint:
            save_atomic({
                "format": CHECKPOINT_FORMAT, "model": raw.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "epoch": epoch + 1, "step": step, "train_time_s": train_time,
                "rng": rng_state(), "data": train.state_dict(), "history": history,
                "meta": {**opts.meta, "epochs_planned": planned}, "recipe": recipe.to_dict(),
            }, ckpt_path)
        for cb in cbs:
            cb.on_epoch_end(epoch, metrics)
        distributed.barrier()

    result = FitResult(history, len(history), planned, train_time, resumed_from,
                       ckpt_path if ckpt_path is not None and ckpt_path.exists() else None,
                       count_params(raw))
    for cb in cbs:
        cb.on_fit_end(result)
    return result


def _diverged(value: float, epoch: int, step: int, lr: float, path: Path | None,
              history: list[dict[str, Any]], planned: int) -> None:
    done = len(history)
    if path is not None and path.exists() and done:
        keep = f"the last good checkpoint {path} (epoch {done}/{planned}) is kept"
    else:
        keep = "no checkpoint was written"
    raise TrainingDivergedError(
        f"training diverged: loss is {value} at epoch {epoch + 1}, step {step} (lr {lr:g}); "
        f"stopped without saving this epoch; {keep}. Lower the learning rate or check the data, "
        "then resume")
