"""Tables 1-5 beside the paper: run sidecars joined with ``optnb.experiments.paper``.

For every reproducible row and measured column: the paper's value, our mean and spread over
seeds, the difference, and the provenance of the runs (profile, dataset real or embedded, device,
epochs run, date). Runs are grouped by (row, column, profile, dataset), so a smoke run on the
embedded data never shares a line, a mean or a verdict with a paper-profile run on CIFAR.

Honesty rule: only groups made with the ``paper`` profile on the real dataset of that column are
*eligible*; only eligible groups get a verdict ("consistent" / "differs"). Everything else is
labelled (``SMOKE``, ``EMBEDDED DATA``, ``REDUCED (quick)``) and excluded from any reproduced
claim. Model sizes and FLOPs need no training and come from the model code on every profile
(``size_rows``).

Rendering (Markdown, HTML, CSV) is in ``optnb.experiments.render``, which reads these lines.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optnb.experiments import sizes
from optnb.experiments.results import device_label, read_sidecars
from optnb.experiments.targets import BEYOND_TABLES, Target, table_names, target_of
from optnb.experiments.targets import table as report_table

#: Where each table column's number comes from in a run's recorded results (first key found).
#: ``test_error``/``top1_error``/``top5_error`` are percentages; ``params`` is a count (or M).
RESULT_KEYS: Mapping[str, tuple[str, ...]] = {
    "error": ("test_error",),
    "top1": ("top1_error", "test_error", "top1"),
    "top5": ("top5_error", "top5"),
    "test_error": ("test_error",),
    "params_m": ("params_m", "params"),
    "search_cost_gpu_days": ("search_cost_gpu_days",),
}
#: An eligible group is "consistent" with the paper when |ours - paper| <= max(2 sd, ABS_TOL).
#: The paper reports single numbers without spread; 0.5 percentage points is our choice.
#: Search costs (GPU days) depend on the GPU and are never judged.
ABS_TOL: Mapping[str, float] = {"error": 0.5, "params": 0.01, "flops": 0.02}
COLUMNS = (
    "table", "row", "label", "column", "paper", "mean", "sd", "n", "diff", "status", "verdict",
    "profile", "dataset", "device", "epochs", "seeds", "date", "runs",
)
STATUS_ELIGIBLE = "paper profile, real data"
#: the profile and status of a dress rehearsal's runs (``optnb reproduce --rehearse``): a few steps
#: on generated data, listed as such and never put beside the paper's numbers
REHEARSAL = "rehearsal"
STATUS_REHEARSAL = "REHEARSAL (a few steps on generated data, not a result)"


@dataclass(frozen=True)
class Measurement:
    """One finished run's numbers for one table cell, with its provenance."""

    run_id: str
    target: Target
    values: Mapping[str, float]
    profile: str
    dataset: str
    dataset_real: bool
    device: str
    seed: int | None
    epochs: Any = None
    date: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Line:
    """One line of a comparison table: a (row, column) cell for one provenance group."""

    table: str
    row: str
    label: str
    column: str
    paper: float | str | None
    mean: float | None
    sd: float | None
    n: int
    status: str
    verdict: str
    profile: str = ""
    dataset: str = ""
    device: str = ""
    epochs: str = ""
    seeds: str = ""
    date: str = ""
    runs: str = ""

    @property
    def diff(self) -> float | None:
        if self.mean is None or not isinstance(self.paper, (int, float)):
            return None
        return self.mean - float(self.paper)

    @property
    def eligible(self) -> bool:
        return self.status == STATUS_ELIGIBLE

    def as_dict(self) -> dict[str, Any]:
        return {c: (self.diff if c == "diff" else getattr(self, c)) for c in COLUMNS}


# ----------------------------------------------------------------------------------------------
# Reading runs


def _result(results: Mapping[str, Any], keys: Sequence[str]) -> tuple[str, Any] | None:
    for key in keys:
        entry = results.get(key)
        if entry is None:
            continue
        value = entry.get("value") if isinstance(entry, Mapping) else entry
        if value is not None:
            return key, value
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _values(target: Target, results: Mapping[str, Any]) -> dict[str, float]:
    """Map a run's recorded results onto the columns of its paper table."""
    out: dict[str, float] = {}
    table = report_table(target.table)

    def put(column: str, keys: Sequence[str]) -> None:
        found = _result(results, keys)
        value = _number(found[1]) if found else None
        if value is None:
            return
        if column == "params_m" and found[0] == "params" and value > 1000:
            value /= 1e6  # a raw count
        out[column] = value

    if target.table in ("table1", "beyond"):
        put(target.column or "cifar10", RESULT_KEYS["error"])
        put("params_m", RESULT_KEYS["params_m"])
    elif target.role == "search":
        put("search_cost_gpu_days", RESULT_KEYS["search_cost_gpu_days"])
    else:
        for column in table.column_keys():
            if column in RESULT_KEYS:
                put(column, RESULT_KEYS[column])
    return out


