"""Training recipes as data, and the profiles that shorten them.

Paper §8: "For fair comparison, we train all of our models using the training strategies adopted
in DenseNet [10]" -- so ResNet/HBNet on CIFAR use the DenseNet recipe too (``resnet_cifar`` is
``densenet_cifar`` under another name, kept so that the choice is visible and can be changed).

* ``densenet_cifar``: 300 epochs, batch 64, SGD with Nesterov momentum 0.9, lr 0.1 divided by 10
  at 50 % and 75 % of training, weight decay 1e-4, dropout 0.2 only without augmentation (C10,
  C100; none for C10+/C100+). Sources: the DenseNet paper/README and the group's CliqueNet code
  (``docs/recipes.md`` lists every source).
* ``imagenet``: the paper gives no ImageNet schedule beyond "DenseNet's strategy". Default: the
  DenseNet ImageNet schedule (90 epochs, batch 256, lr 0.1 /10 at epochs 30 and 60, wd 1e-4,
  Nesterov 0.9) with fb.resnet.torch's colour augmentation (jitter 0.4 and PCA lighting 0.1,
  ``optnb.data.color``). The variant ``newton_design`` (the same group's Newton-Design code: 100 epochs,
  /10 at 30/60/90, plain momentum) is a field: ``get("imagenet").variant("newton_design")``.

Milestones are fractions of the run so that a shortened schedule keeps the same shape.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

IMAGENET_DATASETS = ("imagenet",)


class RecipeError(ValueError):
    """Unknown recipe, variant, profile or a bad override."""


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of one training schedule (optimizer SGD, step learning-rate decay)."""

    name: str
    epochs: int
    batch_size: int
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    lr_schedule: str = "step"  # step: x gamma at each milestone | cosine: to 0 over the run
    dropout_without_augmentation: float = 0.0
    resolution: int = 32
    color: str = "none"  # ImageNet colour augmentation: a name of optnb.data.color.COLOR_AUGMENTATIONS
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    source: str = ""

    def milestone_epochs(self, epochs: int | None = None) -> list[int]:
        """Epoch indices at which the lr is multiplied by ``gamma`` (at least 1, increasing)."""
        epochs = self.epochs if epochs is None else epochs
        return sorted({max(1, round(f * epochs)) for f in self.milestones})

    def lr_at(self, epoch: int, epochs: int | None = None) -> float:
        """The learning rate used during (0-based) ``epoch`` of ``epochs``."""
        if self.lr_schedule == "cosine":
            return 0.5 * self.lr * (1 + math.cos(math.pi * epoch / (epochs or self.epochs)))
        if self.lr_schedule != "step":
            raise RecipeError(f"unknown lr_schedule {self.lr_schedule!r}; valid: step, cosine")
        drops = sum(epoch >= m for m in self.milestone_epochs(epochs))
        return self.lr * self.gamma**drops

    def dropout(self, augment: bool) -> float:
        """DenseNet: dropout 0.2 without data augmentation, none with it."""
        return 0.0 if augment else self.dropout_without_augmentation

    def variant(self, name: str) -> Recipe:
        if name not in self.variants:
            raise RecipeError(f"recipe {self.name!r} has no variant {name!r}; valid: "
                              f"{', '.join(self.variants) or 'none'}")
        return self.replace(name=f"{self.name}:{name}", variants={}, **self.variants[name])

    def replace(self, **changes: Any) -> Recipe:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise RecipeError(f"unknown recipe field(s) {sorted(unknown)}; valid: "
                              f"{', '.join(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["milestones"] = list(self.milestones)
        out["variants"] = {k: dict(v) for k, v in self.variants.items()}
        return out


DENSENET_CIFAR = Recipe(
    name="densenet_cifar", epochs=300, batch_size=64, dropout_without_augmentation=0.2,
    source="DenseNet (Huang et al.) CIFAR recipe; paper §8 uses it for every model",
)
RECIPES: dict[str, Recipe] = {
    "densenet_cifar": DENSENET_CIFAR,
    "resnet_cifar": DENSENET_CIFAR.replace(
        name="resnet_cifar",
        source="paper §8: ResNet/HBNet are trained with DenseNet's strategy (= densenet_cifar)"),
    "imagenet": Recipe(
        name="imagenet", epochs=90, batch_size=256, milestones=(1 / 3, 2 / 3), resolution=224,
        color="fb_resnet",
        variants={"newton_design": {"epochs": 100, "milestones": (0.3, 0.6, 0.9),
                                    "nesterov": False}},
        source="DenseNet ImageNet schedule (recalled, not stated in the paper); "
               "variant newton_design from the group's Newton-Design code",
    ),
}


def names() -> list[str]:
    """Every recipe name ``get`` accepts, variants included (``imagenet:newton_design``)."""
    return [n for name, r in RECIPES.items() for n in (name, *(f"{name}:{v}" for v in r.variants))]


def get(name: str) -> Recipe:
    base, _, variant = name.partition(":")
    if base not in RECIPES:
        raise RecipeError(f"unknown recipe {name!r}; valid: {', '.join(RECIPES)}")
    return RECIPES[base].variant(variant) if variant else RECIPES[base]


#: the CIFAR families on the ResNet skeleton (the others are on DenseNet's)
RESNET_FAMILIES = ("resnet", "hbnet", "admmnet")


def for_model(model: str, dataset: str) -> Recipe:
    """The paper's recipe for a Table 1/2 row: ImageNet rows use ``imagenet``, CIFAR rows the
    DenseNet recipe (named ``resnet_cifar`` for ResNet/HBNet, the same numbers)."""
    if dataset in IMAGENET_DATASETS:
        return RECIPES["imagenet"]
    family = model.lower()
    return RECIPES["resnet_cifar" if family.startswith(RESNET_FAMILIES) else "densenet_cifar"]


# ---------------------------------------------------------------------------------------------
# Profiles: how much of the recipe a run actually does.


@dataclass(frozen=True)
class Budget:
    """What a profile keeps of a recipe. ``None`` means "as the recipe/dataset says"."""

    epochs: int | None = None            # absolute epoch count
    epoch_fraction: float = 1.0          # else this fraction of the recipe's epochs (at least 1)
    steps_per_epoch: int | None = None   # cap on optimizer steps per epoch
    batch_size: int | None = None        # global batch; the lr scales linearly with it
    eval_samples: int | None = None      # evaluate on the first N test images
    resolution: int | None = None        # ImageNet-type models
    tiny_model: bool = False             # train the shallowest model of the same family

    def epochs_for(self, recipe: Recipe) -> int:
        if self.epochs is not None:
            return self.epochs
        return max(1, round(recipe.epochs * self.epoch_fraction))


#: smoke: CI on a 2-core CPU: 2 epochs of 40 batches of 32 (about the embedded train split, so the
#: nets learn something); CIFAR rows train
#: a shallow model of the same family (resnet20/hbnet20, densenet10/agdnet10), ImageNet rows
#: the named model at 32x32 (there is no smaller torchvision ImageNet depth).
#: quick: one GPU, minutes per row: a tenth of the schedule on the full dataset.
#: paper: the recipe as published.
BUDGETS: dict[str, dict[str, Budget]] = {
    "smoke": {"cifar": Budget(epochs=2, steps_per_epoch=40, batch_size=32, eval_samples=359,
                              tiny_model=True),
              "imagenet": Budget(epochs=1, steps_per_epoch=3, batch_size=8, eval_samples=64,
                                 resolution=32)},
    "quick": {"cifar": Budget(epoch_fraction=0.1),
              "imagenet": Budget(epoch_fraction=0.1, resolution=128)},
    "paper": {"cifar": Budget(), "imagenet": Budget()},
}


def budget(profile: str, recipe: Recipe) -> Budget:
    if profile not in BUDGETS:
        raise RecipeError(f"unknown profile {profile!r}; valid: {', '.join(BUDGETS)}")
    return BUDGETS[profile]["imagenet" if recipe.resolution > 32 else "cifar"]
