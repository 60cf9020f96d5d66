"""Joining run sidecars with the paper: statistics, provenance labels, honesty rules, outputs."""

from __future__ import annotations

import csv
import json
import statistics

import pytest

from optnb.experiments import paper, render, tables


def sidecar(run_id, notebook, params, results, *, profile="paper", dataset="cifar10",
            real=True, status="complete", device="cuda:0", finished="2026-01-02T03:04:05+00:00"):
    return {
        "notebook": notebook, "run_id": run_id, "status": status, "parameters": params,
        "profile": profile, "dataset": dataset, "dataset_real": real, "device": device,
        "versions": {"gpu": "H200"} if device.startswith("cuda") else {},
        "started": "2026-01-01T00:00:00+00:00", "finished": finished,
        "results": {k: {"value": v, "unit": None} for k, v in results.items()},
    }


def cifar(run_id, model, err, seed, **kw):
    params = {"MODEL": model, "DATASET": kw.pop("ds_param", "cifar10"), "AUGMENT": True,
              "SEED": seed, "PROFILE": kw.get("profile", "paper")}
    return sidecar(run_id, "06_train_cifar", params,
                   {"test_error": err, "params": 853018, "epochs": 300}, **kw)


def no_sizes(table, row, genotype):
    raise LookupError("models not built in this test")


def test_mean_sd_and_difference_over_seeds_in_float64():
    errs = [5.1, 5.5, 5.3]
    scs = {f"r{i}": cifar(f"r{i}", "hbnet56", e, i) for i, e in enumerate(errs)}
    report = tables.build(sidecars=scs, tables=["table1"], size_fn=no_sizes)
    [line] = [x for x in report.lines["table1"] if x.n]
    assert (line.row, line.column, line.n) == ("hbnet56", "cifar10+", 3)
    assert line.mean == pytest.approx(statistics.fmean(errs), abs=1e-12)
    assert line.sd == pytest.approx(statistics.stdev(errs), abs=1e-12)
    assert line.diff == pytest.approx(5.3 - 5.46, abs=1e-12)
    assert line.eligible and line.verdict == "consistent"
    assert line.seeds == "0, 1, 2" and line.epochs == "300" and line.date == "2026-01-02"
    assert line.device == "cuda:0 (H200)"


def test_large_difference_is_flagged_differs():
    scs = {"a": cifar("a", "resnet56", 9.0, 0), "b": cifar("b", "resnet56", 9.1, 1)}
    [line] = [x for x in tables.build(sidecars=scs, tables=["table1"], size_fn=no_sizes)
              .lines["table1"] if x.n]
    assert line.verdict == "differs"  # |9.05 - 5.32| > max(2 sd, 0.5)


def test_smoke_embedded_and_reduced_runs_are_separate_and_never_reproductions():
    scs = {
        "p": cifar("p", "hbnet56", 5.4, 0),
        "s": cifar("s", "hbnet56", 80.0, 0, profile="smoke", dataset="embedded", real=False,
                   ds_param="auto", device="cpu"),
        "q": cifar("q", "hbnet56", 7.0, 0, profile="quick"),
    }
    report = tables.build(sidecars=scs, tables=["table1"], size_fn=no_sizes)
    measured = {x.profile: x for x in report.lines["table1"] if x.n}
    assert set(measured) == {"paper", "smoke", "quick"}
    assert all(x.n == 1 for x in measured.values())  # never averaged together
    assert measured["smoke"].status == "SMOKE, EMBEDDED DATA"
    assert measured["quick"].status == "REDUCED (quick)"
    for key in ("smoke", "quick"):
        assert measured[key].verdict == "not a reproduction" and not measured[key].eligible
    assert report.counts() == {"measured": 3, "eligible": 1, "consistent": 1,
                               "not_reproduction": 2}
    md = render.report_markdown(report)
    assert "**SMOKE, EMBEDDED DATA**" in md and "**REDUCED (quick)**" in md
    assert "2 are NOT reproductions" in md


