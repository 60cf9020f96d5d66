"""Beyond the paper, manual design: the variants notebook 10 studies, as a table beside Table 1.

**Not from the paper.** The paper builds ResNet/HBNet and DenseNet/AGDNet (Table 1); these rows
ask the questions it leaves open, on the same recipe and columns (CIFAR-10+ and CIFAR-100+):

* ADMMNet, the network of linearized ADMM (13), which the paper derives and never trains;
* HBNet with the momentum outside the closing ReLU (the literal eq. (10)), with the Nesterov
  ``beta_k`` of (3), and with a learnable beta per block;
* DenseNet started at AGDNet's effective BN gamma (``norm_init="agd"``): AGDNet's initialisation
  with DenseNet's training dynamics, which separates the two things the coefficients change
  (``optnb.models.special_cases.densenet_twin``).

Each variant is a notebook-06 run (``MODEL`` plus ``MODEL_OPTIONS``); ``optnb.experiments.targets``
maps such a run to its row here and the report shows it beside its Table 1 baseline measured
under the same profile and data. The table has no paper column: nothing here is judged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from optnb.experiments.paper import Column, unpublished_table

__all__ = ["TABLE", "VARIANTS", "Variant", "variant", "variant_of"]


@dataclass(frozen=True)
class Variant:
    """One row: the model and options that make it, the Table 1 row it is compared with, and
    other Table 1 rows its question needs trained beside it (``also``)."""

    key: str
    label: str
    model: str
    options: Mapping[str, Any] = field(default_factory=dict)
    baseline: str = ""
    question: str = ""
    also: tuple[str, ...] = ()


VARIANTS: tuple[Variant, ...] = (
    Variant("admmnet56", "ADMMNet (n = 9), eq. (13)", "admmnet56", {}, "resnet56",
            "does the ADMM network (two streams, shared weights) beat ResNet?"),
    Variant("hbnet56_outside", "HBNet (n = 9), momentum outside the ReLU (literal (10))",
            "hbnet56", {"momentum": "outside"}, "hbnet56",
            "does it matter where the momentum term sits?"),
    Variant("hbnet56_nesterov", "HBNet (n = 9), Nesterov beta_k of (3)", "hbnet56",
            {"beta_schedule": "nesterov"}, "hbnet56",
            "does AGD's growing momentum help a heavy-ball network?"),
    Variant("hbnet56_learnable", "HBNet (n = 9), learnable beta per block", "hbnet56",
            {"learnable_beta": True}, "hbnet56", "what beta does training choose?"),
    Variant("densenet40_agd_init", "DenseNet (k = 12, L = 40), AGDNet's initial BN gamma",
            "densenet40", {"norm_init": "agd"}, "agdnet40",
            "is AGDNet's gain its initialisation or its dynamics?", also=("densenet40",)),
)

_COLUMNS = (
    Column("params_m", "Params", "M", "params"),
    Column("cifar10+", "CIFAR-10(+)", "%", "error"),
    Column("cifar100+", "CIFAR-100(+)", "%", "error"),
)

TABLE = unpublished_table(
    name="beyond",
    title="Beyond the paper: manual design (not from the paper)",
    caption=("Variants the paper leaves open, trained with the Table 1 recipe; each beside its "
             "Table 1 baseline measured under the same profile and data. No paper values."),
    columns=_COLUMNS,
    rows=((v.key, v.label) for v in VARIANTS),
    notes=("Not from the paper: these rows are never compared with a published number.",),
)

_BY_KEY = {v.key: v for v in VARIANTS}


def variant(key: str) -> Variant:
    """The variant of row ``key``; ``KeyError`` names the valid rows."""
    if key not in _BY_KEY:
        raise KeyError(f"no beyond-the-paper row {key!r}; valid rows: {', '.join(_BY_KEY)}")
    return _BY_KEY[key]


def variant_of(model: Any, options: Mapping[str, Any] | None) -> Variant | None:
    """The row a notebook-06 run with ``MODEL=model`` and ``MODEL_OPTIONS=options`` fills."""
    wanted = dict(options or {})
    for v in VARIANTS:
        if v.model == model and dict(v.options) == wanted:
            return v
    return None
