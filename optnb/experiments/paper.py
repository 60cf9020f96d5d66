"""The paper's published numbers as data: Tables 1, 2, 4 and 5, and the operations of Table 3.

Transcribed once from Yang, Shen, Li & Lin, *Optimization-Inspired Manual Architecture Design and
Neural Architecture Search* (section 8: Tables 1-2; section 9: Tables 3-5). Nothing else in the
package types these numbers again: ``optnb.experiments.tables`` and notebook 90 read them from here.

Conventions:

* errors are in percent, parameters in millions (``params_m``), FLOPs in G (``flops_g``, the
  paper's unit; they appear to be multiply-accumulates, see ``docs/performance.md``),
  search cost in GPU days;
* ``None`` is a dash in the paper (not reported);
* row keys of the rows this suite can produce are the names the plans use
  (``optnb.experiments.plans``): model registry names for Tables 1-2 (``hbnet56``), search settings
  for Tables 4-5 (``darts_1st``, ``hb``, ``hb_init``, ``agd``);
* column keys of Table 1 are ``<dataset>`` or ``<dataset>+`` ("+" = standard augmentation).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

ColumnKind = Literal["error", "params", "flops", "cost", "text"]

__all__ = [
    "Column",
    "Operation",
    "OPERATIONS",
    "Row",
    "Table",
    "TABLES",
    "UnknownTableError",
    "table",
    "table_names",
]


class UnknownTableError(KeyError):
    """An unknown table, row or column name (the message lists the valid choices)."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Column:
    """One column of a paper table: ``key`` (stable id), printed ``label``, unit and kind."""

    key: str
    label: str
    unit: str
    kind: ColumnKind


@dataclass(frozen=True)
class Row:
    """One row as printed: ``values[column key]`` is a float, a string (text columns) or None.

    ``reproducible`` rows are the ones ``optnb.experiments.plans`` can produce; the others are the
    paper's reference rows, shown for context only. ``ours`` marks the rows the paper proposes.
    """

    key: str
    label: str
    values: Mapping[str, float | str | None]
    reproducible: bool = False
    ours: bool = False
    note: str = ""


@dataclass(frozen=True)
class Table:
    """A paper table: columns, rows and the caption (abridged)."""

    name: str
    title: str
    caption: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = field(default=())

    def row(self, key: str) -> Row:
        for row in self.rows:
            if row.key == key:
                return row
        valid = ", ".join(r.key for r in self.rows)
        raise UnknownTableError(f"{self.name} has no row {key!r}; valid rows: {valid}")

    def column(self, key: str) -> Column:
        for col in self.columns:
            if col.key == key:
                return col
        valid = ", ".join(c.key for c in self.columns)
        raise UnknownTableError(f"{self.name} has no column {key!r}; valid columns: {valid}")

    def value(self, row: str, column: str) -> float | str | None:
        """The paper's value at (row, column); None where the paper prints a dash."""
        self.column(column)
        return self.row(row).values.get(column)

    @property
    def reproducible_rows(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.reproducible)

    def column_keys(self, kind: ColumnKind | None = None) -> tuple[str, ...]:
        return tuple(c.key for c in self.columns if kind is None or c.kind == kind)


def _rows(columns: tuple[Column, ...], spec: list[tuple]) -> tuple[Row, ...]:
    """Build rows from ``(key, label, values..., flags)`` tuples in column order."""
    keys = [c.key for c in columns]
    rows = []
    for key, label, values, *flags in spec:
        if len(values) != len(keys):
            raise ValueError(f"row {key!r}: {len(values)} values for {len(keys)} columns")
        options = flags[0] if flags else {}
        rows.append(Row(key, label, MappingProxyType(dict(zip(keys, values))), **options))
    return tuple(rows)


_MINE = {"reproducible": True}
def unpublished_table(name: str, title: str, caption: str, columns: tuple[Column, ...],
                      rows: Iterable[tuple[str, str]], notes: tuple[str, ...] = ()) -> Table:
    """A table of ours with no published number: ``rows`` are ``(key, label)``, each reproducible
    and with every value None (the beyond-the-paper tables)."""
    empty = MappingProxyType(dict.fromkeys(c.key for c in columns))
    return Table(name=name, title=title, caption=caption, columns=columns,
                 rows=tuple(Row(key, label, empty, reproducible=True) for key, label in rows), notes=notes)


_OURS = {"reproducible": True, "ours": True}