def test_eligibility_needs_the_papers_dataset():
    assert tables.status_of("paper", "cifar10", True, "table1", "cifar10+") == "paper profile, real data"
    assert tables.status_of("paper", "cifar10", True, "table1", "cifar100") == "WRONG DATASET (cifar10)"
    assert tables.status_of("paper", "imagenet", True, "table5", "top1") == "paper profile, real data"
    assert tables.status_of("paper", "cifar10", True, "table2", "top5") == "WRONG DATASET (cifar10)"
    assert tables.status_of("paper", "cifar10", True, "table4", "test_error").startswith("paper")
    assert tables.status_of("smoke", "cifar10", True, "table4", "test_error") == "SMOKE"
    assert tables.status_of("paper", "synthetic", False, "table1", "cifar10") == "SYNTHETIC DATA"
    assert tables.status_of("quick", "embedded", False, "table2", "top1") == "EMBEDDED DATA"


def test_column_mapping_of_cifar_runs():
    def col(params):
        sc = sidecar("x", "06_train_cifar", params, {"test_error": 1.0})
        return tables.measurements({"x": sc})[0].target.column

    assert col({"MODEL": "agdnet40", "DATASET": "cifar100", "AUGMENT": False}) == "cifar100"
    assert col({"MODEL": "agdnet40", "DATASET": "cifar100", "AUGMENT": True}) == "cifar100+"
    assert col({"MODEL": "agdnet40", "DATASET": "auto", "AUGMENT": True}) == "cifar10+"
    unknown = sidecar("y", "06_train_cifar", {"MODEL": "wide_resnet"}, {"test_error": 1.0})
    assert tables.measurements({"y": unknown}) == []


def test_incomplete_and_failed_runs_are_not_measured():
    scs = {"a": cifar("a", "hbnet56", 5.0, 0, status="running"),
           "b": cifar("b", "hbnet56", 5.0, 1, status="failed")}
    assert tables.measurements(scs) == []
    lines = tables.build(sidecars=scs, tables=["table1"], size_fn=no_sizes).lines["table1"]
    assert all(x.status == "not run" for x in lines)
    assert len(lines) == 8 * 4  # every reproducible row x every error column


def test_nas_rows_join_search_and_evaluation():
    search = sidecar("s0", "08_nas_search",
                     {"SPACE": "hb", "INIT": "hb", "ORDER": 1, "SEED": 0},
                     {"search_cost_gpu_days": 0.25, "genotype": {"normal": []}})
    evaluate = sidecar("e0", "09_nas_evaluate",
                       {"TASK": "cifar10", "SEARCH_RUN": "s0", "GENOTYPE": "", "SEED": 0},
                       {"test_error": 2.7, "params": 3.1})
    transfer = sidecar("t0", "09_nas_evaluate",
                       {"TASK": "imagenet", "SEARCH_RUN": "", "GENOTYPE": "DARTS_V2", "SEED": 0},
                       {"top1_error": 27.0, "top5_error": 9.0, "params": 4.7e6},
                       dataset="imagenet")
    report = tables.build(sidecars={"s0": search, "e0": evaluate, "t0": transfer},
                          tables=["table4", "table5"], size_fn=no_sizes)
    got4 = {(x.row, x.column): x.mean for x in report.lines["table4"] if x.n}
    assert got4 == {("hb_init", "test_error"): 2.7, ("hb_init", "search_cost_gpu_days"): 0.25}
    got5 = {(x.row, x.column): x.mean for x in report.lines["table5"] if x.n}
    assert got5 == {("darts_2nd", "top1"): 27.0, ("darts_2nd", "top5"): 9.0}


def test_sizes_filled_from_size_function_on_any_profile():
    def size_fn(table, row, genotype):
        return {"params_m": 0.853018, "flops_g": 0.1255}

    rows = tables.size_rows("table1", (), size_fn)
    assert len(rows) == 8
    first = rows[0]
    assert first["row"] == "resnet56" and first["paper_params_m"] == 0.85
    assert first["diff_params_m"] == pytest.approx(0.003018, abs=1e-12)
    failing = tables.size_rows("table2", (), no_sizes)
    assert all("not computed: models not built" in r["note"] for r in failing)


