"""The configuration a run uses, beside every hyper-parameter the paper states (issue 11, item 2).

``PAPER_SETTINGS`` holds, per phase, each setting the paper states (section 8 for Tables 1-2,
section 9.3 for Tables 4-5) or, where it defers, its source's value (DenseNet for the CIFAR
recipe, the DenseNet/ResNet ImageNet schedule, DARTS for search, evaluation and the ImageNet
transfer), with a short quote. Settings that only some rows fix (depths, spaces, orders, the
augmented and plain columns) are in ``ROW_SETTINGS``/``COLUMN_SETTINGS``; :func:`paper_settings`
merges them. Nothing here is a value the paper and its sources are silent about.

``describe_row``/``describe_search``/``describe_evaluation`` read the same names off the objects a
run really uses (``RowPlan``, ``SearchConfig``, ``EvalConfig``), schedules by their behaviour
(``lr_at`` at a few epochs, milestones resolved over the run's epochs). :func:`check` sets them
side by side: a difference passes only with a reason (``DOCUMENTED_DEVIATIONS``, or one a caller
passes in, e.g. a batch shrunk by a rehearsal on a small machine). :func:`configuration_for`
resolves a paper row's configuration at profile ``paper`` with the functions notebooks 06-09 use.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optnb import models
from optnb.experiments import paper, plans, targets
from optnb.nas.derive import derive_cell
from optnb.nas.edges import space_edges
from optnb.nas.evaluate import EvalConfig
from optnb.nas.network import drop_path_schedule
from optnb.nas.search import SearchConfig, arch_optimizer, weight_optimizer
from optnb.nas.spaces import default_primitives
from optnb.train.engine import make_optimizer
from optnb.train.experiment import RowPlan, is_imagenet_model
from optnb.train.recipes import RESNET_FAMILIES

__all__ = ["COLUMN_SETTINGS", "ConfigCheck", "DOCUMENTED_DEVIATIONS", "Deviation", "PAPER_SETTINGS",
           "PHASES", "ROW_SETTINGS", "Setting", "check", "configuration_for", "describe_evaluation",
           "describe_row", "describe_search", "paper_settings", "table1_column"]

PHASES = ("train_cifar", "train_imagenet", "search", "evaluate", "transfer")
#: relative tolerance of float comparisons (the brief's 1e-9); the absolute one only matters at 0
REL_TOL, ABS_TOL = 1e-9, 1e-15


class PaperConfigError(ValueError):
    """An unknown phase, row, column or deviation name (the message lists the valid ones)."""


@dataclass(frozen=True)
class Setting:
    """One hyper-parameter as the paper (or the source it defers to) states it."""

    name: str
    value: Any
    source: str


@dataclass(frozen=True)
class Deviation:
    """A known difference: ``name`` may be ``actual`` (only that value) for ``reason``; ``rows``
    limits it to those paper rows (empty: every row of the phase)."""

    name: str
    actual: Any
    reason: str
    rows: tuple[str, ...] = ()


# --- the paper's schedules, computed here from the stated numbers (an oracle independent of the
# --- code's ``lr_at``, so a wrong schedule in the code is caught, not copied)

def _step_lr(lr: float, milestones: Sequence[int], gamma: float, epochs: Sequence[int]) -> dict[int, float]:
    return {e: lr * gamma ** sum(e >= m for m in milestones) for e in epochs}


def _cosine_lr(lr: float, total: int, epochs: Sequence[int], lr_min: float = 0.0) -> dict[int, float]:
    # SGDR without restart [86]: lr_min + (lr - lr_min) (1 + cos(pi e / E)) / 2
    return {e: lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * e / total)) for e in epochs}


def _exp_lr(lr: float, gamma: float, epochs: Sequence[int]) -> dict[int, float]:
    return {e: lr * gamma ** e for e in epochs}


#: epochs at which schedules are compared (0-based): start, around each change, end
LR_EPOCHS = {"train_cifar": (0, 149, 150, 224, 225, 299), "train_imagenet": (0, 29, 30, 59, 60, 89),
             "search": (0, 12, 25, 49), "evaluate": (0, 150, 300, 599), "transfer": (0, 1, 100, 249)}
DROP_PATH_EPOCHS = (0, 300, 599)

_DN = "DenseNet CIFAR recipe (§8: 'training strategies adopted in DenseNet [10]')"
_DN_IN = "DenseNet ImageNet schedule (optnb.train.recipes; §8 defers to DenseNet)"
_S93 = "§9.3: "
_EVAL = "§9.3: 'Other hyperparameters remain the same as the ones used for architecture search'"
_DARTS = "DARTS train_search.py"
_DARTS_EVAL = "DARTS train.py (--auxiliary --cutout)"
_DARTS_IN = "DARTS train_imagenet.py (mobile setting; Table 5 gives no recipe)"


def _s(name: str, value: Any, source: str) -> Setting:
    return Setting(name, value, source)


PAPER_SETTINGS: dict[str, tuple[Setting, ...]] = {
    "train_cifar": (
        _s("optimizer", "sgd", f"{_DN}: SGD"),
        _s("lr", 0.1, f"{_DN}: 'initial learning rate is set to 0.1'"),
        _s("momentum", 0.9, f"{_DN}: 'Nesterov momentum of 0.9'"),
        _s("nesterov", True, f"{_DN}: 'Nesterov momentum of 0.9 without dampening'"),
        _s("weight_decay", 1e-4, f"{_DN}: 'weight decay of 10^-4'"),
        _s("batch_size", 64, f"{_DN}: 'batch size 64 for 300 ... epochs'"),
        _s("epochs", 300, f"{_DN}: 'batch size 64 for 300 ... epochs'"),
        _s("lr_schedule", "step", f"{_DN}: 'divided by 10 at 50% and 75% of the total number of training epochs'"),
        _s("lr_milestones", (150, 225), f"{_DN}: '/10 at 50% and 75%' of 300 epochs"),
        _s("lr_gamma", 0.1, f"{_DN}: 'divided by 10'"),
        _s("lr_at", _step_lr(0.1, (150, 225), 0.1, LR_EPOCHS["train_cifar"]), f"{_DN}: 0.1, /10 at epochs 150 and 225"),
        _s("warmup_epochs", 0, f"{_DN}: no warm-up (§8: ResNet n = 18 'requires multiple trials' instead)"),
        _s("image_size", 32, "Table 1: CIFAR 32x32"),
    ),
    "train_imagenet": (
        _s("dataset", "imagenet", "Table 2: 'classification on ImageNet'"),
        _s("optimizer", "sgd", f"{_DN_IN}: SGD"),
        _s("lr", 0.1, f"{_DN_IN}: 'learning rate is set to 0.1 initially'"),
        _s("momentum", 0.9, f"{_DN_IN}: Nesterov momentum 0.9"),
        _s("nesterov", True, f"{_DN_IN}: Nesterov momentum 0.9"),
        _s("weight_decay", 1e-4, f"{_DN_IN}: weight decay 1e-4"),
        _s("batch_size", 256, f"{_DN_IN}: '90 epochs with a batch size of 256'"),
        _s("epochs", 90, f"{_DN_IN}: '90 epochs with a batch size of 256'"),
        _s("lr_schedule", "step", f"{_DN_IN}: 'lowered by 10 times at epoch 30 and 60'"),
        _s("lr_milestones", (30, 60), f"{_DN_IN}: 'lowered by 10 times at epoch 30 and 60'"),
        _s("lr_gamma", 0.1, f"{_DN_IN}: 'lowered by 10 times'"),
        _s("lr_at", _step_lr(0.1, (30, 60), 0.1, LR_EPOCHS["train_imagenet"]), f"{_DN_IN}: 0.1, /10 at 30 and 60"),
        _s("image_size", 224, "He et al. / DenseNet: 224x224 crops"),
        _s("crop", "random_resized_crop",
           "DenseNet ImageNet (fb.resnet.torch): random-sized 224 crop (docs/recipes.md)"),
        _s("flip", True, "He et al. §3.4 / DenseNet ImageNet: horizontal flip"),
        _s("color_jitter", {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.0},
           "He et al. §3.4: 'The standard color augmentation in [21] is used'; DenseNet's ImageNet code "
           "(fb.resnet.torch): ColorJitter{brightness=0.4, contrast=0.4, saturation=0.4}"),
        _s("lighting", 0.1, "He et al. §3.4 / [21]: PCA lighting noise; fb.resnet.torch: "
                            "Lighting(0.1, pca.eigval, pca.eigvec)"),
    ),
    "search": (
        _s("dataset", "cifar10", f"{_S93}'We evaluate our methods on CIFAR-10'"),
        _s("train_portion", 0.5, f"{_S93}'25,000 training samples as the training set and the other "
                                 "25,000 ... as the validation set'"),
        _s("search_images", "all", f"{_S93}25,000 + 25,000 = all 50,000 CIFAR-10 training images"),
        _s("layers", 8, f"{_S93}'We train a small network with 8 cells'"),
        _s("C", 16, f"{_S93}'the initial number of channels is 16'"),
        _s("epochs", 50, f"{_S93}'for 50 epochs'"),
        _s("batch_size", 64, f"{_S93}'batch size 64 (for both the training and validation sets)'"),
        _s("optimizer", "sgd", f"{_S93}'We use momentum SGD to optimize the weights w'"),
        _s("lr", 0.025, f"{_S93}'initial learning rate eta_w = 0.025'"),
        _s("lr_schedule", "cosine", f"{_S93}'annealed down to zero following a cosine schedule without restart [86]'"),
        _s("lr_min", 0.0, f"{_S93}'annealed down to zero'"),
        _s("lr_at", _cosine_lr(0.025, 50, LR_EPOCHS["search"]), f"{_S93}cosine from 0.025 to 0 over 50 epochs"),
        _s("momentum", 0.9, f"{_S93}'momentum 0.9'"),
        _s("weight_decay", 3e-4, f"{_S93}'weight decay 3 x 10^-4'"),
        _s("grad_clip", 5.0, f"{_DARTS}: --grad_clip 5 (the paper keeps DARTS's search method, §9.3)"),
        _s("image_size", 32, "§9.3: CIFAR-10, 32x32"),
        _s("steps", 4, "§9: 'a standard convolution cell is composed of N = 7 nodes', eq. (14) c_k = [x0, x1, x2, x3]"),
        _s("cell_output", "concat", "§9 eq. (14): 'the depthwise concatenation of all the intermediate nodes'"),
        _s("arch_optimizer", "adam", f"{_S93}'use Adam [87] as the optimizer'"),
        _s("arch_lr", 3e-4, f"{_S93}'initial learning rate eta_alpha = eta_beta = 3 x 10^-4'"),
        _s("arch_betas", (0.5, 0.999), f"{_S93}'momentum (0.5, 0.999)'"),
        _s("arch_weight_decay", 1e-3, f"{_S93}'weight decay 10^-3'"),
        _s("arch_warmup_epochs", 0, f"{_DARTS}: an architecture step every iteration from the first epoch"),
        _s("partial_channels", 1,
           f"{_S93}'does not change the search method' (DARTS: every channel through each mixed op)"),
        _s("max_skip", None, f"{_S93}'does not change the search method' (no skip cap)"),
        _s("early_stop", "off", f"{_S93}'does not change the search method' (all 50 epochs)"),
    ),
    "evaluate": (
        _s("dataset", "cifar10", "Table 4: 'Experimental results on CIFAR-10'"),
        _s("network", "cifar", "§9.3: the CIFAR-10 evaluation network"),
        _s("layers", 20, f"{_S93}'we train a large network of 20 cells'"),
        _s("epochs", 600, f"{_S93}'for 600 epochs'"),
        _s("batch_size", 96, f"{_S93}'with batch size 96'"),
        _s("C", 36, f"{_S93}'The initial number of channels is increased from 16 to 36'"),
        _s("optimizer", "sgd", f"{_EVAL} (momentum SGD)"),
        _s("lr", 0.025, f"{_EVAL} (eta_w = 0.025)"),
        _s("lr_schedule", "cosine", f"{_EVAL} (cosine without restart)"),
        _s("lr_min", 0.0, f"{_EVAL} ('annealed down to zero')"),
        _s("lr_at", _cosine_lr(0.025, 600, LR_EPOCHS["evaluate"]), f"{_EVAL}: cosine from 0.025 to 0 over 600 epochs"),
        _s("momentum", 0.9, f"{_EVAL} (momentum 0.9)"),
        _s("weight_decay", 3e-4, f"{_EVAL} (weight decay 3 x 10^-4)"),
        _s("grad_clip", 5.0, f"{_DARTS_EVAL}: --grad_clip 5"),
        _s("cutout", True, f"{_S93}'Additional enhancements include cutout [88]'"),
        _s("cutout_length", 16, f"{_DARTS_EVAL}: --cutout_length 16"),
        _s("drop_path", 0.2, f"{_S93}'path dropout of probability 0.2'"),
        _s("drop_path_at", {e: 0.2 * e / 600 for e in DROP_PATH_EPOCHS},
           f"{_DARTS_EVAL}: drop_path_prob * epoch / epochs (a linear ramp to 0.2)"),
        _s("auxiliary", True, f"{_S93}'auxiliary heads with weight 0.4'"),
        _s("aux_weight", 0.4, f"{_S93}'auxiliary heads with weight 0.4'"),
        _s("label_smoothing", 0.0, f"{_DARTS_EVAL}: nn.CrossEntropyLoss() (no smoothing)"),
        _s("image_size", 32, "Table 4: CIFAR-10, 32x32"),
        _s("crop_padding", 4, f"{_DARTS_EVAL}: RandomCrop(32, padding=4)"),
        _s("flip", True, f"{_DARTS_EVAL}: RandomHorizontalFlip()"),
    ),
    "transfer": (
        _s("dataset", "imagenet",
           "Table 5: 'our performance on ImageNet using the architecture searched ... on CIFAR-10'"),
        _s("network", "imagenet", f"{_DARTS_IN}: NetworkImageNet"),
        _s("layers", 14, f"{_DARTS_IN}: --layers 14"),
        _s("C", 48, f"{_DARTS_IN}: --init_channels 48"),
        _s("epochs", 250, f"{_DARTS_IN}: --epochs 250"),
        _s("batch_size", 128, f"{_DARTS_IN}: --batch_size 128"),
        _s("optimizer", "sgd", f"{_DARTS_IN}: torch.optim.SGD"),
        _s("lr", 0.1, f"{_DARTS_IN}: --learning_rate 0.1"),
        _s("lr_schedule", "exp", f"{_DARTS_IN}: StepLR(decay_period 1, gamma 0.97)"),
        _s("lr_gamma", 0.97, f"{_DARTS_IN}: --gamma 0.97 --decay_period 1"),
        _s("lr_at", _exp_lr(0.1, 0.97, LR_EPOCHS["transfer"]),
           f"{_DARTS_IN}: 0.1 x 0.97^epoch (its code steps the scheduler before each epoch, one epoch ahead)"),
        _s("momentum", 0.9, f"{_DARTS_IN}: --momentum 0.9"),
        _s("weight_decay", 3e-5, f"{_DARTS_IN}: --weight_decay 3e-5"),
        _s("grad_clip", 5.0, f"{_DARTS_IN}: --grad_clip 5"),
        _s("label_smoothing", 0.1, f"{_DARTS_IN}: --label_smooth 0.1"),
        _s("auxiliary", True, f"{_DARTS_IN}: run with --auxiliary (DARTS README)"),
        _s("aux_weight", 0.4, f"{_DARTS_IN}: --auxiliary_weight 0.4"),
        _s("drop_path", 0.0, f"{_DARTS_IN}: --drop_path_prob 0"),
        _s("cutout", False, f"{_DARTS_IN}: no cutout"),
        _s("image_size", 224, f"{_DARTS_IN}: RandomResizedCrop(224)"),
        _s("crop", "random_resized_crop", f"{_DARTS_IN}: RandomResizedCrop(224)"),
        _s("flip", True, f"{_DARTS_IN}: RandomHorizontalFlip()"),
        _s("color_jitter", {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.2},
           f"{_DARTS_IN}: ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2)"),
        _s("lighting", 0.0, f"{_DARTS_IN}: no lighting noise"),
    ),
}


def _depth_settings(row: str, table: str) -> tuple[Setting, ...]:
    """Table 1/2 row sizes: §8 'n equals to 9 and 18 ... depth is 56 and 110', 'growth rate k is
    12 and the depth L is 40 and 52'; Table 2 'baselines of the same depth'."""
    depth = int(re.search(r"\d+$", row).group())
    if table == "table2":
        return (_s("depth", depth, f"Table 2: {row} (depth {depth})"),)
    if row.startswith(RESNET_FAMILIES):
        n = (depth - 2) // 6
        return (_s("depth", depth, f"§8: 'n equals to 9 and 18, in which cases the depth is 56 and 110' ({row})"),
                _s("n", n, f"§8 / Table 1: {row} has n = {n}"))
    return (_s("depth", depth, f"§8: 'the depth L is 40 and 52' ({row})"),
            _s("growth_rate", 12, "§8: 'when the growth rate k is 12'"))