def measurements(sidecars: Mapping[str, Mapping[str, Any]]) -> list[Measurement]:
    """The complete runs that fill a paper cell, as :class:`Measurement` (sorted by run id)."""
    found = []
    for run_id, sc in sorted(sidecars.items()):
        if sc.get("status") != "complete":
            continue
        target = target_of(sc, sidecars.get)
        if target is None:
            continue
        results = sc.get("results") or {}
        epochs = _result(results, ("epochs", "epochs_run", "search_epochs"))
        genotype = _result(results, ("genotype",))
        params = sc.get("parameters") or {}
        device = device_label(sc)
        world = _result(results, ("world_size",))
        if world and isinstance(world[1], int) and world[1] > 1:
            device = f"{device} x{world[1]} (torchrun)"
        found.append(
            Measurement(
                run_id=run_id,
                target=target,
                values=_values(target, results),
                # a dress rehearsal (rehearsal_overlay) is a profile of its own: never a result
                profile=REHEARSAL if sc.get("rehearsal") else str(sc.get("profile", "")),
                dataset=str(sc.get("dataset", "")),
                dataset_real=bool(sc.get("dataset_real", False)),
                device=device,
                seed=params.get("SEED"),
                epochs=epochs[1] if epochs else None,
                date=str(sc.get("finished") or sc.get("started") or "")[:10],
                extra={"genotype": genotype[1]} if genotype else {},
            )
        )
    return found


# ----------------------------------------------------------------------------------------------
# Grouping and statistics


def paper_dataset(table: str, column: str) -> str:
    """The dataset a paper cell was measured on (Table 1 by column, Tables 2/5 ImageNet)."""
    if table in ("table1", "beyond"):
        return column.rstrip("+")
    return "imagenet" if table in ("table2", "table5") else "cifar10"


def status_of(profile: str, dataset: str, dataset_real: bool, table: str, column: str) -> str:
    """How a group may be read: only ``STATUS_ELIGIBLE`` may be compared as a reproduction."""
    if profile == REHEARSAL:
        return STATUS_REHEARSAL
    if not dataset_real:  # embedded digits or synthetic gratings, not the paper's data
        data = f"{(dataset or 'unknown').upper()} DATA"
        return f"SMOKE, {data}" if profile == "smoke" else data
    if profile == "smoke":
        return "SMOKE"
    if profile != "paper":
        return f"REDUCED ({profile})"
    if dataset != paper_dataset(table, column):
        return f"WRONG DATASET ({dataset})"
    return STATUS_ELIGIBLE


def mean_sd(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof = 1; None for fewer than two values)."""
    if not values:
        return None, None
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else None
    return mean, sd


def verdict(line_paper: Any, mean: float | None, sd: float | None, kind: str, status: str) -> str:
    """``consistent`` / ``differs`` for eligible groups, ``not a reproduction`` otherwise."""
    if status != STATUS_ELIGIBLE:
        return "not a reproduction"
    if mean is None or not isinstance(line_paper, (int, float)):
        return ""
    if kind == "cost":  # GPU days depend on the GPU: shown, never judged
        return "not judged (hardware)"
    tol = max(2 * sd if sd is not None else 0.0, ABS_TOL.get(kind, 0.0))
    return "consistent" if abs(mean - float(line_paper)) <= tol else "differs"


def _join(values: Iterable[Any]) -> str:
    return ", ".join(sorted({str(v) for v in values if v not in (None, "")}))


def lines(table_name: str, found: Sequence[Measurement], include_missing: bool = True) -> list[Line]:
    """The comparison lines of one table, in the paper's row and column order."""
    table = report_table(table_name)
    measured = [c for c in table.columns if c.kind in ("error", "cost")]
    groups: dict[tuple[str, str, str, str], list[tuple[Measurement, float]]] = {}
    for m in found:
        if m.target.table != table_name:
            continue
        for column, value in m.values.items():
            if column in {c.key for c in measured}:
                groups.setdefault((m.target.row, column, m.profile, m.dataset), []).append((m, value))
    out: list[Line] = []
    for row in table.reproducible_rows:
        for col in measured:
            keys = sorted(k for k in groups if k[0] == row.key and k[1] == col.key)
            if not keys and include_missing:
                out.append(Line(table_name, row.key, row.label, col.key, row.values.get(col.key),
                                None, None, 0, "not run", ""))
            for key in keys:
                members = groups[key]
                ms = [m for m, _ in members]
                mean, sd = mean_sd([v for _, v in members])
                status = status_of(key[2], key[3], ms[0].dataset_real, table_name, col.key)
                out.append(Line(
                    table=table_name, row=row.key, label=row.label, column=col.key,
                    paper=None if status == STATUS_REHEARSAL else row.values.get(col.key),
                    mean=mean, sd=sd, n=len(members),
                    status=status,
                    verdict=verdict(row.values.get(col.key), mean, sd, col.kind, status),
                    profile=key[2], dataset=key[3], device=_join(m.device for m in ms),
                    epochs=_join(m.epochs for m in ms), seeds=_join(m.seed for m in ms),
                    date=max(m.date for m in ms), runs=_join(m.run_id for m in ms),
                ))
    return out


