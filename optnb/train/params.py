"""Notebook parameter specs for 06_train_cifar (``NB06``) and 07_train_imagenet (``NB07``).

The common parameters (PROFILE, SEED, DEVICE, DATASET, LIVE, RESULTS_DIR, RUN_ID) are validated by
``optnb.experiments.resolve``; these are the notebook-specific UPPER names, shared with
``optnb train`` (which runs the same row without Jupyter). Sizes per profile live in
``optnb.train.recipes.BUDGETS``, never here; the model names in ``optnb.models``' registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import torch

from optnb import models
from optnb.specs import ParameterError, boolean, choice, integer, mapping, number
from optnb.train import recipes

#: what a row may change in the paper's recipe (0, "" and {} keep the recipe's own value; ``optnb
#: train --epochs/--batch-size/--lr/--recipe/--model-option/--beta`` are these same parameters)
ROW_OVERRIDES = {
    "EPOCHS": integer(0, 10_000, help="0: the profile's schedule (smoke 2, quick 1/10, paper all)"),
    "BATCH_SIZE": integer(0, 65_536, help="0: the profile's; else the global batch (lr scaled "
                                          "linearly)"),
    "LR": number(0.0, 10.0, help="0: the recipe's (after batch scaling)"),
    "RECIPE": choice("", *recipes.names(), help="'': the paper's recipe for the model"),
    "MODEL_OPTIONS": mapping(help="model options, e.g. {'beta': 0.3} (see optnb.models.valid_options)"),
}

NB06 = {
    "MODEL": choice(partial(models.names, "cifar"),
                    help="a Table 1 model (CIFAR ResNet/HBNet, DenseNet/AGDNet)"),
    "AUGMENT": boolean(help="True: the paper's '+' (pad-4 crop + flip); False: dropout 0.2 "
                            "for DenseNet/AGDNet, no augmentation"),
    **ROW_OVERRIDES,
}

NB07 = {
    "MODEL": choice(partial(models.names, "imagenet"),
                    help="a Table 2 model (ResNet/HBNet-34/50/101, DenseNet/AGDNet-121)"),
    **ROW_OVERRIDES,
}

#: model options a row sets itself (from the dataset), never MODEL_OPTIONS
ROW_SET_OPTIONS = ("num_classes", "in_channels")


def check_row(values: Mapping[str, Any]) -> None:
    """MODEL_OPTIONS checked exactly as the model checks them, before anything is written.

    The named model is built with the options on the ``meta`` device (no memory, no arithmetic),
    so an unknown option or a value the model refuses (``width=0``, ``dropout=1.5``, a non-finite
    ``beta``) is a one-line ``ParameterError`` from ``resolve``, not an error after the run folder
    and its sidecar exist. Options the row sets itself (:data:`ROW_SET_OPTIONS`) are refused."""
    model = values["MODEL"]
    options = dict(values.get("MODEL_OPTIONS") or {})
    valid = [o for o in models.valid_options(model) if o not in ROW_SET_OPTIONS]
    fixed = [k for k in options if k in ROW_SET_OPTIONS]
    if fixed:
        raise ParameterError(f"MODEL_OPTIONS: {fixed[0]!r} is set by the row from the dataset; valid "
                             f"options of {model}: {', '.join(valid) or '(none)'}")
    try:
        with torch.device("meta"):
            models.build(model, **options)
    except (ValueError, TypeError) as err:
        raise ParameterError(f"MODEL_OPTIONS of {model}: {' '.join(str(err).split())}") from None