# --- Table 1: CIFAR error rates (%), section 8 ------------------------------------------------
_T1_COLUMNS = (
    Column("params_m", "Params", "M", "params"),
    Column("cifar10", "CIFAR-10", "%", "error"),
    Column("cifar100", "CIFAR-100", "%", "error"),
    Column("cifar10+", "CIFAR-10(+)", "%", "error"),
    Column("cifar100+", "CIFAR-100(+)", "%", "error"),
)
_T1 = Table(
    name="table1",
    title="Table 1: error rates (%) on CIFAR-10 and CIFAR-100",
    caption=(
        'Error rates (%) of classification on CIFAR-10 and CIFAR-100 with and without data '
        'augmentation. "+" means the standard data augmentation is enabled. "*": deep ResNet is '
        "not stable on CIFAR; the paper reports the converged result of several trials."
    ),
    columns=_T1_COLUMNS,
    rows=_rows(
        _T1_COLUMNS,
        [
            ("nin", "Network in Network [77]", (None, 10.41, 35.68, 8.81, None)),
            ("all_cnn", "All-CNN [78]", (None, 9.08, None, 7.25, 33.71)),
            ("dsn", "Deeply Supervised Net [79]", (None, 9.69, None, 7.97, 34.57)),
            ("highway", "Highway Network [8]", (None, None, None, 7.72, 32.39)),
            ("resnet56", "ResNet (n = 9)", (0.85, 10.05, 39.65, 5.32, 26.03), _MINE),
            ("hbnet56", "HBNet (n = 9)", (0.85, 10.17, 38.52, 5.46, 26.0), _OURS),
            (
                "resnet110",
                "ResNet (n = 18)*",
                (1.7, 9.17, 38.13, 5.06, 24.71),
                {**_MINE, "note": "converged result of several trials"},
            ),
            ("hbnet110", "HBNet (n = 18)", (1.7, 8.66, 36.4, 5.04, 23.93), _OURS),
            ("densenet40", "DenseNet (k = 12, L = 40)", (1.0, 7.0, 27.55, 5.24, 24.42), _MINE),
            ("agdnet40", "AGDNet (k = 12, L = 40)", (1.0, 6.44, 26.33, 5.2, 24.87), _OURS),
            (
                "densenet52",
                "DenseNet (k = 12, L = 52)",
                (1.4, 6.05, 26.3, 5.09, 24.33),
                {**_MINE, "note": "the standard L = 52 construction has about 1.79M parameters"},
            ),
            (
                "agdnet52",
                "AGDNet (k = 12, L = 52)",
                (1.4, 5.75, 24.92, 4.94, 23.84),
                {**_OURS, "note": "the standard L = 52 construction has about 1.79M parameters"},
            ),
        ],
    ),
)

# --- Table 2: ImageNet, section 8 -------------------------------------------------------------
_T2_COLUMNS = (
    Column("top1", "top-1", "%", "error"),
    Column("top5", "top-5", "%", "error"),
    Column("params_m", "Params", "M", "params"),
    Column("flops_g", "FLOPs", "G", "flops"),
)
_T2 = Table(
    name="table2",
    title="Table 2: error rates (%) on ImageNet",
    caption="Error rates (%) on ImageNet; baselines of the same depth.",
    columns=_T2_COLUMNS,
    rows=_rows(
        _T2_COLUMNS,
        [
            ("resnet34", "ResNet-34", (26.73, 8.74, 21.80, 3.66), _MINE),
            ("hbnet34", "HBNet-34", (26.33, 8.56, 21.80, 3.66), _OURS),
            ("resnet50", "ResNet-50", (24.24, 7.29, 25.56, 3.86), _MINE),
            ("hbnet50", "HBNet-50", (23.93, 7.06, 25.56, 3.87), _OURS),
            ("resnet101", "ResNet-101", (22.42, 6.46, 44.55, 7.58), _MINE),
            ("hbnet101", "HBNet-101", (21.91, 6.07, 44.55, 7.59), _OURS),
            ("densenet121", "DenseNet-121", (25.02, 7.71, 7.98, 2.88), _MINE),
            ("agdnet121", "AGDNet-121", (24.62, 7.39, 7.98, 2.92), _OURS),
        ],
    ),
    notes=("FLOPs as printed (G); they appear to count multiply-accumulates.",),
)

# --- Table 3: candidate operations, section 9.1 -----------------------------------------------


@dataclass(frozen=True)
class Operation:
    """A Table 3 candidate: the paper's index and label, and the op name in ``optnb.nas``."""

    index: int
    label: str
    name: str


OPERATIONS: tuple[Operation, ...] = (
    Operation(1, "3x3 separable conv", "sep_conv_3x3"),
    Operation(2, "5x5 separable conv", "sep_conv_5x5"),
    Operation(3, "3x3 dilated conv", "dil_conv_3x3"),
    Operation(4, "5x5 dilated conv", "dil_conv_5x5"),
    Operation(5, "3x3 max pooling", "max_pool_3x3"),
    Operation(6, "3x3 average pooling", "avg_pool_3x3"),
    Operation(7, "Identity", "skip_connect"),
    Operation(8, "Negative identity", "neg_skip_connect"),
    Operation(9, "Zero", "none"),
)