_T4 = "Table 4 row"
_NOT_STATED = ("not stated for the paper's spaces; Table 4's costs (0.3/0.4 GPU days) match DARTS 1st order "
               "(optnb.experiments.targets.SEARCH_ROWS)")
_DARTS_INIT = "DARTS model_search.py: 1e-3 * randn"
_OPS9 = tuple(sorted(op.name for op in paper.OPERATIONS))
_OPS8 = tuple(sorted(op.name for op in paper.OPERATIONS if op.name != "neg_skip_connect"))


def _search_row(space: str, init: str, order: int, order_source: str, init_source: str) -> tuple[Setting, ...]:
    ops = (_s("operations", _OPS8, "DARTS: its 8 candidates (Table 3 without negative identity)") if space == "darts"
           else _s("operations", _OPS9, "§9.1: 'a set of 9 candidate operations ... listed in Table 3'"))
    keep = {"darts": (2, "DARTS: the top-2 edges per node"),
            "hb": (3, "§9.3: 'retain the top-3 strongest non-zero operations from x_{k-1} and x_{k-2}'"),
            "agd": (2, "§9.3: 'retain the top-2 strongest non-zero operations from all previous nodes'")}[space]
    norm = {"darts": ("off", "§9.2 eq. (19): no path weights"), "hb": ("off", "§9.1 eq. (15): no path weights"),
            "agd": ("path", "§9.2 eqs. (20)-(21): path probabilities p_it by a softmax over the paths")}[space]
    out = [_s("space", space, {"darts": "§9.2 eq. (19)", "hb": "§9.1 eq. (15)", "agd": "§9.2 eqs. (20)-(21)"}[space]),
           _s("order", order, order_source), _s("arch_init", init, init_source), ops,
           _s("derived_ops_per_node", keep[0], keep[1]), _s("edge_normalization", *norm)]
    if init == "hb":
        out.append(_s("hb_init_weight", 1.0, "§9.1: 'constructing one-hot vectors ... the coefficient for identity "
                                            "operation is 1; ... for negative operation is 1'"))
    return tuple(out)


