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
epochs, batch 128, lr 0.1 decayed x0.97 per epoch, wd 3e-5, label smoothing 0.1, its colour jitter on
the streamed ImageNet tree) and tiny sizes
at ``smoke`` (no auxiliary head there: its 5x5 pooling needs the 7x7 map of 224x224 inputs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from optnb.nas.derive import RULES
from optnb.nas.evaluate import EvalConfig
from optnb.nas.search import EARLY_STOPS, SearchConfig
from optnb.nas.spaces import INITS, SPACES
from optnb.paths import RUN_ID_RULE, is_run_id
from optnb.specs import ParameterError, boolean, choice, integer, number, text

_DERIVE = ("auto", *sorted({r for rules in RULES.values() for r in rules}))

NB08 = {
    "SPACE": choice(*SPACES, help="darts (eq. 19) | hb (eq. 15) | agd (eqs. 20-21)"),
    "INIT": choice(*INITS, help="random (1e-3 randn) | zeros | hb (eq. 18, hb space only)"),
    "ORDER": choice(1, 2, help="1st or 2nd order (unrolled) architecture gradient"),
    "EPOCHS": integer(0, 1000, help="0: the profile's default (paper: 50)"),
    "HB_INIT_LOGIT": number(0.0, 30.0, help="logit bias b realising the one-hot HB init"),
    "DERIVE": choice(*_DERIVE, help="derive rule; auto: the space's default"),
    "PARTIAL_CHANNELS": integer(1, 64, help="PC-DARTS K: 1/K of the channels through the mixed "
                                            "ops; 1 = all; must divide the profile's C"),
    "MAX_SKIP": integer(-1, 64, help="P-DARTS cap on skips in the derived normal cell; -1 = off, "
                                     "the remedy: 2"),
    "SKIP_HB_PAIR": boolean(help="hb: eq. (18)'s identity pair per node is not counted as skips"),
    "EARLY_STOP": choice(*EARLY_STOPS, help="darts+: stop at STOP_SKIPS skips in the normal cell, or "
                                            "when the alpha ranking is stable STABLE_EPOCHS epochs"),
    "STABLE_EPOCHS": integer(0, 1000, help="darts+: epochs of an unchanged ranking that stop the search; 0 = off"),
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
                             cutout=0, schedule="exp97", color="darts")
TRANSFER_SIZES: dict[str, dict[str, Any]] = {
    "smoke": {"C": 8, "layers": 3, "batch_size": 8, "epochs": 1, "max_images": 64,
              "auxiliary": False},
    "quick": {"C": 48, "layers": 14, "batch_size": 128, "epochs": 10, "max_images": 0},
    "paper": {},
}
TRANSFER_IMAGE_SIZE = {"smoke": 64, "quick": 224, "paper": 224}


def check_search(values: Mapping[str, Any]) -> None:
    """PARTIAL_CHANNELS must divide the search width C of the run's (effective) ``PROFILE``,
    checked before anything is written."""
    k = values.get("PARTIAL_CHANNELS", 1)
    profile = values.get("PROFILE")
    if profile not in SEARCH_SIZES:
        return
    c = SEARCH_SIZES[profile]["C"]
    if c % k:
        valid = ", ".join(str(d) for d in range(1, c + 1) if c % d == 0)
        raise ParameterError(f"PARTIAL_CHANNELS {k} must divide the search width C={c} of profile "
                             f"{profile!r}; valid: {valid}")


def search_config(cfg: Any) -> SearchConfig:
    """The ``SearchConfig`` of a resolved 08 ``Config`` (its profile sizes + parameters)."""
    sizes = dict(SEARCH_SIZES[cfg.profile])
    if cfg.epochs:
        sizes["epochs"] = cfg.epochs
    return SearchConfig(space=cfg.space, init=cfg.init, order=int(cfg.order),
                        hb_init_logit=float(cfg.hb_init_logit), derive_rule=cfg.derive,
                        partial_channels=int(cfg.partial_channels),
                        max_skip=None if cfg.max_skip < 0 else int(cfg.max_skip),
                        skip_hb_pair=bool(cfg.skip_hb_pair), early_stop=cfg.early_stop,
                        stable_epochs=int(cfg.stable_epochs),
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
