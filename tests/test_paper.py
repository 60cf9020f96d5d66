"""The paper's tables as data: they load, hold the printed numbers, and match what plans produce."""

from __future__ import annotations

import pytest

from optnb.experiments import paper, plans, targets


def test_tables_load_with_expected_shapes():
    assert paper.table_names() == ("table1", "table2", "table4", "table5")
    shapes = {name: (len(t.rows), len(t.columns)) for name, t in paper.TABLES.items()}
    assert shapes == {"table1": (12, 5), "table2": (8, 4), "table4": (15, 4), "table5": (10, 4)}
    for t in paper.TABLES.values():
        for row in t.rows:
            assert set(row.values) == set(t.column_keys()), (t.name, row.key)
        assert len({r.key for r in t.rows}) == len(t.rows), f"duplicate row keys in {t.name}"


@pytest.mark.parametrize(
    ("table", "row", "column", "value"),
    [
        ("table1", "resnet56", "cifar10", 10.05),
        ("table1", "hbnet110", "cifar100", 36.4),
        ("table1", "agdnet40", "cifar100+", 24.87),
        ("table1", "densenet52", "params_m", 1.4),
        ("table1", "nin", "cifar100+", None),
        ("table2", "hbnet101", "top1", 21.91),
        ("table2", "agdnet121", "flops_g", 2.92),
        ("table2", "resnet50", "params_m", 25.56),
        ("table4", "hb_init", "test_error", 2.68),
        ("table4", "hb", "params_m", 2.92),
        ("table4", "agd", "search_cost_gpu_days", 0.4),
        ("table4", "densenet_bc", "search_cost_gpu_days", None),
        ("table4", "darts_2nd", "search_method", "gradient-based"),
        ("table5", "agd", "params_m", 4.83),
        ("table5", "shufflenet_2x", "top5", None),
        ("table5", "darts_2nd", "top1", 26.7),
    ],
)
def test_spot_values_match_the_paper(table, row, column, value):
    assert paper.table(table).value(row, column) == value


def test_hb_and_agd_share_their_baselines_parameter_counts():
    """Tables 1-2 print identical params for each baseline and its variant (hard constraint)."""
    pairs = [("table1", "resnet56", "hbnet56"), ("table1", "resnet110", "hbnet110"),
             ("table1", "densenet40", "agdnet40"), ("table1", "densenet52", "agdnet52"),
             ("table2", "resnet34", "hbnet34"), ("table2", "resnet50", "hbnet50"),
             ("table2", "resnet101", "hbnet101"), ("table2", "densenet121", "agdnet121")]
    for table, base, ours in pairs:
        t = paper.table(table)
        assert t.value(base, "params_m") == t.value(ours, "params_m")
        assert t.row(ours).ours and not t.row(base).ours


def test_errors_are_percentages_in_range():
    for t in paper.TABLES.values():
        for key in t.column_keys("error"):
            for row in t.rows:
                v = row.values[key]
                assert v is None or 0 < v < 100, (t.name, row.key, key, v)


def test_reproducible_rows_are_exactly_what_plans_can_produce():
    assert [r.key for r in paper.table("table1").reproducible_rows] == [
        "resnet56", "hbnet56", "resnet110", "hbnet110",
        "densenet40", "agdnet40", "densenet52", "agdnet52"]
    assert len(paper.table("table2").reproducible_rows) == 8
    assert {r.key for r in paper.table("table4").reproducible_rows} == set(targets.SEARCH_ROWS)
    assert {r.key for r in paper.table("table5").reproducible_rows} == set(targets.TRANSFER_ROWS)
    for table, rows in plans.SMOKE_ROWS.items():
        keys = {r.key for r in paper.table(table).reproducible_rows}
        assert set(rows) <= keys, table


def test_operations_of_table3_are_the_nas_registry():
    assert [op.index for op in paper.OPERATIONS] == list(range(1, 10))
    operations = pytest.importorskip("optnb.nas.operations")
    assert sorted(op.name for op in paper.OPERATIONS) == sorted(operations.PRIMITIVES)


def test_unknown_names_raise_keyerrors_listing_the_choices():
    with pytest.raises(KeyError, match="valid tables: table1, table2, table4, table5"):
        paper.table("table9")
    with pytest.raises(KeyError, match="OPERATIONS"):
        paper.table("table3")
    with pytest.raises(KeyError, match="valid rows: .*hbnet56"):
        paper.table("table1").row("hbnet57")
    with pytest.raises(KeyError, match="valid columns: params_m, cifar10"):
        paper.table("table1").value("hbnet56", "cifar10-")
    assert paper.table(" Table1 ").name == "table1"


def test_tables_are_read_only():
    row = paper.table("table1").row("hbnet56")
    with pytest.raises(TypeError):
        row.values["cifar10"] = 0.0  # type: ignore[index]