# ----------------------------------------------------------------------------------------------
# Model sizes (no training needed)

#: ``size_fn(table, row, genotype) -> {"params_m": float, "flops_g": float}`` or raises
#: ``LookupError`` where the code is missing; default ``optnb.experiments.sizes.full_size``
SizeFn = Callable[[str, str, Any], Mapping[str, float]]


def size_rows(table_name: str, found: Sequence[Measurement] = (),
              size_fn: SizeFn | None = None) -> list[dict[str, Any]]:
    """Params (M) and FLOPs (G) of every reproducible row, paper vs the model code, any profile."""
    size_fn = size_fn or sizes.full_size
    table = report_table(table_name)
    out = []
    searched: dict[str, Measurement] = {}
    cells_from = "table4" if table_name in ("table4", "table5") else table_name
    for m in sorted(found, key=lambda m: (m.seed is None, m.seed or 0, m.run_id)):
        # tables 4-5 (and beyond_nas): the genotype of the lowest-seed search of each row
        if m.target.table == cells_from and m.target.role == "search" and "genotype" in m.extra:
            searched.setdefault(m.target.row, m)
    for row in table.reproducible_rows:
        source = searched.get(row.key)
        genotype = source.extra["genotype"] if source else None
        entry: dict[str, Any] = {"table": table_name, "row": row.key, "label": row.label}
        try:
            ours = dict(size_fn(table_name, row.key, genotype))
            note = ours.pop("note", "")
        except (LookupError, ImportError, ValueError) as err:
            ours, note = {}, f"not computed: {err}"
        if source is not None and ours:
            note = (f"cell of search {source.run_id} ({source.profile} profile"
                    f"{', embedded data' if not source.dataset_real else ''})")
        for col in ("params_m", "flops_g"):
            if col not in table.column_keys() and col not in ours:
                continue
            p = row.values.get(col)
            o = ours.get(col)
            entry[f"paper_{col}"] = p
            entry[f"ours_{col}"] = o
            entry[f"diff_{col}"] = (o - p) if isinstance(o, float) and isinstance(p, float) else None
        entry["note"] = note
        out.append(entry)
    return out


@dataclass
class Report:
    """Every table's comparison lines and model sizes, built from one results folder."""

    lines: dict[str, list[Line]]
    sizes: dict[str, list[dict[str, Any]]]
    sidecars: Mapping[str, Mapping[str, Any]]
    measurements: list[Measurement] = field(default_factory=list)

    @property
    def all_lines(self) -> list[Line]:
        return [x for t in self.lines.values() for x in t]

    def counts(self) -> dict[str, int]:
        """Measured cells of the paper's tables (the beyond-the-paper tables are not counted: their
        cells are never compared with a published number)."""
        measured = [x for x in self.all_lines if x.n and x.table not in BEYOND_TABLES]
        return {
            "measured": len(measured),
            "eligible": sum(x.eligible for x in measured),
            "consistent": sum(x.verdict == "consistent" for x in measured),
            "not_reproduction": sum(not x.eligible for x in measured),
        }


def parse_tables(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"all"``/None/"" -> every table with numbers and ``beyond``; ``"table1, table4"`` -> those
    (validated)."""
    if spec is None:
        return table_names()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [s.strip().lower() for s in items if s.strip()]
    if not names or names == ["all"]:
        return table_names()
    for name in names:
        report_table(name)  # raises UnknownTableError listing the valid tables
    return tuple(n for n in table_names() if n in names)


def build(results_dir: str | Path | None = None, tables: str | Sequence[str] | None = None,
          run_ids: Iterable[str] | None = None, size_fn: SizeFn | None = None,
          sidecars: Mapping[str, Mapping[str, Any]] | None = None,
          profiles: Sequence[str] | None = None) -> Report:
    """Read the sidecars (or use ``sidecars``) and build every table's lines and sizes.

    ``run_ids`` restricts the measurements to those runs (e.g. one plan's) and ``profiles`` to
    runs of those profiles; search runs named by an evaluation stay visible for the lookup.
    """
    all_sc = dict(sidecars) if sidecars is not None else read_sidecars(results_dir)
    found = measurements(all_sc)
    if run_ids is not None:
        keep = set(run_ids)
        found = [m for m in found if m.run_id in keep]
    if profiles:
        found = [m for m in found if m.profile in profiles]
    names = parse_tables(tables)
    return Report(
        lines={n: lines(n, found) for n in names},
        sizes={n: size_rows(n, found, size_fn) for n in names},
        sidecars=all_sc,
        measurements=found,
    )
