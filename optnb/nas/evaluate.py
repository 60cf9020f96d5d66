"""Architecture evaluation (paper §9.3): train a genotype from scratch, report the final test error.

CIFAR-10 (Table 4): 20 cells, C = 36, 600 epochs, batch 96, SGD 0.025 (momentum 0.9, wd 3e-4,
cosine to 0, grad-clip 5), cutout 16, drop path 0.2 ramped linearly from 0, auxiliary head 0.4.
ImageNet transfer (Table 5): DARTS's mobile recipe (see ``params.IMAGENET_RECIPE``).

The training is ``optnb.train.fit`` with :class:`DropPathStep`; the test error is the one **at
the end of training**, never the best epoch on the test set. Each epoch writes an atomic
checkpoint (weights, optimiser, epoch, data order, the drop-path generator and the global RNG)
and a JSON line, so a run resumes exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from optnb.data import GpuLoader, make_loader
from optnb.data.color import COLOR_AUGMENTATIONS
from optnb.nas.errors import NasError, unknown
from optnb.nas.genotypes import Genotype, normalize, to_dict
from optnb.nas.network import NetworkCIFAR, NetworkImageNet, count_parameters, drop_path_schedule
from optnb.nas.search import PRECISIONS
from optnb.train import Callback, ClassifierStep, FitOptions, evaluate, fit
from optnb.train.checkpoint import GeneratorState
from optnb.train.evaluation import held_out_metrics

NETWORKS = ("cifar", "imagenet")
SCHEDULES = ("cosine", "exp97")
#: config keys that may change between a checkpoint and its resume
RESUME_FREE = ("eval_every", "epochs_limit")
#: settings added after checkpoints existed: left out of the identity at these values, so that
#: those checkpoints still resume
LATER_SETTINGS = {"color": "none"}


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
    color: str = "none"  # colour augmentation of a streamed ImageNet tree (optnb.data.color)
    precision: str = "auto"
    max_images: int = 0  # 0: every image of both splits
    eval_every: int = 0  # 0: test only after the last epoch
    epochs_limit: int = 0  # stop once this many epochs are done in total (0: run to the end)
    seed: int = 0

    def checked(self) -> EvalConfig:
        if self.network not in NETWORKS:
            raise unknown("network", self.network, NETWORKS)
        if self.schedule not in SCHEDULES:
            raise unknown("lr schedule", self.schedule, SCHEDULES)
        if self.precision not in PRECISIONS:
            raise unknown("precision", self.precision, PRECISIONS)
        if self.color not in COLOR_AUGMENTATIONS:
            raise unknown("colour augmentation", self.color, COLOR_AUGMENTATIONS)
        for name in ("C", "layers", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise NasError(f"{name} must be >= 1, got {getattr(self, name)}")
        return self

    def lr_at(self, epoch: int, epochs: int | None = None) -> float:
        """The learning rate of (0-based) ``epoch`` of ``epochs`` (default: the config's)."""
        if self.schedule == "exp97":
            return self.lr * 0.97 ** epoch
        epochs = epochs or self.epochs
        return self.lr_min + 0.5 * (self.lr - self.lr_min) * (1 + math.cos(math.pi * epoch / epochs))

    @property
    def bf16(self) -> bool | None:
        """bf16 autocast: None = the engine's default (on CUDA), else as ``precision`` says."""
        return {"auto": None, "fp32": False, "bf16": True}[self.precision]

    def identity(self, genotype: Genotype) -> dict[str, Any]:
        """What an evaluation checkpoint must match: the genotype and every other setting."""
        settings = {k: v for k, v in asdict(self).items()
                    if k not in RESUME_FREE and LATER_SETTINGS.get(k, object()) != v}
        return {"kind": "evaluate", "genotype": to_dict(genotype), **settings}


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


def _subset(images: torch.Tensor, labels: torch.Tensor, n: int, seed: int):
    if not n or n >= len(images):
        return images, labels
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    return images[idx], labels[idx]


def tensor_loaders(cfg: EvalConfig, train_data: tuple[torch.Tensor, torch.Tensor],
                   test_data: tuple[torch.Tensor, torch.Tensor], dataset: str,
                   device: torch.device | str = "cpu") -> tuple[GpuLoader, GpuLoader]:
    """Device-resident loaders for in-memory data: augmented (crop, flip, cutout) training
    batches and ordered test batches; ``cfg.max_images`` caps both splits (seeded subsets)."""
    x_train, y_train = _subset(*train_data, cfg.max_images, cfg.seed)
    x_test, y_test = _subset(*test_data, cfg.max_images, cfg.seed + 1)
    train = make_loader(dataset, x_train, y_train, cfg.batch_size, device, augment=True,
                        cutout=cfg.cutout, seed=cfg.seed, drop_last=True)
    test = make_loader(dataset, x_test, y_test, 2 * cfg.batch_size, device, train=False)
    return train, test


@dataclass
class DropPathStep(ClassifierStep):
    """The evaluation network's step: drop path ramps linearly from 0 to ``drop_path`` (DARTS);
    the masks are an input of the forward, so a compiled step does not recompile as it ramps."""

    network: nn.Module | None = None  # the raw network whose drop_path_prob is set
    drop_path: float = 0.0
    epochs: int = 1

    def start_epoch(self, epoch: int) -> dict[str, Any]:
        self.network.drop_path_prob = drop_path_schedule(epoch, self.epochs, self.drop_path)
        return {"drop_path_prob": self.network.drop_path_prob}

    def inputs(self, x: torch.Tensor) -> dict[str, Any]:
        """This step's per-sample drop-path masks, drawn from the network's generator outside the
        (possibly compiled) forward."""
        return {"drop_masks": self.network.drop_masks(x.shape[0], x.device)}


def eval_optimizer(model: nn.Module, cfg: EvalConfig) -> torch.optim.SGD:
    """SGD with ``cfg``'s momentum and weight decay (fused: one pass over each weight)."""
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay, fused=True)