ROW_SETTINGS: dict[str, dict[str, tuple[Setting, ...]]] = {
    "train_cifar": {r.key: _depth_settings(r.key, "table1") for r in paper.table("table1").reproducible_rows},
    "train_imagenet": {r.key: _depth_settings(r.key, "table2") for r in paper.table("table2").reproducible_rows},
    "search": {
        "darts_1st": _search_row("darts", "random", 1, f"{_T4} 'DARTS (1st order)'", _DARTS_INIT),
        "darts_2nd": _search_row("darts", "random", 2, f"{_T4} 'DARTS (2nd order)'", _DARTS_INIT),
        "hb": _search_row("hb", "random", 1, _NOT_STATED,
                          "§9.1: 'As a comparable baseline, all the parameters are randomly initialized'"),
        "hb_init": _search_row("hb", "hb", 1, _NOT_STATED,
                               "§9.1: 'we initialize ... by constructing one-hot vectors' (eq. 18)"),
        "agd": _search_row("agd", "zeros", 1, _NOT_STATED,
                           f"{_S93}'We use zero initialization for architecture variables alpha and beta'"),
    },
}


def _column_settings(augment: bool) -> tuple[Setting, ...]:
    if augment:
        return (_s("augment", True, "Table 1: '\"+\" means that the standard data augmentation is enabled'"),
                _s("crop_padding", 4, "DenseNet / ResNet: 'crop after zero-padding' (4 pixels)"),
                _s("flip", True, "DenseNet / ResNet: horizontal flip"),
                _s("dropout", 0.0, f"{_DN}: dropout only without data augmentation"))
    return (_s("augment", False, "Table 1: columns without '+' have no data augmentation"),
            _s("crop_padding", 0, "Table 1: no augmentation"),
            _s("flip", False, "Table 1: no augmentation"),
            _s("dropout", 0.2,
               f"{_DN}: 'On CIFAR-10 and CIFAR-100 (without augmentation), Dropout with 0.2 drop rate'"))


