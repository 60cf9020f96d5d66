"""Training curves of finished runs, for notebook 90: the runs' JSONL logs as one long table.

Every training (a Table 1/2 row, a NAS search, a NAS evaluation) goes through ``optnb.train.fit``
and logs to ``<run>/metrics.jsonl``: ``step`` records with the loss, ``epoch`` records with the
train loss and the held-out metrics. :func:`load` returns a pandas DataFrame with one row per
(run, x, metric), ``x`` being the (possibly fractional) epoch. Plotting uses seaborn.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import seaborn as sns

from optnb.paths import run_dir
from optnb.train.callbacks import LOG_NAME, read_jsonl

#: bookkeeping keys that are numbers but not curves
SKIP = {"epoch", "step", "lr", "epoch_s", "wall_s", "images_per_s", "test_samples", "val_samples",
        "drop_path_prob"}


def _points(records: Iterable[dict[str, Any]]) -> Iterable[tuple[float, str, float]]:
    for rec in records:
        if rec.get("kind") not in (None, "step", "epoch") or "epoch" not in rec:
            continue
        x = float(rec["epoch"])
        for key, value in rec.items():
            if key in SKIP or key == "kind" or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)) and math.isfinite(value):
                name = "step_loss" if rec.get("kind") == "step" and key == "loss" else key
                yield x, name, float(value)


def load(results_dir: str | Path, measurements: Sequence[Any]) -> Any:
    """A DataFrame (run_id, table, row, profile, dataset, seed, epoch, metric, value) for the
    runs behind ``measurements`` (``optnb.experiments.tables.Measurement``)."""
    rows = []
    seen = set()
    for m in measurements:
        if m.run_id in seen:
            continue
        seen.add(m.run_id)
        path = run_dir(m.run_id, results_dir, create=False) / LOG_NAME
        for x, metric, value in _points(read_jsonl(path)):
            rows.append({"run_id": m.run_id, "table": m.target.table, "row": m.target.row,
                         "profile": m.profile, "dataset": m.dataset, "seed": m.seed,
                         "epoch": x, "metric": metric, "value": value})
    columns = ["run_id", "table", "row", "profile", "dataset", "seed", "epoch", "metric", "value"]
    return pd.DataFrame(rows, columns=columns)


def plot(frame: Any, metrics: Sequence[str] = ("step_loss", "train_loss", "test_error"),
         title: str = "") -> Any:
    """seaborn line plots, one panel per metric, one line per row (mean and band over seeds)."""
    data = frame[frame["metric"].isin(metrics)]
    if data.empty:
        return None
    grid = sns.relplot(data=data, x="epoch", y="value", hue="row", style="profile",
                       col="metric", kind="line", facet_kws={"sharey": False}, height=3,
                       aspect=1.3, errorbar="sd")
    if title:
        grid.figure.suptitle(title, y=1.03)
    return grid
