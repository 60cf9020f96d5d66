"""Architecture evaluation (paper §9.3): train a genotype from scratch, report the final test error.

CIFAR-10 (Table 4): 20 cells, C = 36, 600 epochs, batch 96, SGD 0.025 (momentum 0.9, wd 3e-4,
cosine to 0, grad-clip 5), cutout 16, drop path 0.2 ramped linearly from 0, auxiliary head 0.4.
ImageNet transfer (Table 5): DARTS's mobile recipe (see ``params.IMAGENET_RECIPE``).

The test error is the one **at the end of training**, never the best epoch on the test set. Each
epoch writes an atomic checkpoint (weights, optimiser, epoch, data order, the drop-path generator
and the global RNG) and a JSON line, so a run resumes exactly.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from optnb.nas.errors import NasError, unknown
from optnb.nas.genotypes import Genotype, normalize, to_dict
from optnb.nas.network import NetworkCIFAR, NetworkImageNet, count_parameters, drop_path_schedule
from optnb.nas.search import PRECISIONS, autocast_factory, mirror_log, open_checkpoint

NETWORKS = ("cifar", "imagenet")
SCHEDULES = ("cosine", "exp97")
CHECKPOINT = "eval_ckpt.pt"
LOG = "eval.jsonl"
FORMAT = "optnb.nas.evaluate/1"
_RESUME_FREE = ("eval_every", "epochs_limit")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation settings; the defaults are the paper's CIFAR-10 recipe (§9.3)."""

    network: str = "cifar"
    C: int = 36
    layers: int = 20
    epochs: int = 600
    batch_size: int = 96
    lr: float = 0.025
    lr_min: float = 0.0
    schedule: str = "cosine"  # cosine | exp97 (x0.97 per epoch, DARTS ImageNet)
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    auxiliary: bool = True
    aux_weight: float = 0.4
    drop_path: float = 0.2
    exempt_negative: bool = True  # the negative identity is exempt from drop path like identity
    cutout: int = 16
    label_smoothing: float = 0.0
    precision: str = "auto"
    max_images: int = 0  # 0: every image of both splits
    eval_every: int = 0  # 0: test only after the last epoch
    epochs_limit: int = 0  # stop after this many epochs in this call (0: run to the end)
    seed: int = 0

    def checked(self) -> EvalConfig:
        if self.network not in NETWORKS:
            raise unknown("network", self.network, NETWORKS)
        if self.schedule not in SCHEDULES:
            raise unknown("lr schedule", self.schedule, SCHEDULES)
        if self.precision not in PRECISIONS:
            raise unknown("precision", self.precision, PRECISIONS)
        for name in ("C", "layers", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise NasError(f"{name} must be >= 1, got {getattr(self, name)}")
        return self

    def lr_at(self, epoch: int) -> float:
        if self.schedule == "exp97":
            return self.lr * 0.97 ** epoch
        return self.lr_min + 0.5 * (self.lr - self.lr_min) * (1 + math.cos(math.pi * epoch / self.epochs))


@dataclass
class EvalResult:
    genotype: Genotype
    test_error: float  # top-1, percent, after the last epoch
    top5_error: float
    test_loss: float
    params: int  # auxiliary head excluded
    history: list[dict[str, Any]]
    model: torch.nn.Module
    wall_s: float
    config: EvalConfig = field(default_factory=EvalConfig)

    @property
    def params_m(self) -> float:
        return self.params / 1e6


def build_network(genotype: Genotype, cfg: EvalConfig, num_classes: int = 10) -> torch.nn.Module:
    cls = NetworkCIFAR if cfg.network == "cifar" else NetworkImageNet
    return cls(genotype, C=cfg.C, num_classes=num_classes, layers=cfg.layers,
               auxiliary=cfg.auxiliary, exempt_negative=cfg.exempt_negative)


def full_size_parameters(genotype: Genotype, network: str = "cifar", num_classes: int | None = None
                         ) -> int:
    """Parameters of the paper-size network (CIFAR C=36/20 cells, ImageNet C=48/14), no aux."""
    with torch.device("meta"):
        if network == "cifar":
            net = NetworkCIFAR(genotype, 36, num_classes or 10, 20, auxiliary=False)
        else:
            net = NetworkImageNet(genotype, 48, num_classes or 1000, 14, auxiliary=False)
    return count_parameters(net)


@torch.no_grad()
def test(model: torch.nn.Module, loader, autocast: Callable[[], Any]) -> dict[str, float]:
    """Top-1 and top-5 error (percent) and mean loss, eval mode."""
    was = model.training
    model.eval()
    sums = torch.zeros(3, device=loader.device)  # loss, top-1 correct, top-5 correct
    n = 0
    for x, y in loader:
        with autocast():
            logits, _ = model(x)
        logits = logits.float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        sums += torch.stack([F.cross_entropy(logits, y, reduction="sum"),
                             (top[:, 0] == y).sum().float(),
                             (top == y[:, None]).any(1).sum().float()])
        n += len(y)
    model.train(was)
    loss, c1, c5 = sums.tolist()
    n = max(n, 1)
    return {"test_loss": loss / n, "test_error": 100.0 * (1 - c1 / n),
            "top5_error": 100.0 * (1 - c5 / n)}


def _subset(images: torch.Tensor, labels: torch.Tensor, n: int, seed: int):
    if not n or n >= len(images):
        return images, labels
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    return images[idx], labels[idx]


def tensor_loaders(cfg: EvalConfig, train_data: tuple[torch.Tensor, torch.Tensor],
                   test_data: tuple[torch.Tensor, torch.Tensor], dataset: str,
                   device: torch.device | str = "cpu"):
    """Device-resident loaders for in-memory data: augmented (crop, flip, cutout) training
    batches and ordered test batches; ``cfg.max_images`` caps both splits (seeded subsets)."""
    from optnb.data import make_loader

    x_train, y_train = _subset(*train_data, cfg.max_images, cfg.seed)
    x_test, y_test = _subset(*test_data, cfg.max_images, cfg.seed + 1)
    train = make_loader(dataset, x_train, y_train, cfg.batch_size, device, augment=True,
                        cutout=cfg.cutout, seed=cfg.seed, drop_last=True)
    test = make_loader(dataset, x_test, y_test, 2 * cfg.batch_size, device, train=False)
    return train, test


def train_genotype(genotype: Genotype, cfg: EvalConfig, train_loader, test_loader,
                   device: torch.device | str = "cpu", run_dir: str | Path | None = None,
                   resume: bool = True, on_epoch: Callable[[dict[str, Any]], None] | None = None,
                   num_classes: int = 10) -> EvalResult:
    """Train ``genotype`` from scratch and test it after the last epoch (module docstring).

    The loaders yield normalised device batches and have ``state_dict``/``load_state_dict``
    (``optnb.data.GpuLoader`` from :func:`tensor_loaders`, or ``FolderLoader`` for ImageNet).
    """
    from optnb.train.checkpoint import rng_state, save_atomic, set_rng_state

    cfg = cfg.checked()
    genotype = normalize(genotype)
    device = torch.device(device)
    if len(train_loader) == 0:
        raise NasError(f"the training split is smaller than one batch of {cfg.batch_size}")
    with torch.random.fork_rng(devices=[]):  # weights from cfg.seed alone
        torch.manual_seed(cfg.seed)
        model = build_network(genotype, cfg, num_classes)
    model = model.to(device)
    model.drop_path_generator = torch.Generator(device=device).manual_seed(cfg.seed)
    params = count_parameters(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay, fused=device.type == "cuda")
    autocast = autocast_factory(device, cfg.precision)

    run_dir = Path(run_dir) if run_dir is not None else None
    ckpt = run_dir / CHECKPOINT if run_dir else None
    history: list[dict[str, Any]] = []
    start, wall = 0, 0.0
    if ckpt is not None and resume and ckpt.is_file():
        state = open_checkpoint(ckpt, FORMAT, cfg, _RESUME_FREE, device)
        if state["genotype"] != to_dict(genotype):
            raise NasError(f"checkpoint {ckpt} was made with another genotype; "
                           "use another run directory")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        train_loader.load_state_dict(state["train_loader"])
        model.drop_path_generator.set_state(state["drop_path_rng"].cpu())
        set_rng_state(state["rng"])
        history, start, wall = list(state["history"]), int(state["epoch"]), float(state["wall_s"])
    mirror_log(run_dir, LOG, history)
    stop = cfg.epochs if not cfg.epochs_limit else min(cfg.epochs, start + cfg.epochs_limit)

    for epoch in range(start, stop):
        t0 = time.perf_counter()
        lr = cfg.lr_at(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.drop_path_prob = drop_path_schedule(epoch, cfg.epochs, cfg.drop_path)
        model.train()
        sums = torch.zeros(2, device=device)  # loss * batch, correct (no per-step host sync)
        n = 0
        for x, y in train_loader:
            with autocast():
                logits, aux = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            if aux is not None:
                loss = loss + cfg.aux_weight * F.cross_entropy(
                    aux.float(), y, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            with torch.no_grad():
                sums += torch.stack([loss.detach() * len(y), (logits.argmax(1) == y).sum().float()])
            n += len(y)
        loss_sum, correct = sums.tolist()
        n = max(n, 1)
        record: dict[str, Any] = {"epoch": epoch + 1, "lr": lr,
                                  "drop_path_prob": model.drop_path_prob,
                                  "train_loss": loss_sum / n, "train_acc": correct / n}
        if epoch + 1 == cfg.epochs or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0):
            record.update(test(model, test_loader, autocast))
        epoch_s = time.perf_counter() - t0
        wall += epoch_s
        record.update({"epoch_s": epoch_s, "wall_s": wall})
        history.append(record)
        if ckpt is not None:
            save_atomic({"format": FORMAT, "config": asdict(cfg), "genotype": to_dict(genotype),
                         "epoch": epoch + 1, "model": model.state_dict(),
                         "optimizer": optimizer.state_dict(),
                         "train_loader": train_loader.state_dict(), "rng": rng_state(),
                         "drop_path_rng": model.drop_path_generator.get_state(),
                         "history": history, "wall_s": wall}, ckpt)
            with (run_dir / LOG).open("a") as fh:
                fh.write(json.dumps(record) + "\n")
        if on_epoch is not None:
            on_epoch(record)
    final = history[-1] if history and "test_error" in history[-1] else {}
    if not final:
        final = test(model, test_loader, autocast)
    return EvalResult(genotype, final["test_error"], final["top5_error"], final["test_loss"],
                      params, history, model, wall, cfg)

