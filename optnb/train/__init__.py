"""Training: the one loop (``fit``), its checkpoint and callbacks, recipes (paper §8), DDP, and
one Table 1/2 row (``plan_row`` + ``train_row``, as notebooks 06/07 and ``optnb train`` run it).
"""

from optnb.train.callbacks import (
    LOG_NAME,
    Callback,
    JsonlLogger,
    LivePlotCallback,
    ProgressCallback,
    read_jsonl,
)
from optnb.train.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointCorruptError,
    CheckpointError,
    CheckpointExistsError,
    CheckpointMismatchError,
)
from optnb.train.engine import FitOptions, FitResult, TrainingDivergedError, fit, make_optimizer
from optnb.train.evaluation import evaluate
from optnb.train.experiment import RowPlan, RowResult, plan_row, train_row
from optnb.train.recipes import RECIPES, Budget, Recipe, RecipeError
from optnb.train.steps import ClassifierStep, StepOutput

__all__ = [
    "CHECKPOINT_NAME", "LOG_NAME", "RECIPES", "Budget", "Callback", "CheckpointCorruptError",
    "CheckpointError", "CheckpointExistsError", "CheckpointMismatchError", "ClassifierStep", "FitOptions", "FitResult",
    "JsonlLogger", "LivePlotCallback", "ProgressCallback", "Recipe", "RecipeError", "RowPlan",
    "RowResult", "StepOutput", "TrainingDivergedError", "evaluate", "fit", "make_optimizer",
    "plan_row", "read_jsonl", "train_row",
]
