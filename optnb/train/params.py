"""Notebook parameter specs for 06_train_cifar (``NB06``) and 07_train_imagenet (``NB07``).

The common parameters (PROFILE, SEED, DEVICE, DATASET, LIVE, RESULTS_DIR, RUN_ID) are validated by
``optnb.experiments.resolve``; these are the notebook-specific UPPER names. Sizes per profile live
in ``optnb.train.recipes.BUDGETS``, never here.
"""

from __future__ import annotations

from optnb.specs import boolean, choice, integer

CIFAR_MODELS = ("resnet56", "hbnet56", "resnet110", "hbnet110",
                "densenet40", "agdnet40", "densenet52", "agdnet52")
IMAGENET_MODELS = ("resnet34", "hbnet34", "resnet50", "hbnet50", "resnet101", "hbnet101",
                   "densenet121", "agdnet121")


def _registry(wanted: tuple[str, ...], kind: str) -> list[str]:
    """``optnb.models.names(kind)`` (the static list when the registry is unavailable)."""
    try:
        from optnb.models import names
    except ImportError:
        return list(wanted)
    return list(names(kind))


def cifar_models() -> list[str]:
    return _registry(CIFAR_MODELS, "cifar")


def imagenet_models() -> list[str]:
    return _registry(IMAGENET_MODELS, "imagenet")


NB06 = {
    "MODEL": choice(cifar_models, help="a Table 1 model (CIFAR ResNet/HBNet, DenseNet/AGDNet)"),
    "AUGMENT": boolean(help="True: the paper's '+' (pad-4 crop + flip); False: dropout 0.2 "
                            "for DenseNet/AGDNet, no augmentation"),
    "EPOCHS": integer(0, 10_000, help="0: the profile's schedule (smoke 1, quick 30, paper 300)"),
}

NB07 = {
    "MODEL": choice(imagenet_models, help="a Table 2 model (ResNet/HBNet-34/50/101, "
                                          "DenseNet/AGDNet-121)"),
    "EPOCHS": integer(0, 10_000, help="0: the profile's schedule (smoke 1, quick 9, paper 90)"),
}