def drop_path_step(model: nn.Module, cfg: EvalConfig, net: nn.Module, optimizer: torch.optim.Optimizer,
                   amp: bool) -> DropPathStep:
    """The evaluation's step of ``cfg`` through ``net`` (``model`` or its wrapper): auxiliary
    head weight, label smoothing, gradient clipping and the drop-path ramp of ``model``."""
    return DropPathStep(net, optimizer, amp=amp, grad_clip=cfg.grad_clip,
                        label_smoothing=cfg.label_smoothing, aux_weight=cfg.aux_weight,
                        network=model, drop_path=cfg.drop_path, epochs=cfg.epochs)


def train_genotype(genotype: Genotype, cfg: EvalConfig, train_loader: Any, test_loader: Any,
                   device: torch.device | str = "cpu", run_dir: str | Path | None = None,
                   resume: bool = True, callbacks: Sequence[Callback] = (),
                   num_classes: int = 10, compile: bool | str = False) -> EvalResult:
    """Train ``genotype`` from scratch and test it after the last epoch (module docstring).

    The loaders yield normalised device batches and have ``state_dict``/``load_state_dict``
    (``optnb.data.GpuLoader`` from :func:`tensor_loaders`, or ``FolderLoader`` for ImageNet).
    ``resume=False`` starts over, replacing a checkpoint in ``run_dir``. ``compile``: the training
    step through ``torch.compile`` (``optnb.train.compiling``; ``compiling.default_for(profile,
    "evaluate")`` is the profile's choice).
    """
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
    optimizer = eval_optimizer(model, cfg)

    def make_step(net: nn.Module, opt: torch.optim.Optimizer, amp: bool) -> DropPathStep:
        return drop_path_step(model, cfg, net, opt, amp)

    options = FitOptions(stop_after=cfg.epochs_limit or None, eval_every=cfg.eval_every,
                         amp=cfg.bf16, resume=resume, restart=not resume,
                         identity=cfg.identity(genotype), compile=compile)
    fitted = fit(model, train_loader, cfg, test=test_loader, optimizer=optimizer,
                 make_step=make_step, state={"drop_path_rng": GeneratorState(model.drop_path_generator)},
                 device=device, run_dir=run_dir, callbacks=callbacks, options=options)
    final = fitted.final
    if "test_error" not in final:  # stopped before the last epoch: test the weights as they are
        amp = device.type == "cuda" if cfg.bf16 is None else cfg.bf16
        final = held_out_metrics(evaluate(model, test_loader, device, amp=amp), "test")
    return EvalResult(genotype, final["test_error"], final["test_top5_error"], final["test_loss"],
                      count_parameters(model), fitted.history, model, fitted.wall_s, cfg)
