"""A Table 1/2 row from a resolved ``Config``: the plan it asks for and the results it records.

Notebooks 06/07 and ``optnb train`` (also under ``torchrun``) call these, so a row trained from
either entry point has the same plan, the same run folder and the same sidecar.
"""

from __future__ import annotations

from typing import Any

from optnb.experiments import paper, results
from optnb.experiments.profiles import Config
from optnb.train import RowPlan, RowResult, plan_row
from optnb.train.experiment import is_imagenet_model


def plan_for(cfg: Config) -> RowPlan:
    """The row's plan: the paper's recipe for ``cfg.model``, shortened by ``cfg.profile``, with the
    notebook's overrides (EPOCHS, BATCH_SIZE, LR, RECIPE, MODEL_OPTIONS; 0/''/{} keep the recipe's)."""
    return plan_row(cfg.model, cfg.dataset, augment=cfg.params.get("augment", True),
                    profile=cfg.profile, seed=cfg.seed, epochs=cfg.epochs or None,
                    batch_size=cfg.batch_size or None, recipe=cfg.recipe or None,
                    model_options=cfg.model_options, lr=cfg.lr or None)


def paper_values(cfg: Config) -> dict[str, tuple[Any, str]]:
    """The paper's numbers for this row and column: ``{name: (value, unit)}``; None for a model
    the paper's table has no row for (e.g. ``resnet20``, or another depth of a family)."""
    if is_imagenet_model(cfg.model):
        values = _row_values("table2", cfg.model)
        return {"paper_top1_error": (values.get("top1"), "%"),
                "paper_top5_error": (values.get("top5"), "%")}
    column = ("cifar100" if cfg.dataset == "cifar100" else "cifar10") + \
        ("+" if cfg.params.get("augment", True) else "")
    return {"paper_test_error": (_row_values("table1", cfg.model).get(column), "%")}


def _row_values(table: str, model: str) -> dict[str, Any]:
    rows = {r.key: r for r in paper.table(table).rows}
    return dict(rows[model].values) if model in rows else {}


def comparable(cfg: Config) -> bool:
    """Only the paper profile on the paper's own dataset can be compared with the paper."""
    wanted = ("imagenet",) if is_imagenet_model(cfg.model) else ("cifar10", "cifar100")
    return cfg.profile == "paper" and cfg.dataset in wanted


def record(cfg: Config, result: RowResult, world_size: int = 1) -> None:
    """Record the row's results, the paper's values and whether they may be compared."""
    for name, (value, unit) in {**result.results(), **paper_values(cfg)}.items():
        results.record(name, value, unit)
    results.record("comparable_to_paper", comparable(cfg))
    results.record("world_size", world_size, "processes (torchrun)" if world_size > 1 else "process")
