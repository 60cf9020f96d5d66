"""Training curves of finished runs, for notebook 90: the runs' JSONL logs as one long table.

Reads ``metrics.jsonl`` (``optnb.train``: ``step`` records with the loss, ``epoch`` records with
train loss and test error), ``search.jsonl`` (``optnb.nas.search``) and ``eval.jsonl``
(``optnb.nas.evaluate``), one record per epoch, from each run folder, and returns a pandas
DataFrame with one row per (run, x, metric), ``x`` being the (possibly fractional) epoch.
Plotting uses seaborn.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

LOGS = ("metrics.jsonl", "search.jsonl", "eval.jsonl")
#: bookkeeping keys that are numbers but not curves
SKIP = {"epoch", "step", "steps", "lr", "epoch_s", "wall_s", "train_time_s", "images_per_s",
        "start_epoch", "epochs_planned", "params", "world_size", "batch_size", "resolution",
        "test_samples", "seed", "param_free_ops", "drop_path_prob"}


def read_log(path: Path) -> list[dict[str, Any]]:
    """The JSON records of a log file; a torn last line (a crash mid-write) is skipped."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


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
    import pandas as pd

    rows = []
    seen = set()
    for m in measurements:
        if m.run_id in seen:
            continue
        seen.add(m.run_id)
        for name in LOGS:
            path = Path(results_dir) / "runs" / m.run_id / name
            if not path.is_file():
                continue
            for x, metric, value in _points(read_log(path)):
                rows.append({"run_id": m.run_id, "table": m.target.table, "row": m.target.row,
                             "profile": m.profile, "dataset": m.dataset, "seed": m.seed,
                             "epoch": x, "metric": metric, "value": value})
    columns = ["run_id", "table", "row", "profile", "dataset", "seed", "epoch", "metric", "value"]
    return pd.DataFrame(rows, columns=columns)


def plot(frame: Any, metrics: Sequence[str] = ("step_loss", "train_loss", "test_error"),
         title: str = "") -> Any:
    """seaborn line plots, one panel per metric, one line per row (mean and band over seeds)."""
    import seaborn as sns

    data = frame[frame["metric"].isin(metrics)]
    if data.empty:
        return None
    grid = sns.relplot(data=data, x="epoch", y="value", hue="row", style="profile",
                       col="metric", kind="line", facet_kws={"sharey": False}, height=3,
                       aspect=1.3, errorbar="sd")
    if title:
        grid.figure.suptitle(title, y=1.03)
    return grid
