"""Training engine: recipes (paper §8), the fit loop, checkpoints, DDP, callbacks, table rows.

``fit(model, loader, recipe, ...)`` is the loop; ``plan_row`` + ``train_row`` train one Table 1/2
row the way notebooks 06/07 and ``optnb train`` do.
"""

from optnb.train.callbacks import (
    Callback,
    JsonlLogger,
    LivePlotCallback,
    ProgressCallback,
    read_jsonl,
)
from optnb.train.engine import (
    CheckpointExistsError,
    CheckpointMismatchError,
    FitOptions,
    FitResult,
    TrainingDivergedError,
    count_params,
    evaluate,
    fit,
    make_optimizer,
)
from optnb.train.experiment import RowPlan, RowResult, plan_row, train_row
from optnb.train.recipes import RECIPES, Budget, Recipe, RecipeError

__all__ = [
    "RECIPES", "Budget", "Callback", "CheckpointExistsError", "CheckpointMismatchError",
    "FitOptions", "FitResult", "JsonlLogger", "LivePlotCallback", "ProgressCallback", "Recipe",
    "RecipeError", "RowPlan", "RowResult", "TrainingDivergedError", "count_params", "evaluate",
    "fit", "make_optimizer", "plan_row", "read_jsonl", "train_row",
]
