"""Notebook parameter specs for 06_train_cifar (``NB06``) and 07_train_imagenet (``NB07``).

The common parameters (PROFILE, SEED, DEVICE, DATASET, LIVE, RESULTS_DIR, RUN_ID) are validated by
``optnb.experiments.resolve``; these are the notebook-specific UPPER names, shared with
``optnb train`` (which runs the same row without Jupyter). Sizes per profile live in
``optnb.train.recipes.BUDGETS``, never here; the model names in ``optnb.models``' registry.
"""

from __future__ import annotations

from functools import partial

from optnb import models
from optnb.specs import boolean, choice, integer, mapping, number
from optnb.train import recipes

#: what a row may change in the paper's recipe (0, "" and {} keep the recipe's own value)
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
