"""The training, NAS and beyond-the-paper notebooks (06-10, 08b) run headless in the smoke profile through the runner.

Each run goes through ``optnb.experiments.runner`` exactly as ``optnb reproduce`` would (papermill,
kernel ``python3``, ``LIVE="display"``), two at a time, and must record its table values: finite
numbers in range, a genotype that parses, and a complete sidecar that says the data was embedded.
"""

from __future__ import annotations

import math

import pytest

from optnb.experiments import read_notebook_results, read_sidecar
from optnb.experiments.runner import Run, report, run_many
from optnb.nas.genotypes import arity, parse

pytestmark = pytest.mark.notebooks

RUNS = [
    Run("06_train_cifar", {"PROFILE": "smoke", "MODEL": "hbnet56", "SEED": 0}),
    Run("07_train_imagenet", {"PROFILE": "smoke", "MODEL": "hbnet34", "SEED": 0}),
    Run("08_nas_search", {"PROFILE": "smoke", "SPACE": "hb", "INIT": "hb", "SEED": 0}),
    Run("09_nas_evaluate", {"PROFILE": "smoke", "GENOTYPE": "DARTS_V2", "SEED": 0}),
    Run("10_beyond_the_paper_design", {"PROFILE": "smoke", "SEED": 0}),
    # runs the searches of its seeds it does not find (in 2 worker processes), then compares them
    Run("08b_search_stability", {"PROFILE": "smoke", "ROWS": "hb_init", "SEEDS": "0,1", "JOBS": 2}),
]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    results = tmp_path_factory.mktemp("smoke-results")
    out = run_many(RUNS, jobs=2, results_dir=results, skip_complete=False)
    assert all(r.ok for r in out), report(out)
    return {r.run.notebook: r for r in out}


def _values(result) -> dict:
    sidecar = read_sidecar(result.sidecar_path.parent)
    assert sidecar["status"] == "complete" and sidecar["profile"] == "smoke"
    assert sidecar["dataset"] == "embedded" and sidecar["dataset_real"] is False
    values = {k: v["value"] for k, v in sidecar["results"].items()}
    # the executed notebook carries the same results (they survive a lost sidecar)
    in_notebook = read_notebook_results(result.output_path)["results"]
    assert {k: v["value"] for k, v in in_notebook.items()} == values
    for name, value in values.items():
        if isinstance(value, float):
            assert math.isfinite(value), name
    return values


def test_06_records_a_table1_row(executed):
    values = _values(executed["06_train_cifar"])
    assert 0.0 <= values["test_error"] <= 100.0
    assert values["params_named_model"] == 853_018  # HBNet-56 = ResNet-56, Table 1's 0.85M
    assert values["trained_model"] == "hbnet20" and values["epochs"] == values["epochs_planned"]
    assert values["comparable_to_paper"] is False


def test_07_records_a_table2_row(executed):
    values = _values(executed["07_train_imagenet"])
    assert 0.0 <= values["top5_error"] <= values["top1_error"] <= 100.0
    assert values["comparable_to_paper"] is False


def test_08_records_a_searched_genotype(executed):
    values = _values(executed["08_nas_search"])
    genotype = parse(values["genotype"])
    assert arity(genotype) == 3  # the hb space keeps three operations per node
    assert values["search_epochs"] >= 1 and values["search_cost_gpu_days"] >= 0
    free = values["param_free_ops"]  # per cell type: how many of its 12 ops have no parameters
    assert set(free) >= {"normal", "reduce"} and all(0 <= free[k] <= 12 for k in ("normal", "reduce"))


def test_09_records_a_table4_row(executed):
    values = _values(executed["09_nas_evaluate"])
    assert 0.0 <= values["test_error"] <= 100.0
    assert values["params_m"] == pytest.approx(3.349342, abs=1e-6)  # DARTS_V2 at C=36, 20 cells


def test_10_records_the_beyond_the_paper_checks_and_study(executed):
    values = _values(executed["10_beyond_the_paper_design"])
    assert values["admm_step_deviation"] < 1e-12 and values["admmnet_params_equal_resnet"] is True
    assert 1.9 < values["admmnet56_mac_ratio"] < 2.0
    assert values["agdnet_densenet_twin_gap"] == 0.0
    study = values["separation_test_error"]
    assert set(study) == {"DenseNet", "DenseNet, AGDNet's init", "AGDNet"}  # sidecar keys sort
    assert all(0.0 <= e <= 100.0 for e in study.values())
    def by_depth(name):  # JSON keys are strings and sorted as such
        return [v for _, v in sorted((int(k), v) for k, v in values[name].items())]

    reversible, ordinary = by_depth("reversible_saved_bytes"), by_depth("ordinary_saved_bytes")
    assert max(reversible) <= 1.1 * min(reversible) and ordinary == sorted(ordinary)
    assert ordinary[-1] > 4 * reversible[-1]


def test_08b_searches_the_missing_seeds_and_records_their_agreement(executed):
    result = executed["08b_search_stability"]
    values = _values(result)
    assert values["seeds"] == [0, 1]
    for kind in ("normal", "reduce"):
        assert -1.0 <= values[f"hb_init_mean_tau_{kind}"] <= 1.0
        assert 0.0 <= values[f"hb_init_agreement_{kind}"] <= 1.0
    assert values["hb_init_params_spread_m"] >= 0.0
    runs = result.sidecar_path.parent.parent  # the searches it ran sit beside it, complete
    searches = [read_sidecar(p) for p in runs.iterdir() if p.name.startswith("08_nas_search-")]
    ran = {s["parameters"]["SEED"] for s in searches
           if s["parameters"].get("INIT") == "hb" and s["parameters"].get("DATASET") == "auto"}
    assert ran == {0, 1} and all(s["status"] == "complete" for s in searches)