def test_outputs_markdown_csv_html(tmp_path):
    scs = {"a": cifar("a", "hbnet56", 5.0, 0), "b": cifar("b", "hbnet56", 6.0, 1)}
    report = tables.build(sidecars=scs, size_fn=no_sizes)
    md = render.report_markdown(report, header="made by a test")
    for t in paper.TABLES.values():
        assert t.title in md
    assert "made by a test" in md and "Table 3: candidate operations" in md
    assert "| HBNet (n = 9) | CIFAR-10(+) | 5.46 | 5.50 \u00b1 0.71 | 2 | +0.04 |" in md
    path = render.write_csv(tmp_path / "t.csv", report.all_lines)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == len(report.all_lines)
    hb = [r for r in rows if r["row"] == "hbnet56" and r["n"] == "2"][0]
    assert float(hb["mean"]) == 5.5 and float(hb["diff"]) == pytest.approx(0.04)
    page = render.lines_html(report.lines["table1"])
    assert page.startswith("<table>") and "HBNet (n = 9)" in page


def test_read_sidecars_skips_unreadable(tmp_path):
    good = cifar("good", "hbnet56", 5.0, 0)
    (tmp_path / "runs" / "good").mkdir(parents=True)
    (tmp_path / "runs" / "good" / "result.json").write_text(json.dumps(good))
    (tmp_path / "runs" / "bad").mkdir()
    (tmp_path / "runs" / "bad" / "result.json").write_text("{truncated")
    assert list(tables.read_sidecars(tmp_path)) == ["good"]


@pytest.mark.notebooks
def test_report_notebook_renders_the_tables_and_records_counts(tmp_path):
    """Notebook 90 on a results folder with two paper-profile seeds and one smoke run."""
    from optnb.experiments.results import read_sidecar
    from optnb.experiments.runner import Run, run_notebook

    results = tmp_path / "results"
    scs = {"p0": cifar("p0", "hbnet56", 5.4, 0), "p1": cifar("p1", "hbnet56", 5.6, 1),
           "s0": cifar("s0", "resnet56", 80.0, 0, profile="smoke", dataset="embedded",
                       real=False, ds_param="auto", device="cpu")}
    for run_id, sc in scs.items():
        (results / "runs" / run_id).mkdir(parents=True)
        (results / "runs" / run_id / "result.json").write_text(json.dumps(sc))
    (results / "runs" / "s0" / "metrics.jsonl").write_text(
        '{"kind": "step", "step": 1, "loss": 2.3, "epoch": 0.5}\n'
        '{"kind": "epoch", "epoch": 1, "train_loss": 2.1, "test_error": 80.0}\n{"torn')
    run = Run("90_reproduce_tables", {"PROFILE": "smoke", "TABLES": "table1"})
    result = run_notebook(run, results_dir=results)
    assert result.ok, result.error
    recorded = read_sidecar(results / "runs" / run.run_id)["results"]
    got = {k: v["value"] for k, v in recorded.items()}
    assert got == {"measured_cells": 2, "eligible_cells": 1, "consistent_cells": 1,
                   "not_reproduction_cells": 1, "runs_read": 4}
    text = result.output_path.read_text()
    assert "5.50 \u00b1 0.14" in text and "80.00\u2021" in text
    assert "3 logged points from 1 run(s)" in text


def test_curves_read_every_log_kind_and_skip_torn_lines(tmp_path):
    from optnb.experiments import curves

    scs = {"a": cifar("a", "hbnet56", 5.0, 0)}
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text(  # every kind of record a fit writes, and a torn line
        '{"kind": "start", "epochs_planned": 2}\n'
        '{"kind": "step", "step": 1, "loss": 2.5, "epoch": 0.5}\n'
        '{"kind": "epoch", "epoch": 1, "train_loss": 2.0, "test_error": 50.0, "lr": 0.1}\n'
        '{"kind": "end", "epoch": 1, "test_error": 50.0}\n'
        '{"kind": "epoch", "epoch": 1, "test_error": 40.0, "epoch_s": 3.0}\n{"epo')
    found = tables.measurements(scs)
    frame = curves.load(tmp_path, found)
    got = sorted(zip(frame["epoch"], frame["metric"], frame["value"]))
    assert got == [(0.5, "step_loss", 2.5), (1.0, "test_error", 40.0),
                   (1.0, "test_error", 50.0), (1.0, "train_loss", 2.0)]
    assert set(frame["row"]) == {"hbnet56"} and set(frame["profile"]) == {"paper"}
