"""The model registry: ``build(name, **options)`` and ``names()``.

Named models (Tables 1-2 plus a few small depths for smoke runs):

* CIFAR (32x32): ``resnet{8,14,20,32,44,56,110}``, ``hbnet...`` (eq. (10)) and ``admmnet...``
  (eq. (13), baseline the ResNet of the same depth) (depth = 6n + 2; Table 1 uses 56 and 110),
  ``densenet{10,22,40,52,100}`` and ``agdnet...`` (k = 12, depth = 3m + 4; Table 1 uses 40 and
  52). Any other depth: the family names ``resnet``, ``hbnet``, ``admmnet``, ``densenet``,
  ``agdnet`` with ``depth=`` (e.g. ``build("hbnet", depth=26)``); these always mean CIFAR.
* ImageNet (224x224): ``resnet34/50/101``, ``hbnet34/50/101``, ``densenet121``, ``agdnet121``.

Options are the keyword arguments of the builders (for example ``beta``, ``hb_boundary``,
``learnable_beta`` for HBNet, and for CIFAR HBNet also ``momentum``, ``beta_schedule``,
``reversible``; ``readout`` for ADMMNet; ``coefficients``,
``learnable_coefficients``, ``dropout`` for AGDNet; ``num_classes`` everywhere); an option the
model does not take is an error naming the valid ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from torch import nn

from optnb.models import imagenet
from optnb.models.cifar_admmnet import CifarADMMNet
from optnb.models.cifar_densenet import CifarAGDNet, CifarDenseNet
from optnb.models.cifar_resnet import CifarHBNet, CifarResNet
from optnb.models.errors import ModelOptionError, UnknownModelError

__all__ = ["ModelSpec", "build", "baseline_of", "names", "spec", "valid_options"]

KINDS = ("cifar", "imagenet")


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: how to build ``name`` and what it is.

    ``fixed`` are builder arguments the name pins (e.g. ``depth=56``); ``baseline`` names the
    model a variant reduces to (``hbnet56 -> resnet56``); ``input_size`` is the side of the
    images it is meant for (32 or 224).
    """

    name: str
    kind: str
    family: str
    builder: Callable[..., nn.Module]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    baseline: str | None = None
    description: str = ""

    @property
    def input_size(self) -> int:
        return 32 if self.kind == "cifar" else 224

    @property
    def options(self) -> tuple[str, ...]:
        """The options ``build`` accepts for this name."""
        params = inspect.signature(self.builder).parameters
        return tuple(p for p in params if p not in self.fixed)


def _add(registry: dict[str, ModelSpec], entry: ModelSpec) -> None:
    registry[entry.name] = entry


def _make_registry() -> Mapping[str, ModelSpec]:
    reg: dict[str, ModelSpec] = {}
    for depth in (8, 14, 20, 32, 44, 56, 110):
        n = (depth - 2) // 6
        _add(reg, ModelSpec(f"resnet{depth}", "cifar", "resnet", CifarResNet, {"depth": depth},
                            None, f"CIFAR ResNet-{depth} (n={n}, option-A shortcuts)"))
        _add(reg, ModelSpec(f"hbnet{depth}", "cifar", "hbnet", CifarHBNet, {"depth": depth},
                            f"resnet{depth}", f"CIFAR HBNet-{depth} (n={n}), eq. (10)"))
        _add(reg, ModelSpec(f"admmnet{depth}", "cifar", "admmnet", CifarADMMNet,
                            {"depth": depth}, f"resnet{depth}",
                            f"CIFAR ADMMNet-{depth} (n={n}), eq. (13)"))
    for depth in (10, 22, 40, 52, 100):
        _add(reg, ModelSpec(f"densenet{depth}", "cifar", "densenet", CifarDenseNet,
                            {"depth": depth}, None, f"CIFAR DenseNet (L={depth}, k=12)"))
        _add(reg, ModelSpec(f"agdnet{depth}", "cifar", "agdnet", CifarAGDNet, {"depth": depth},
                            f"densenet{depth}", f"CIFAR AGDNet (L={depth}, k=12), eq. (12)"))
    generic = (("resnet", CifarResNet, None), ("hbnet", CifarHBNet, "resnet"),
               ("admmnet", CifarADMMNet, "resnet"),
               ("densenet", CifarDenseNet, None), ("agdnet", CifarAGDNet, "densenet"))
    for family, cls, base in generic:
        _add(reg, ModelSpec(family, "cifar", family, cls, {}, base,
                            f"CIFAR {cls.__name__[5:]} of any depth (option depth=)"))
    for depth in (34, 50, 101):
        _add(reg, ModelSpec(f"resnet{depth}", "imagenet", "resnet", imagenet.resnet,
                            {"depth": depth}, None, f"ImageNet ResNet-{depth} (torchvision)"))
        _add(reg, ModelSpec(f"hbnet{depth}", "imagenet", "hbnet", imagenet.hbnet,
                            {"depth": depth}, f"resnet{depth}", f"ImageNet HBNet-{depth}"))
    _add(reg, ModelSpec("densenet121", "imagenet", "densenet", imagenet.densenet121, {}, None,
                        "ImageNet DenseNet-121 (torchvision)"))
    _add(reg, ModelSpec("agdnet121", "imagenet", "agdnet", imagenet.agdnet121, {},
                        "densenet121", "ImageNet AGDNet-121"))
    return MappingProxyType(reg)


REGISTRY: Mapping[str, ModelSpec] = _make_registry()


def names(kind: str | None = None) -> list[str]:
    """Registered model names, CIFAR first; ``kind`` = ``"cifar"`` or ``"imagenet"`` filters."""
    if kind is not None and kind not in KINDS:
        raise ModelOptionError(f"kind={kind!r} is not valid; valid kinds: {', '.join(KINDS)}")
    return [n for n, s in REGISTRY.items() if kind is None or s.kind == kind]


def spec(name: str) -> ModelSpec:
    """The registry entry of ``name``; ``UnknownModelError`` lists the valid names."""
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in REGISTRY:
        raise UnknownModelError(f"unknown model {name!r}; valid names: {', '.join(names())}")
    return REGISTRY[key]


def valid_options(name: str) -> tuple[str, ...]:
    """The options ``build(name, ...)`` accepts."""
    return spec(name).options


def baseline_of(name: str) -> str:
    """The model a variant reduces to (``hbnet56 -> resnet56``); a baseline maps to itself."""
    entry = spec(name)
    return entry.baseline or entry.name


def build(name: str, **options: Any) -> nn.Module:
    """Build the model ``name`` (see :func:`names`) with ``options``, randomly initialised.

    Raises ``UnknownModelError`` (a ``KeyError``) for an unknown name and ``ModelOptionError``
    (a ``ValueError``) for an option the model does not take or an invalid value.
    """
    entry = spec(name)
    unknown = [k for k in options if k not in entry.options]
    if unknown:
        raise ModelOptionError(
            f"model {entry.name!r} takes no option {', '.join(map(repr, unknown))}; "
            f"valid options: {', '.join(entry.options)}"
        )
    return entry.builder(**entry.fixed, **options)
