"""The beyond-the-paper table: variants (MODEL + MODEL_OPTIONS of notebook 06) map to their rows,
plans produce them for quick and paper with their baselines, and the report shows each beside its
baseline under the same profile and data, never beside a paper number."""

from __future__ import annotations

import pytest

from optnb.experiments import beyond, plans, render, tables
from optnb.experiments.targets import Target, table, table_names, target_of


def sidecar(run_id, model, err, seed, options=None, profile="paper", dataset="cifar10",
            augment=True, real=True):
    params = {"MODEL": model, "DATASET": dataset, "AUGMENT": augment, "SEED": seed,
              "PROFILE": profile}
    if options is not None:
        params["MODEL_OPTIONS"] = options
    return {"notebook": "06_train_cifar", "run_id": run_id, "status": "complete",
            "parameters": params, "profile": profile, "dataset": dataset, "dataset_real": real,
            "device": "cpu", "versions": {}, "finished": "2026-12-03T10:00:00+00:00",
            "results": {"test_error": {"value": err}, "epochs": {"value": 300}}}


def no_sizes(table, row, genotype):
    raise LookupError("models not built in this test")


@pytest.mark.parametrize("variant", beyond.VARIANTS, ids=lambda v: v.key)
def test_each_variant_fills_its_row_on_the_augmented_columns(variant):
    for dataset in ("cifar10", "cifar100"):
        sc = sidecar("r", variant.model, 5.0, 0, dict(variant.options), dataset=dataset)
        assert target_of(sc) == Target("beyond", variant.key, f"{dataset}+")
    plain = sidecar("r", variant.model, 5.0, 0, dict(variant.options), augment=False)
    assert target_of(plain) is None  # the table has only the "+" columns
    assert variant.baseline in {r.key for r in table("table1").reproducible_rows}


def test_a_table1_model_with_other_options_is_not_the_papers_row():
    assert target_of(sidecar("r", "hbnet56", 5.0, 0, {})) == Target("table1", "hbnet56", "cifar10+")
    assert target_of(sidecar("r", "hbnet56", 5.0, 0, {"beta": 0.3})) is None
    assert target_of(sidecar("r", "hbnet56", 5.0, 0, {"momentum": "inside"})) is None


def test_report_tables_include_beyond_and_name_it_in_errors():
    assert table_names()[-2:] == ("beyond", "beyond_nas") and table("beyond") is beyond.TABLE
    assert tables.parse_tables("beyond, table1") == ("table1", "beyond")
    with pytest.raises(KeyError, match="valid tables: table1, table2, table4, table5, beyond, beyond_nas"):
        table("table9")
    with pytest.raises(KeyError, match="table3 lists operations"):
        table("table3")
    assert all(v is None for r in beyond.TABLE.rows for v in r.values.values())  # no paper numbers


@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_plans_run_every_variant_and_its_baseline_on_both_columns(profile):
    plan = plans.build(profile, only="beyond", seeds=3, available=lambda name: True)
    variants = [r for r in plan.runs if r.target.table == "beyond"]
    baselines = [r for r in plan.runs if r.target.table == "table1"]
    assert len(variants) == len(beyond.VARIANTS) * 2 * 3
    table1_rows = {v.baseline for v in beyond.VARIANTS} | {r for v in beyond.VARIANTS for r in v.also}
    assert table1_rows == {"resnet56", "hbnet56", "agdnet40", "densenet40"}
    assert len(baselines) == len(table1_rows) * 2 * 3
    for run in plan.runs:  # the plan's target is what the run's sidecar maps back to
        sc = sidecar(run.run_id, run.parameters["MODEL"], 1.0, run.parameters["SEED"],
                     run.parameters.get("MODEL_OPTIONS"), dataset=run.parameters["DATASET"])
        assert target_of(sc) == run.target
    assert {r.parameters["DATASET"] for r in plan.runs} == {"cifar10", "cifar100"}


def test_without_cifar_the_plan_runs_one_embedded_column_and_says_so():
    plan = plans.build("quick", only="beyond", seeds=1, available=lambda name: False)
    assert {r.parameters["DATASET"] for r in plan.runs} == {"embedded"}
    assert {r.target.column for r in plan.runs} == {"cifar10+"}
    for run in plan.runs:  # still the cell its sidecar maps back to
        sc = sidecar(run.run_id, run.parameters["MODEL"], 1.0, 0,
                     run.parameters.get("MODEL_OPTIONS"), dataset="embedded", real=False)
        assert target_of(sc) == run.target
    assert any("NOT present" in n for n in plan.notes)


def test_smoke_plans_no_beyond_rows_and_says_where_they_are():
    plan = plans.build("smoke", only="beyond", available=lambda name: False)
    assert plan.runs == [] and any("notebook 10" in n for n in plan.notes)
    notebooks = plans.build("smoke", only="notebooks", available=lambda name: False)
    assert "10_beyond_the_paper_design" in {r.notebook for r in notebooks.runs}


def test_report_shows_variants_beside_the_baseline_of_the_same_group():
    scs = {
        "v0": sidecar("v0", "admmnet56", 6.0, 0, {}),
        "v1": sidecar("v1", "admmnet56", 7.0, 1, {}),
        "b0": sidecar("b0", "resnet56", 6.0, 0),
        "b1": sidecar("b1", "resnet56", 6.2, 1),
        "q0": sidecar("q0", "hbnet56", 9.0, 0, {"momentum": "outside"}, profile="quick"),
        "b9": sidecar("b9", "hbnet56", 8.0, 0),  # paper profile: not the quick run's group
    }
    report = tables.build(sidecars=scs, tables=["table1", "beyond"], size_fn=no_sizes)
    text = render.beyond_markdown(report.lines["beyond"], report.lines["table1"])
    admm = next(x for x in text.splitlines() if x.startswith("| ADMMNet"))
    assert "6.50 \u00b1 0.71" in admm and "| 2 | resnet56 | 6.10 \u00b1 0.14 | +0.40 |" in admm
    outside = next(x for x in text.splitlines() if "outside" in x)
    assert "| hbnet56 | not run | \u2014 |" in outside and "REDUCED (quick)" in outside
    assert all(x.verdict in ("", "not a reproduction") for x in report.lines["beyond"])
    full = render.report_markdown(report)
    assert "## Beyond the paper: manual design (not from the paper)" in full


def test_report_without_beyond_runs_says_how_to_make_them():
    report = tables.build(sidecars={}, tables=["beyond"], size_fn=no_sizes)
    assert "optnb reproduce --only beyond" in render.beyond_section(report)


def test_beyond_cells_are_not_counted_as_paper_cells():
    scs = {"v": sidecar("v", "admmnet56", 6.0, 0, {}), "b": sidecar("b", "resnet56", 6.1, 0)}
    counts = tables.build(sidecars=scs, tables=["table1", "beyond"], size_fn=no_sizes).counts()
    assert counts == {"measured": 1, "eligible": 1, "consistent": 0, "not_reproduction": 0}


def test_notebook_90_takes_beyond_in_tables_and_refuses_an_unknown_table():
    from optnb.experiments.params import NB90
    from optnb.specs import ParameterError

    assert NB90["TABLES"].validate("TABLES", "table1, beyond") == "table1, beyond"
    with pytest.raises(ParameterError, match="TABLES='table9'.*table1, table2, table4, table5, beyond"):
        NB90["TABLES"].validate("TABLES", "table9")
