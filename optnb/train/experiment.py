"""One Table 1 / Table 2 row: data + model + recipe + profile budget -> ``fit`` -> results.

Used by notebooks 06/07 and by ``optnb train`` (also under ``torchrun``), so both train a row the
same way:

* the recipe is the paper's (``recipes.for_model``), shortened by the profile's ``Budget``;
* CIFAR-type data (embedded, synthetic, CIFAR, small ImageFolder trees) lives on the device in a
  ``GpuLoader``; real ImageNet streams through ``FolderLoader``;
* dropout (0.2 without augmentation, DenseNet's recipe) is passed to the DenseNet-family models,
  which are the ones that have a dropout option; ResNet/HBNet have none (the paper is silent);
* rank/world size come from the process group (``torchrun``), rank 0 writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from optnb import data, models
from optnb.seed import seed_everything
from optnb.train import compiling, distributed, recipes, rehearsal_overlay
from optnb.train.callbacks import Callback
from optnb.train.engine import FitOptions, FitResult, fit
from optnb.train.recipes import Budget, Recipe

DROPOUT_FAMILIES = ("densenet", "agdnet")


def is_imagenet_model(model: str) -> bool:
    """Whether ``model`` is a Table 2 (ImageNet-type) model, by the registry's ``kind``."""
    return models.spec(model).kind == "imagenet"


@dataclass
class RowPlan:
    """Everything that decides a run, resolved before anything is built."""

    model: str
    dataset: str
    augment: bool
    profile: str
    seed: int
    recipe: Recipe
    budget: Budget
    epochs: int
    batch_size: int
    resolution: int
    model_options: dict[str, Any] = field(default_factory=dict)
    trained_model: str = ""  # what is actually built: ``model``, or its tiny smoke stand-in

    def __post_init__(self) -> None:
        self.trained_model = self.trained_model or self.model

    @property
    def color(self) -> str:
        """The colour augmentation it trains with: the recipe's on the streamed ImageNet tree, none
        on the in-memory datasets."""
        return self.recipe.color if self.dataset == "imagenet" else "none"

    def identity(self) -> dict[str, Any]:
        """What the row is: a checkpoint must match it to be resumed."""
        return {"kind": "train", "model": self.model, "trained_model": self.trained_model,
                "dataset": self.dataset, "augment": self.augment, "profile": self.profile,
                "seed": self.seed, "batch_size": self.batch_size, "resolution": self.resolution,
                "recipe": self.recipe.name,
                "model_options": {k: v for k, v in sorted(self.model_options.items())},
                # only where it is on, so that checkpoints made before it existed still resume
                **({"color": self.color} if self.color != "none" else {})}


@dataclass
class RowResult:
    plan: RowPlan
    fit: FitResult
    device: str

    def results(self) -> dict[str, tuple[Any, str | None]]:
        """Named results for ``optnb.experiments.record``: ``{name: (value, unit)}``."""
        last = self.fit.final
        out: dict[str, tuple[Any, str | None]] = {
            "test_error": (last.get("test_error"), "%"),
            "params": (self.fit.params, None),
            "epochs": (self.fit.epochs_run, None),
            "epochs_planned": (self.fit.epochs_planned, None),
            "train_time_s": (round(self.fit.train_time_s, 3), "s"),
            "images_per_s": (last.get("images_per_s"), "img/s"),
            "test_samples": (last.get("test_samples"), None),
            "recipe": (self.plan.recipe.name, None),
            "batch_size": (self.plan.batch_size, None),
            "lr": (self.plan.recipe.lr, None),
            "model_options": (self.plan.model_options, None),
        }
        if self.plan.trained_model != self.plan.model:
            out["trained_model"] = (self.plan.trained_model, None)
            out["params_named_model"] = (named_params(self.plan), None)
        if is_imagenet_model(self.plan.model):
            out["top1_error"] = (last.get("test_error"), "%")
            out["top5_error"] = (last.get("test_top5_error"), "%")
            out["resolution"] = (self.plan.resolution, "px")
        return out


def plan_row(model: str, dataset: str, augment: bool = True, profile: str = "smoke",
             seed: int = 0, epochs: int | None = None, batch_size: int | None = None,
             recipe: Recipe | str | None = None,
             model_options: Mapping[str, Any] | None = None, lr: float | None = None) -> RowPlan:
    """Resolve recipe, budget, epochs, batch size and resolution for one row.

    ``batch_size`` changes the recipe's lr by the linear scaling rule; ``lr`` then overrides it.
    """
    if isinstance(recipe, str):
        recipe = recipes.get(recipe)
    base = recipe or recipes.for_model(model, "imagenet" if is_imagenet_model(model) else dataset)
    bud = recipes.budget(profile, base)
    options = dict(model_options or {})
    if model.lower().startswith(DROPOUT_FAMILIES) and not is_imagenet_model(model):
        options.setdefault("dropout", base.dropout(augment))
    # ImageNet models on ImageNet use the recipe's (or the profile's) crop; everything else
    # trains at the 32x32 of CIFAR and the embedded/synthetic stand-ins.
    imagenet_run = dataset == "imagenet" and is_imagenet_model(model)
    resolution = (bud.resolution or base.resolution) if imagenet_run else 32
    batch = batch_size or bud.batch_size or base.batch_size
    if batch != base.batch_size:  # linear scaling rule (Goyal et al.) for a changed batch
        base = base.replace(lr=base.lr * batch / base.batch_size, batch_size=batch)
    if lr is not None:
        base = base.replace(lr=lr)
    return RowPlan(model=model, dataset=dataset, augment=augment, profile=profile, seed=seed,
                   recipe=base, budget=bud, epochs=epochs or bud.epochs_for(base),
                   batch_size=batch,
                   resolution=resolution, model_options=options,
                   trained_model=tiny_model(model) if bud.tiny_model else model)