#: Table 1 column -> its settings (the dataset, and the augmentation "+" means)
COLUMN_SETTINGS: dict[str, tuple[Setting, ...]] = {
    c: (_s("dataset", c.rstrip("+"), f"Table 1 column {c}"), *_column_settings(c.endswith("+")))
    for c in paper.table("table1").column_keys("error")
}

DOCUMENTED_DEVIATIONS: dict[str, tuple[Deviation, ...]] = {
    "train_cifar": (
        Deviation("dropout", 0.0, "the CIFAR ResNet/HBNet models have no dropout layers; §8 does not say whether "
                  "DenseNet's dropout applies to them (optnb.train.experiment)",
                  tuple(r.key for r in paper.table("table1").reproducible_rows if r.key.startswith(RESNET_FAMILIES))),
    ),
    "train_imagenet": (),
    "search": (
        Deviation("arch_init", "random", "alphas and edge logits start at 1e-3 * randn as in DARTS's code "
                  "('practically zero'); init='zeros' is the option (docs/nas_choices.md, item 6)", ("agd",)),
        Deviation("hb_init_weight", math.exp(5.0) / (math.exp(5.0) + len(_OPS9) - 1),
                  "a softmax cannot be exactly one-hot: logit bias hb_init_logit = 5 gives e^5/(e^5+8) = 0.949 "
                  "(docs/nas_choices.md, item 5)", ("hb_init",)),
    ),
    "evaluate": (),
    "transfer": (),
}