# --- Table 4: NAS on CIFAR-10, section 9.3 ----------------------------------------------------
_T4_COLUMNS = (
    Column("test_error", "Test Error", "%", "error"),
    Column("params_m", "Params", "M", "params"),
    Column("search_cost_gpu_days", "Search Cost", "GPU days", "cost"),
    Column("search_method", "Search Method", "", "text"),
)
_T4 = Table(
    name="table4",
    title="Table 4: NAS on CIFAR-10",
    caption=(
        "CIFAR-10 results with the optimization-inspired initialization or search space and "
        "NAS baselines. The mark \u2020 denotes HBNet as initialization."
    ),
    columns=_T4_COLUMNS,
    rows=_rows(
        _T4_COLUMNS,
        [
            ("densenet_bc", "DenseNet-BC [10]", (3.46, 25.6, None, "manual")),
            ("amoebanet_b", "AmoebaNet-B + cutout [23]", (2.55, 2.8, 3150.0, "evolution")),
            ("enas", "ENAS + cutout [16]", (2.89, 4.6, 0.5, "RL")),
            ("nasnet_a", "NASNet-A + cutout [19]", (2.65, 3.3, 1800.0, "RL")),
            ("hierarchical_evo", "Hierarchical Evolution [22]", (3.75, 15.7, 300.0, "evolution")),
            ("nasnet_ws", "NASNet-WS [28]", (3.53, 3.1, 0.4, "NAO")),
            (
                "darts_1st",
                "DARTS (1st order) + cutout [29]",
                (3.00, 3.3, 0.4, "gradient-based"),
                _MINE,
            ),
            (
                "darts_2nd",
                "DARTS (2nd order) + cutout [29]",
                (2.76, 3.3, 1.0, "gradient-based"),
                _MINE,
            ),
            ("snas", "SNAS (moderate) + cutout [30]", (2.85, 2.8, 1.5, "gradient-based")),
            ("pc_darts", "PC-DARTS + cutout [32]", (2.57, 3.6, 0.1, "gradient-based")),
            ("p_darts", "P-DARTS + cutout [31]", (2.50, 3.4, 0.3, "gradient-based")),
            ("cnas", "CNAS + cutout [59]", (2.60, 3.7, 0.3, "gradient-based")),
            ("hb", "Search space-HB + cutout", (2.82, 2.92, 0.3, "gradient-based"), _OURS),
            (
                "hb_init",
                "Search space-HB \u2020 + cutout",
                (2.68, 3.35, 0.3, "gradient-based"),
                _OURS,
            ),
            ("agd", "Search space-AGD + cutout", (2.56, 3.3, 0.4, "gradient-based"), _OURS),
        ],
    ),
)

# --- Table 5: transfer to ImageNet, section 9.3 -----------------------------------------------
_T5_COLUMNS = (
    Column("top1", "Top-1 Error", "%", "error"),
    Column("top5", "Top-5 Error", "%", "error"),
    Column("params_m", "Params", "M", "params"),
    Column("search_method", "Search Method", "", "text"),
)
_T5 = Table(
    name="table5",
    title="Table 5: CIFAR-10 cells transferred to ImageNet",
    caption=(
        "ImageNet (mobile setting) with the architecture searched by Search space-AGD on "
        "CIFAR-10, and NAS baselines."
    ),
    columns=_T5_COLUMNS,
    rows=_rows(
        _T5_COLUMNS,
        [
            ("mobilenet", "MobileNet [82]", (29.4, 10.5, 4.2, "manual")),
            ("inception_v1", "Inception-v1 [5]", (30.2, 10.1, 6.6, "manual")),
            (
                "shufflenet_2x",
                "ShuffleNet 2\u00d7 [83]",
                (25.1, None, 5.0, "manual"),
                {"note": "params printed as ~5"},
            ),
            ("amoebanet_c", "AmoebaNet-C [23]", (24.3, 7.6, 6.4, "evolution")),
            ("mnasnet_92", "MnasNet-92 [84]", (25.2, 8.0, 5.5, "RL")),
            ("nasnet_a", "NASNet-A [19]", (26.0, 8.4, 5.3, "RL")),
            (
                "darts_2nd",
                "DARTS (2nd order) [29]",
                (26.7, 8.7, 4.7, "gradient-based"),
                _MINE,
            ),
            ("snas", "SNAS [30]", (27.3, 9.2, 4.3, "gradient-based")),
            ("bayesnas", "BayesNAS [85]", (26.5, 8.9, 3.9, "gradient-based")),
            (
                "agd",
                "Ours (Search space-AGD on CIFAR-10)",
                (25.2, 7.6, 4.83, "gradient-based"),
                _OURS,
            ),
        ],
    ),
)

TABLES: Mapping[str, Table] = MappingProxyType({t.name: t for t in (_T1, _T2, _T4, _T5)})


def table_names() -> tuple[str, ...]:
    """The tables with numbers: ``table1``, ``table2``, ``table4``, ``table5``."""
    return tuple(TABLES)


def table(name: str) -> Table:
    """The paper table ``name`` (``table1`` ... ``table5``; ``table3`` is :data:`OPERATIONS`)."""
    key = str(name).strip().lower().replace(" ", "")
    if key in TABLES:
        return TABLES[key]
    if key == "table3":
        raise UnknownTableError(
            "table3 lists operations, not numbers: use optnb.experiments.paper.OPERATIONS; "
            f"tables with numbers: {', '.join(TABLES)}"
        )
    raise UnknownTableError(f"unknown table {name!r}; valid tables: {', '.join(TABLES)}")
