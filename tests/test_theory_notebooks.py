"""Notebooks 01-04 through the papermill runner with NON-default parameters (smoke profile).

The default parameters are exercised by nbval (``pytest --nbval-lax notebooks/0[0-5]_*.ipynb``);
here every notebook gets another activation and/or another beta, and the recorded results must
show that the injected values were used.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from optnb.experiments import read_notebook_results, read_sidecar
from optnb.experiments.runner import Run, run_many
from optnb.theory import rates

PARAMETERS = {
    "01_forward_pass_is_gradient_descent": {"ACTIVATION": "softsign", "WIDTH": 7,
                                            "NUM_LAYERS": 64},
    "02_momentum_networks": {"ACTIVATION": "elu", "BETA": 0.9, "H_SIZE": 10, "NUM_LAYERS": 55},
    "03_activation_cost_functions": {"ACTIVATION": "silu", "EIG1": 0.5, "EIG2": 2.0,
                                     "ANGLE": 75.0},
    "04_faster_optimizer_better_network": {"ACTIVATION": "softplus", "BETA": 0.5, "KAPPA": 30.0,
                                           "NET_BETA": 0.9},
}


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    results = tmp_path_factory.mktemp("theory_nb") / "results"
    runs = [Run(nb, {"PROFILE": "smoke", "SEED": 1, **params}) for nb, params in PARAMETERS.items()]
    out = run_many(runs, jobs=2, results_dir=results, skip_complete=False)
    return {Path(r.run.notebook).stem: r for r in out}


def _results(run_result) -> dict:
    assert run_result.ok, run_result.error
    assert read_sidecar(run_result.output_path.parent)["status"] == "complete"
    found = read_notebook_results(run_result.output_path)
    assert found["parameters"]["PROFILE"] == "smoke"
    return {k: v["value"] for k, v in found["results"].items()}


@pytest.mark.notebooks
@pytest.mark.timeout(900)
def test_01_other_activation(executed):
    res = _results(executed["01_forward_pass_is_gradient_descent"])
    assert res["landscape_activation"] == "softsign" and res["landscape_decreasing"] is True
    assert res["all_activations_within_1e-10"] is True
    assert max(res["gd_equivalence_max_rel"].values()) <= 1e-10
    assert res["descent_violation_max_increase"]["silu"] > 0.1


@pytest.mark.notebooks
@pytest.mark.timeout(900)
def test_02_other_activation_and_beta(executed):
    res = _results(executed["02_momentum_networks"])
    assert res["all_within_1e-10"] is True
    assert set(res["deviations_selected_activation"]) >= {"HB (10) vs (2)", "ADMM (13) vs (6)"}
    assert res["h_table_rows_1_6"][1][1] == pytest.approx(1.281754, abs=1e-6)


@pytest.mark.notebooks
@pytest.mark.timeout(900)
def test_03_non_monotone_activation(executed):
    res = _results(executed["03_activation_cost_functions"])
    c = res["selected_cost_constants"]
    assert c["activation"] == "silu"
    # Hess <= I - inf(Phi') lam_max with inf(Phi') < 0: above 1, as SiLU is not monotone
    assert c["hess_upper"] == pytest.approx(1 + 0.09983932012886693 * 2.0, rel=1e-9)
    assert res["monotone"]["silu"] is False
    assert max(res["psi_prime_autograd_error"].values()) <= 1e-12


@pytest.mark.notebooks
@pytest.mark.timeout(900)
def test_04_other_beta(executed):
    res = _results(executed["04_faster_optimizer_better_network"])
    q = res["quadratic_rates_at_kappa"]
    assert q["hb_beta"] == 0.5 and q["kappa"] == 30.0
    lam = rates.quadratic_spectrum(30.0, 32)
    assert q["predicted"]["HB"] == pytest.approx(rates.momentum_rate("HB", 0.5, lam))
    assert res["lemma1_cost_rates"]["activation"] == "softplus"
    nets = res["inspired_nets"]
    assert nets["net_beta"] == 0.9 and nets["dataset"] == "embedded" and nets["dataset_real"] is False
    assert len({v["params"] for v in nets["summary"].values()}) == 1
    assert all(0.0 <= a <= 1.0 for a in res["inspired_nets_test_acc"].values())