def _check_phase(phase: str) -> str:
    if phase not in PHASES:
        raise PaperConfigError(f"unknown phase {phase!r}; valid phases: {', '.join(PHASES)}")
    return phase


def paper_settings(phase: str, row: str | None = None, column: str | None = None) -> tuple[Setting, ...]:
    """Every setting the paper states for ``phase``, with those of ``row`` (and for Table 1 of
    ``column``) when the phase has row- or column-specific ones."""
    out = list(PAPER_SETTINGS[_check_phase(phase)])
    rows = ROW_SETTINGS.get(phase)
    if rows is not None:
        if row not in rows:
            raise PaperConfigError(f"phase {phase} has no paper row {row!r}; valid rows: {', '.join(rows)}")
        out.extend(rows[row])
    if phase == "train_cifar":
        if column not in COLUMN_SETTINGS:
            raise PaperConfigError(f"phase train_cifar has no Table 1 column {column!r}; valid columns: "
                                   f"{', '.join(COLUMN_SETTINGS)}")
        out.extend(COLUMN_SETTINGS[column])
    return tuple(out)


# --- the comparison


def _same(paper_value: Any, actual: Any) -> bool:
    """Equal, floats within REL_TOL; bools only equal bools; sequences and mappings item by item."""
    if isinstance(paper_value, bool) or isinstance(actual, bool):
        return type(paper_value) is type(actual) and paper_value == actual
    if isinstance(paper_value, (int, float)) and isinstance(actual, (int, float)):
        return math.isclose(paper_value, actual, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    if isinstance(paper_value, Mapping) and isinstance(actual, Mapping):
        return set(paper_value) == set(actual) and all(_same(paper_value[k], actual[k]) for k in paper_value)
    seqs = (list, tuple)
    if isinstance(paper_value, seqs) and isinstance(actual, seqs):
        return len(paper_value) == len(actual) and all(_same(a, b) for a, b in zip(paper_value, actual))
    return paper_value == actual


@dataclass(frozen=True)
class CheckRow:
    name: str
    paper: Any
    actual: Any
    source: str
    status: str  # same | differs (documented: reason) | DIFFERS | MISSING

    @property
    def ok(self) -> bool:
        return self.status not in ("DIFFERS", "MISSING")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, Mapping):
        text = ", ".join(f"{k}: {_cell(v)}" for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        text = "(" + ", ".join(_cell(v) for v in value) + ")"
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


@dataclass(frozen=True)
class ConfigCheck:
    """The settings of one run beside the paper's, one row per paper setting."""

    phase: str
    row: str | None
    column: str | None
    rows: tuple[CheckRow, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def failures(self) -> tuple[CheckRow, ...]:
        return tuple(r for r in self.rows if not r.ok)

    def to_markdown(self) -> str:
        where = " ".join(x for x in (self.row, self.column) if x)
        lines = [f"**{self.phase}**{f' ({where})' if where else ''}: "
                 f"{'ok' if self.ok else f'{len(self.failures)} setting(s) differ'}", "",
                 "| setting | paper | actual | status | source |", "|---|---|---|---|---|"]
        lines += [f"| {r.name} | {_cell(r.paper)} | {_cell(r.actual) if r.status != 'MISSING' else '-'} | "
                  f"{_cell(r.status)} | {_cell(r.source)} |" for r in self.rows]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "row": self.row, "column": self.column, "ok": self.ok,
                "settings": [{"name": r.name, "paper": _jsonable(r.paper),
                              "actual": None if r.status == "MISSING" else _jsonable(r.actual),
                              "source": r.source, "status": r.status} for r in self.rows]}


def check(phase: str, actual: Mapping[str, Any], deviations: Mapping[str, str] | None = None,
          row: str | None = None, column: str | None = None) -> ConfigCheck:
    """Each paper setting of ``phase`` beside ``actual`` (a ``describe_*`` dict).

    ``row``/``column`` default to ``actual["row"]``/``actual["column"]``. ``deviations`` maps a
    setting to the reason it may differ (any value); ``DOCUMENTED_DEVIATIONS`` excuse only the
    value they name. A setting missing from ``actual`` fails."""
    _check_phase(phase)
    row = row if row is not None else actual.get("row")
    column = column if column is not None else actual.get("column")
    settings = paper_settings(phase, row, column)
    deviations = dict(deviations or {})
    names = [s.name for s in settings]
    unknown = [n for n in deviations if n not in names]
    if unknown:
        raise PaperConfigError(f"deviation {unknown[0]!r} names no paper setting of phase {phase}; valid: "
                               f"{', '.join(names)}")
    known = {d.name: d for d in DOCUMENTED_DEVIATIONS[phase] if not d.rows or row in d.rows}
    out = []
    for s in settings:
        if s.name not in actual:
            out.append(CheckRow(s.name, s.value, None, s.source, "MISSING"))
            continue
        value = actual[s.name]
        if _same(s.value, value):
            status = "same"
        elif s.name in deviations:
            status = f"differs (documented: {deviations[s.name]})"
        elif s.name in known and _same(known[s.name].actual, value):
            status = f"differs (documented: {known[s.name].reason})"
        else:
            status = "DIFFERS"
        out.append(CheckRow(s.name, s.value, value, s.source, status))
    return ConfigCheck(phase, row, column, tuple(out))


# --- what a run really uses


def _optimizer_name(factory: Any) -> str:
    """The optimiser class a factory function returns (its annotation): ``sgd`` / ``adam``."""
    return typing.get_type_hints(factory)["return"].__name__.lower()


def _lr_at(schedule: Any, epochs: int, phase: str) -> dict[int, float]:
    return {e: float(schedule.lr_at(e, epochs)) for e in LR_EPOCHS[phase]}


def _loader_padding() -> int:
    """The crop padding of the device loaders (``optnb.data.GpuLoader``'s default)."""
    # deferred: heavy (torch, the networks, the plans) and only needed here
    from optnb.data import GpuLoader

    return int(inspect.signature(GpuLoader).parameters["padding"].default)


#: what a loader without colour augmentation records (the CIFAR device loaders)
_NO_COLOR = {"color": "none", "color_jitter": dict.fromkeys(("brightness", "contrast", "saturation", "hue"), 0.0),
             "lighting": 0.0}


def _folder_augmentation(resolution: int, color: str) -> dict[str, Any]:
    """Crop, flip, colour jitter and lighting noise of the streamed ImageNet training loader, read
    off the transforms it builds."""
    # deferred: heavy (torch, the networks, the plans) and only needed here
    from optnb.data.folder import _FolderDataset

    dataset = _FolderDataset([], [], True, resolution, color)
    transforms = {type(t).__name__: t for t in dataset.transform.transforms}
    names = list(transforms)
    crop = "random_resized_crop" if "RandomResizedCrop" in names else "+".join(names)
    jitter = dict(_NO_COLOR["color_jitter"])
    if "ColorJitter" in transforms:  # torchvision keeps the factor ranges: [1 - s, 1 + s], [-h, h]
        for name in jitter:
            bounds = getattr(transforms["ColorJitter"], name)
            if bounds is not None:
                jitter[name] = (bounds[1] - bounds[0]) / 2
    return {"crop": crop, "flip": "RandomHorizontalFlip" in names, "color": color,
            "color_jitter": jitter, "lighting": dataset.color.lighting}


def _default(builder: Any, name: str) -> Any:
    return inspect.signature(builder).parameters[name].default


def table1_column(dataset: str, augment: bool) -> str:
    """The Table 1 column of a CIFAR row: ``cifar10``/``cifar100`` (stand-in data counts as
    ``cifar10``, as ``targets`` does), ``+`` when augmented."""
    return ("cifar100" if dataset == "cifar100" else "cifar10") + ("+" if augment else "")


def describe_row(plan: RowPlan, column: str | None = None) -> dict[str, Any]:
    """A Table 1/2 row's configuration under the names of ``PAPER_SETTINGS`` (``train_cifar`` /
    ``train_imagenet``), read off ``plan``: what ``train_row`` trains."""
    r = plan.recipe
    spec = models.spec(plan.trained_model)
    depth = plan.model_options.get("depth") or spec.fixed.get("depth") or int(re.search(r"\d+$", spec.name).group())
    out: dict[str, Any] = {
        "row": plan.model, "dataset": plan.dataset, "optimizer": _optimizer_name(make_optimizer),
        "lr": r.lr, "momentum": r.momentum, "nesterov": r.nesterov, "weight_decay": r.weight_decay,
        "batch_size": plan.batch_size, "epochs": plan.epochs, "lr_schedule": r.lr_schedule,
        "lr_gamma": r.gamma, "image_size": plan.resolution, "depth": int(depth),
        "warmup_epochs": getattr(r, "warmup_epochs", 0),  # a Recipe has no warm-up (fit sets lr_at per epoch)
    }
    if r.lr_schedule == "step":
        out["lr_milestones"] = tuple(r.milestone_epochs(plan.epochs))
    imagenet = is_imagenet_model(plan.model)
    out["lr_at"] = _lr_at(r, plan.epochs, "train_imagenet" if imagenet else "train_cifar")
    if spec.kind == "cifar":
        if spec.family in RESNET_FAMILIES:
            out["n"] = (int(depth) - 2) // 6
        else:
            out["growth_rate"] = plan.model_options.get("growth_rate", _default(spec.builder, "growth_rate"))
    if plan.dataset == "imagenet" and imagenet:
        out.update(_folder_augmentation(plan.resolution, plan.color))
    else:  # the device loader of make_loaders: pad size // 8 (4 at 32x32), crop, flip; no colour
        out.update(augment=plan.augment, crop_padding=max(1, plan.resolution // 8) if plan.augment else 0,
                   flip=plan.augment, crop="pad_crop" if plan.augment else "none", **_NO_COLOR)
    out["dropout"] = float(plan.model_options.get("dropout", 0.0))
    if not imagenet:
        out["column"] = column or table1_column(plan.dataset, plan.augment)
    return out


def _derived_ops_per_node(space: str, rule: str, primitives: Sequence[str], steps: int) -> int:
    """How many ops the derive rule keeps per node, found by deriving a cell from uniform weights."""
    rows = len(space_edges(space, steps))
    cell = derive_cell(space, np.full((rows, len(primitives)), 1.0 / len(primitives)), primitives, steps,
                       rule, path_weights=np.ones(rows))
    return len(cell) // steps


def describe_search(cfg: SearchConfig, dataset: str | None = None, image_size: int | None = None,
                    row: str | None = None) -> dict[str, Any]:
    """A search's configuration under the names of ``PAPER_SETTINGS["search"]``. ``row`` (the
    Table 4 row it runs for) defaults to the row of its (space, init, order); ``dataset`` and
    ``image_size`` are the data it searches (left out when not given: then they show MISSING)."""
    cfg = cfg.checked()
    primitives = tuple(cfg.primitives or default_primitives(cfg.space))
    out: dict[str, Any] = {
        "row": row or targets.search_row(cfg.space, cfg.init, cfg.order),
        "train_portion": cfg.train_portion, "search_images": cfg.max_images or "all",
        "layers": cfg.layers, "C": cfg.C, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
        "optimizer": _optimizer_name(weight_optimizer), "lr": cfg.lr, "lr_schedule": "cosine",
        "lr_min": cfg.eta_min, "lr_at": _lr_at(cfg, cfg.epochs, "search"), "momentum": cfg.momentum,
        "weight_decay": cfg.weight_decay, "grad_clip": cfg.grad_clip, "steps": cfg.steps,
        "cell_output": cfg.cell_output, "arch_optimizer": _optimizer_name(arch_optimizer),
        "arch_lr": cfg.arch_lr, "arch_betas": tuple(cfg.arch_betas), "arch_weight_decay": cfg.arch_weight_decay,
        "arch_warmup_epochs": cfg.arch_warmup_epochs, "partial_channels": cfg.partial_channels,
        "max_skip": cfg.max_skip, "early_stop": cfg.early_stop, "space": cfg.space, "order": cfg.order,
        "arch_init": cfg.init, "operations": tuple(sorted(primitives)),
        "derived_ops_per_node": _derived_ops_per_node(cfg.space, cfg.derive_rule, primitives, cfg.steps),
        "edge_normalization": cfg.edge_normalization,
    }
    if cfg.init == "hb":  # the initial softmax weight of identity (o2) and negative identity (o)
        out["hb_init_weight"] = math.exp(cfg.hb_init_logit) / (math.exp(cfg.hb_init_logit) + len(primitives) - 1)
    if dataset is not None:
        out["dataset"] = dataset
    if image_size is not None:
        out["image_size"] = image_size
    return out


def describe_evaluation(cfg: EvalConfig, dataset: str | None = None, image_size: int | None = None,
                        row: str | None = None) -> dict[str, Any]:
    """An evaluation's (``evaluate``) or the ImageNet transfer's (``transfer``) configuration under
    the names of ``PAPER_SETTINGS``; ``dataset``/``image_size`` as in :func:`describe_search`."""
    cfg = cfg.checked()
    phase = "transfer" if cfg.network == "imagenet" else "evaluate"
    out: dict[str, Any] = {
        "row": row, "network": cfg.network, "layers": cfg.layers, "C": cfg.C, "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "optimizer": "sgd",  # optnb.nas.evaluate.train_genotype builds torch.optim.SGD
        "lr": cfg.lr, "lr_schedule": "exp" if cfg.schedule == "exp97" else cfg.schedule,
        "lr_at": _lr_at(cfg, cfg.epochs, phase), "momentum": cfg.momentum, "weight_decay": cfg.weight_decay,
        "grad_clip": cfg.grad_clip, "cutout": cfg.cutout > 0, "cutout_length": cfg.cutout,
        "drop_path": cfg.drop_path, "auxiliary": cfg.auxiliary, "aux_weight": cfg.aux_weight,
        "label_smoothing": cfg.label_smoothing,
        "drop_path_at": {e: drop_path_schedule(e, cfg.epochs, cfg.drop_path) for e in DROP_PATH_EPOCHS},
    }
    if cfg.schedule == "exp97":
        out["lr_gamma"] = cfg.lr_at(1) / cfg.lr_at(0)
    else:
        out["lr_min"] = cfg.lr_min
    if dataset == "imagenet" and image_size is not None:
        out.update(_folder_augmentation(image_size, cfg.color))
    else:  # the device loaders of tensor_loaders: crop with the loader's padding, flip, cutout
        out.update(crop_padding=_loader_padding(), flip=True, crop="pad_crop", **_NO_COLOR)
    if dataset is not None:
        out["dataset"] = dataset
    if image_size is not None:
        out["image_size"] = image_size
    return out


# --- a paper row's configuration at profile paper

#: (table, role) -> phase
ROLES: dict[tuple[str, str], str] = {("table1", "train"): "train_cifar", ("table2", "train"): "train_imagenet",
                                     ("table4", "search"): "search", ("table4", "evaluate"): "evaluate",
                                     ("table5", "search"): "search", ("table5", "transfer"): "transfer"}


@functools.lru_cache(maxsize=8)
def _notebook_defaults(notebook: str) -> dict[str, Any]:
    # deferred: heavy (torch, the networks, the plans) and only needed here
    from optnb.experiments.notebooks import find_notebook, notebook_parameters

    return {k: p.default for k, p in notebook_parameters(find_notebook(notebook)).items()}


def _config(notebook: str, parameters: Mapping[str, Any]) -> Any:
    """The ``Config`` a notebook's ``resolve`` makes of the plan's ``parameters`` (over the
    notebook's own defaults), without its side effects: no folder, no seeding, no environment."""
    # deferred: heavy (torch, the networks, the plans) and only needed here
    from optnb.experiments import profiles

    spec = profiles.notebook_spec(notebook)
    values = profiles.validate({**_notebook_defaults(notebook), **parameters}, spec)
    return profiles.Config(notebook=notebook, profile=values["PROFILE"], seed=values["SEED"], device="cpu",
                           dataset=values["DATASET"], dataset_real=True, live="off", results_dir=Path(),
                           run_id="", run_dir=Path(), params={k.lower(): v for k, v in values.items() if k in spec},
                           parameters=values)


def configuration_for(table: str, row: str, role: str, column: str | None = None,
                      profile: str = "paper") -> tuple[str, dict[str, Any]]:
    """``(phase, configuration)`` that ``optnb reproduce --profile paper`` runs for a paper row:
    the plan's parameters (``plans.build``, datasets taken as present), resolved by the functions
    notebooks 06-09 use (``rows.plan_for``, ``nas.params.search_config``/``eval_config``).
    ``column`` picks a Table 1 column (default ``cifar10+``)."""
    # deferred: heavy (torch, the networks, the plans) and only needed here
    from optnb.experiments import rows as row_plans
    from optnb.nas.params import SEARCH_IMAGE_SIZE, TRANSFER_IMAGE_SIZE, eval_config, search_config

    key = (str(table).strip().lower().replace(" ", ""), str(role).strip().lower())
    if key not in ROLES:
        raise PaperConfigError(f"no paper configuration for table {table!r} role {role!r}; valid: "
                               f"{', '.join(f'{t}/{r}' for t, r in ROLES)}")
    phase, (table, role) = ROLES[key], key
    valid_rows = [r.key for r in paper.table(table).reproducible_rows]
    if row not in valid_rows:
        raise PaperConfigError(f"{table} has no reproducible row {row!r}; valid rows: {', '.join(valid_rows)}")
    if role == "search" and table == "table5":
        source, name = targets.TRANSFER_ROWS[row]
        if source != "search":
            raise PaperConfigError(f"table5 row {row!r} evaluates the published cell {name}, it has no search; "
                                   "rows with a search: " + ", ".join(k for k, v in targets.TRANSFER_ROWS.items()
                                                                      if v[0] == "search"))
        table, row = "table4", name
    if table == "table1":
        column = column or "cifar10+"
        if column not in COLUMN_SETTINGS:
            raise PaperConfigError(f"table1 has no column {column!r}; valid columns: {', '.join(COLUMN_SETTINGS)}")
    plan = plans.build(profile, only=table, seeds=1, available=lambda _name: True)
    runs = [r for r in plan.runs if r.target is not None and (r.target.table, r.target.row, r.target.role)
            == (table, row, role) and (table != "table1" or r.target.column == column)]
    if not runs:
        raise PaperConfigError(f"the {profile} plan has no {role} run for {table} row {row!r}")
    cfg = _config(runs[0].notebook, runs[0].parameters)
    if phase in ("train_cifar", "train_imagenet"):
        return phase, describe_row(row_plans.plan_for(cfg), column)
    if phase == "search":
        size = SEARCH_IMAGE_SIZE[cfg.profile] or 32
        return phase, describe_search(search_config(cfg), cfg.dataset, size, row)
    size = TRANSFER_IMAGE_SIZE[cfg.profile] if phase == "transfer" else 32
    return phase, describe_evaluation(eval_config(cfg), cfg.dataset, size, row)


def describe(kind: str, config: Any, **options: Any) -> dict[str, Any]:
    """``describe_<kind>(config, **options)`` for ``kind`` in row, search, evaluation: what a
    rehearsed run records (``optnb.train.rehearsal_overlay.note_configuration``)."""
    functions = {"row": describe_row, "search": describe_search, "evaluation": describe_evaluation}
    if kind not in functions:
        raise PaperConfigError(f"unknown configuration kind {kind!r}; valid: {', '.join(functions)}")
    return functions[kind](config, **options)
