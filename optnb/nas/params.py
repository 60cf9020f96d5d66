"""Notebook parameters of 08_nas_search / 09_nas_evaluate and the per-profile sizes behind them.

``resolve`` validates the UPPER names against ``NB08``/``NB09``; the sizes below (widths, cells,
epochs, batches, images) are keyed by ``cfg.profile`` and never by the notebook.

=========  =================================================  =================================
profile    search (08)                                        evaluation (09)
=========  =================================================  =================================
smoke      C=4, 3 cells, batch 8, 2 epochs, 64 images 16x16   C=4, 3 cells, batch 8, 1 epoch,
                                                              64 images 32x32
quick      C=16, 8 cells, batch 64, 10 epochs, 10k images     C=36, 20 cells, batch 96, 20 epochs
paper      C=16, 8 cells, batch 64, 50 epochs, 25k/25k        C=36, 20 cells, batch 96, 600 ep.
=========  =================================================  =================================

The ImageNet transfer (Table 5) uses DARTS's mobile recipe at ``paper`` (C=48, 14 cells, 250
epochs, batch 128, lr 0.1 decayed x0.97 per epoch, wd 3e-5, label smoothing 0.1) and tiny sizes
at ``smoke`` (no auxiliary head there: its 5x5 pooling needs the 7x7 map of 224x224 inputs).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from optnb.nas.derive import RULES
from optnb.nas.evaluate import EvalConfig
from optnb.nas.search import SearchConfig
from optnb.nas.spaces import INITS, SPACES
from optnb.paths import RUN_ID_RULE, is_run_id
from optnb.specs import choice, integer, number, text

_DERIVE = ("auto", *sorted({r for rules in RULES.values() for r in rules}))

NB08 = {
    "SPACE": choice(*SPACES, help="darts (eq. 19) | hb (eq. 15) | agd (eqs. 20-21)"),
    "INIT": choice(*INITS, help="random (1e-3 randn) | zeros | hb (eq. 18, hb space only)"),
    "ORDER": choice(1, 2, help="1st or 2nd order (unrolled) architecture gradient"),
    "EPOCHS": integer(0, 1000, help="0: the profile's default (paper: 50)"),
    "HB_INIT_LOGIT": number(0.0, 30.0, help="logit bias b realising the one-hot HB init"),
    "DERIVE": choice(*_DERIVE, help="derive rule; auto: the space's default"),
}

NB09 = {
    "TASK": choice("cifar10", "imagenet", help="cifar10: Table 4 row; imagenet: Table 5 transfer"),
    "GENOTYPE": text(help="a published name (DARTS_V2, ...), JSON or Genotype(...) text"),
    "SEARCH_RUN": text(help="run id of an 08_nas_search run whose genotype is evaluated",
                       check=lambda v: v == "" or is_run_id(v), rule=f"'' or {RUN_ID_RULE}"),
    "EPOCHS": integer(0, 2000, help="0: the profile's default (paper: 600 / 250)"),
}

SEARCH_SIZES: dict[str, dict[str, Any]] = {
    "smoke": {"C": 4, "layers": 3, "batch_size": 8, "epochs": 2, "max_images": 64},
    "quick": {"C": 16, "layers": 8, "batch_size": 64, "epochs": 10, "max_images": 10_000,
              "val_every": 5},
    "paper": {"C": 16, "layers": 8, "batch_size": 64, "epochs": 50, "max_images": 0},
}
SEARCH_IMAGE_SIZE = {"smoke": 16, "quick": None, "paper": None}

EVAL_SIZES: dict[str, dict[str, Any]] = {
    "smoke": {"C": 4, "layers": 3, "batch_size": 8, "epochs": 1, "max_images": 64},
    "quick": {"C": 36, "layers": 20, "batch_size": 96, "epochs": 20, "max_images": 0},
    "paper": {"C": 36, "layers": 20, "batch_size": 96, "epochs": 600, "max_images": 0},
}
#: DARTS's ImageNet (mobile setting) recipe, and the tiny stand-ins of the smaller profiles.
IMAGENET_RECIPE = EvalConfig(network="imagenet", C=48, layers=14, epochs=250, batch_size=128,
                             lr=0.1, weight_decay=3e-5, label_smoothing=0.1, drop_path=0.0,
                             cutout=0, schedule="exp97")
TRANSFER_SIZES: dict[str, dict[str, Any]] = {
    "smoke": {"C": 8, "layers": 3, "batch_size": 8, "epochs": 1, "max_images": 64,
              "auxiliary": False},
    "quick": {"C": 48, "layers": 14, "batch_size": 128, "epochs": 10, "max_images": 0},
    "paper": {},
}
TRANSFER_IMAGE_SIZE = {"smoke": 64, "quick": 224, "paper": 224}


def search_config(cfg: Any) -> SearchConfig:
    """The ``SearchConfig`` of a resolved 08 ``Config`` (its profile sizes + parameters)."""
    sizes = dict(SEARCH_SIZES[cfg.profile])
    if cfg.epochs:
        sizes["epochs"] = cfg.epochs
    return SearchConfig(space=cfg.space, init=cfg.init, order=int(cfg.order),
                        hb_init_logit=float(cfg.hb_init_logit), derive_rule=cfg.derive,
                        seed=cfg.seed, **sizes).checked()


def eval_config(cfg: Any) -> EvalConfig:
    """The ``EvalConfig`` of a resolved 09 ``Config``: CIFAR (Table 4) or ImageNet (Table 5)."""
    if cfg.task == "imagenet":
        base, sizes = IMAGENET_RECIPE, dict(TRANSFER_SIZES[cfg.profile])
    else:
        base, sizes = EvalConfig(), dict(EVAL_SIZES[cfg.profile])
    if cfg.epochs:
        sizes["epochs"] = cfg.epochs
    return replace(base, seed=cfg.seed, **sizes)
