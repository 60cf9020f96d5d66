"""Which table cell a run fills, and back: the notebooks that produce the paper's tables, the
Table 4/5 rows and their search settings, and :func:`target_of`, which turns a finished run's
sidecar into its table cell (the tables never depend on the plan that produced a run, only on
its recorded parameters).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optnb.experiments import beyond, beyond_nas, paper

NB_CIFAR = "06_train_cifar"
NB_IMAGENET = "07_train_imagenet"
NB_SEARCH = "08_nas_search"
NB_EVALUATE = "09_nas_evaluate"
NB_REPORT = "90_reproduce_tables"
TORCHRUN_NOTEBOOKS = (NB_CIFAR, NB_IMAGENET)  # rows `optnb reproduce --torchrun N` can launch

#: Table 4 rows produced by a search: row key -> (SPACE, INIT, ORDER). The paper does not say which
#: order the HB and AGD spaces used; their costs (0.3 / 0.4 GPU days) match DARTS's first order
#: (0.4), so first order it is (``ORDER`` is a notebook parameter if you want the other).
SEARCH_ROWS: Mapping[str, tuple[str, str, int]] = {
    "darts_1st": ("darts", "random", 1),
    "darts_2nd": ("darts", "random", 2),
    "hb": ("hb", "random", 1),
    "hb_init": ("hb", "hb", 1),
    "agd": ("agd", "random", 1),
}
#: Table 5 rows: row key -> where its genotype comes from (a Table 4 search row or a named cell).
TRANSFER_ROWS: Mapping[str, tuple[str, str]] = {
    "agd": ("search", "agd"),
    "darts_2nd": ("named", "DARTS_V2"),
}

# Parameter names of the notebooks (kept in sync with the notebooks; `validate` checks them).
P_MODEL, P_DATASET, P_AUGMENT = "MODEL", "DATASET", "AUGMENT"
P_SPACE, P_INIT, P_ORDER = "SPACE", "INIT", "ORDER"
P_GENOTYPE, P_SEARCH_RUN, P_TASK = "GENOTYPE", "SEARCH_RUN", "TASK"
P_MODEL_OPTIONS = "MODEL_OPTIONS"


#: the report's tables that are not the paper's (never compared with a published number)
BEYOND_TABLES: Mapping[str, paper.Table] = {beyond.TABLE.name: beyond.TABLE, beyond_nas.TABLE.name: beyond_nas.TABLE}


def table_names() -> tuple[str, ...]:
    """The tables of a report: the paper's tables with numbers, then ``beyond`` and ``beyond_nas``
    (not the paper's)."""
    return (*paper.table_names(), *BEYOND_TABLES)


def table(name: str) -> paper.Table:
    """A report table by name: ``paper.table(name)``, or the beyond-the-paper table."""
    key = str(name).strip().lower().replace(" ", "")
    if key in BEYOND_TABLES:
        return BEYOND_TABLES[key]
    if key in paper.TABLES or key == "table3":  # table3: paper.table says where its data is
        return paper.table(key)
    raise paper.UnknownTableError(
        f"unknown table {name!r}; valid tables: {', '.join(table_names())}")



@dataclass(frozen=True)
class Target:
    """The table cell a run fills: ``column`` None means every measured column of the row."""

    table: str
    row: str
    column: str | None = None
    role: str = "train"  # train | search | evaluate | transfer



def search_row(space: Any, init: Any, order: Any) -> str | None:
    """The Table 4 row of a search setting, or None when the paper has no such row."""
    for row, setting in SEARCH_ROWS.items():
        if setting == (space, init, _as_int(order)):
            return row
    return None


def _as_int(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def target_of(
    sidecar: Mapping[str, Any],
    lookup: Callable[[str], Mapping[str, Any] | None] | None = None,
) -> Target | None:
    """The table cell a run's sidecar fills, from its notebook and recorded parameters.

    ``lookup(run_id)`` returns another run's sidecar (used for evaluations that name the search
    run they took their genotype from). Runs that match no paper row return None.
    """
    notebook = Path(str(sidecar.get("notebook", ""))).stem
    params = sidecar.get("parameters") or {}
    if notebook == NB_CIFAR:
        return _cifar_target(params)
    if notebook == NB_IMAGENET:
        model = params.get(P_MODEL)
        keys = {r.key for r in paper.table("table2").reproducible_rows}
        return Target("table2", model) if model in keys else None
    if notebook == NB_SEARCH:
        return _search_target(params, "search")
    if notebook == NB_EVALUATE:
        return _evaluate_target(params, lookup)
    return None


def _cifar_target(params: Mapping[str, Any]) -> Target | None:
    """A Table 1 row (no ``MODEL_OPTIONS``) or a beyond-the-paper variant (model + options)."""
    model, options = params.get(P_MODEL), params.get(P_MODEL_OPTIONS) or {}
    requested = params.get(P_DATASET)
    real = requested if requested in ("cifar10", "cifar100") else "cifar10"
    column = real + ("+" if params.get(P_AUGMENT) else "")
    found = beyond.variant_of(model, options) if isinstance(options, Mapping) else None
    if found is not None:
        has_column = column in beyond.TABLE.column_keys("error")
        return Target(beyond.TABLE.name, found.key, column) if has_column else None
    if options or model not in {r.key for r in paper.table("table1").reproducible_rows}:
        return None  # a Table 1 model with other options is not the paper's row
    return Target("table1", model, column)


def _search_target(params: Mapping[str, Any], role: str) -> Target | None:
    """A search's (or its evaluation's) Table 4 row; with options beyond the paper, its
    ``beyond_nas`` row (None for a combination no row has)."""
    row = search_row(params.get(P_SPACE), params.get(P_INIT), params.get(P_ORDER))
    if row is None:
        return None
    if not beyond_nas.options_of(params):
        return Target("table4", row, None, role)
    found = beyond_nas.variant_of(row, params)
    return Target(beyond_nas.TABLE.name, found.key, None, role) if found else None


def _evaluate_target(params: Mapping[str, Any], lookup: Callable | None) -> Target | None:
    transfer = params.get(P_TASK) == "imagenet"
    table, role = ("table5", "transfer") if transfer else ("table4", "evaluate")
    row = None
    search_id = params.get(P_SEARCH_RUN) or ""
    genotype = params.get(P_GENOTYPE) or ""
    if search_id and lookup is not None:
        searched = _search_target((lookup(search_id) or {}).get("parameters") or {}, role)
        if searched is not None and searched.table == beyond_nas.TABLE.name:
            return None if transfer else searched  # the NAS variants are evaluated on CIFAR-10 only
        row = searched.row if searched is not None else None
    elif genotype in ("DARTS_V2", "DARTS"):
        row = "darts_2nd"
    elif genotype == "DARTS_V1":
        row = "darts_1st"
    if row is None:
        return None
    keys = {r.key for r in paper.table(table).reproducible_rows}
    return Target(table, row, None, role) if row in keys else None