def tiny_model(model: str) -> str:
    """A shallow CIFAR model of ``model``'s family for smoke runs: resnet20/hbnet20/admmnet20 or
    densenet10/agdnet10 (2 layers per block); ImageNet models are kept.

    Depth 20 (n = 3) is the shallowest ResNet whose HBNet carries momentum in every stage: with the
    default ``hb_boundary="restart"`` the first block of a stage and the block after it carry none,
    so hbnet8 (n = 1) would be resnet8 exactly and a smoke row could not tell the two apart.
    """
    if is_imagenet_model(model):
        return model
    family = models.spec(model).family
    return f"{family}{20 if family in recipes.RESNET_FAMILIES else 10}"


def make_loaders(plan: RowPlan, device: torch.device, root: str | Path | None = None,
                 num_workers: int = 4) -> tuple[Any, Any]:
    """Train and test loaders for ``plan``, sharded over the process group's ranks.

    ``plan.batch_size`` is the *global* batch (the recipe's): each of N ranks takes 1/N of it.
    """
    info = distributed.current()
    batch = rehearsal_overlay.step_batch(f"train:{plan.model}", plan.batch_size)  # a rehearsal's
    if batch % info.world_size:
        raise ValueError(f"batch size {batch} is not divisible by the "
                         f"{info.world_size} processes; choose a multiple of {info.world_size}")
    per_rank = batch // info.world_size
    shard = {"rank": info.rank, "world_size": info.world_size,
             "channels_last": device.type == "cuda"}
    mean, std = data.MEAN[plan.dataset], data.STD[plan.dataset]
    if plan.dataset == "imagenet":  # streamed: never decode a whole ImageNet into memory
        root = Path(root) if root is not None else data.default_root("imagenet")
        common = dict(root=root, batch_size=per_rank, device=device, mean=mean, std=std,
                      resolution=plan.resolution, seed=plan.seed, num_workers=num_workers, **shard)
        return (data.FolderLoader(train=True, color=plan.color, **common),
                data.FolderLoader(train=False, **common))
    size = plan.resolution
    x, y = data.load(plan.dataset, root, train=True, image_size=size, seed=plan.seed)
    xt, yt = data.load(plan.dataset, root, train=False, image_size=size, seed=plan.seed)
    if plan.budget.eval_samples is not None:
        xt, yt = xt[: plan.budget.eval_samples], yt[: plan.budget.eval_samples]
    train = data.GpuLoader(x, y, per_rank, device, augment=plan.augment, seed=plan.seed,
                           mean=mean, std=std, padding=max(1, size // 8), **shard)
    test = data.GpuLoader(xt, yt, max(per_rank, 128), device, augment=False,
                          shuffle=False, drop_last=False, mean=mean, std=std, **shard)
    return train, test


def named_params(plan: RowPlan) -> int:
    """Parameters of the named model (not its smoke stand-in), counted on the ``meta`` device."""
    with torch.device("meta"):
        net = models.build(plan.model, num_classes=data.NUM_CLASSES[plan.dataset],
                           **plan.model_options)
    return models.count_params(net)


def build_model(plan: RowPlan) -> torch.nn.Module:
    return models.build(plan.trained_model, num_classes=data.NUM_CLASSES[plan.dataset],
                        **plan.model_options)


def train_row(plan: RowPlan, device: torch.device | str = "cpu", run_dir: str | Path | None = None,
              callbacks: Sequence[Callback] = (), resume: bool = True,
              compile: bool | str | None = None, data_root: str | Path | None = None,
              model: torch.nn.Module | None = None, stop_after: int | None = None,
              log_every: int | None = None, num_workers: int = 4) -> RowResult:
    """Train one row; the checkpoint and ``metrics.jsonl`` go to ``run_dir``.

    ``resume=True`` (the notebook default) continues a checkpoint of the same row in ``run_dir``;
    a finished one is only evaluated again. ``compile`` (``optnb.train.compiling``): ``None`` is
    the profile's default for the model's family (``compiling.default_for``).
    """
    device = torch.device(device)
    if compile is None:
        compile = compiling.default_for(plan.profile, "train", models.spec(plan.trained_model).family)
    seed_everything(plan.seed)
    train, test = make_loaders(plan, device, data_root, num_workers=num_workers)
    net = model if model is not None else build_model(plan)
    steps = plan.budget.steps_per_epoch
    options = FitOptions(
        epochs=plan.epochs, steps_per_epoch=steps, resume=resume, compile=compile,
        stop_after=stop_after, eval_samples=plan.budget.eval_samples, identity=plan.identity(),
        log_every=log_every if log_every is not None else (1 if steps and steps <= 50 else 10))
    rehearsal_overlay.note_configuration(
        run_dir, "train_imagenet" if is_imagenet_model(plan.model) else "train_cifar", "row", plan,
        plan.batch_size, train.batch_size * train.world_size, compile=str(compile))
    result = fit(net, train, plan.recipe, test=test, device=device, run_dir=run_dir,
                 callbacks=callbacks, options=options)
    return RowResult(plan, result, str(device))
