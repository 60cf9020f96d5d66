"""optnb.theory.rates: measured rates of GD, HB and AGD vs theory, on quadratics and on (8)."""

from __future__ import annotations

import numpy as np
import pytest

from optnb.theory import algorithms as alg
from optnb.theory import rates
from optnb.theory.spd import random_spd


def test_momentum_rate_matches_simulation():
    lam = rates.quadratic_spectrum(50.0, 16)
    for method, beta, agd in (("GD", 0.0, None), ("HB", 0.55, None), ("AGD", 0.0, 0.6)):
        curves = rates.convergence_curves(lam, 800, hb_beta=beta, agd_beta=agd)
        predicted = rates.momentum_rate(method, beta if method == "HB" else (agd or 0.0), lam)
        assert rates.measured_rate(curves[method]) == pytest.approx(predicted, abs=2e-3), method


def test_tuned_momenta_reach_sqrt_kappa_rate():
    mu = 1e-2
    lam = rates.quadratic_spectrum(1 / mu, 8)
    assert rates.momentum_rate("HB", rates.hb_unit_step_beta(mu), lam) == pytest.approx(0.9, abs=1e-7)
    assert rates.momentum_rate("AGD", alg.strongly_convex_beta(mu), lam) == pytest.approx(
        0.9, abs=1e-7)
    assert rates.momentum_rate("GD", 0.0, lam) == pytest.approx(0.99)
    # a worse HB momentum is slower (the slider's point)
    assert rates.momentum_rate("HB", 0.5, lam) > 0.95
    assert rates.theory_rates(mu) == {"GD": 0.99, "HB": 0.9, "AGD": 0.9}


def test_iteration_counts_scale_like_theory():
    """O(kappa log 1/eps) for GD against O(sqrt(kappa) log 1/eps) for HB and AGD."""
    rows = rates.rate_table([10, 100, 1000], eps=1e-6, n=16)
    for m, expected in (("GD", 1.0), ("HB", 0.5), ("AGD", 0.5)):
        sel = [r for r in rows if r["method"] == m]
        p = rates.fit_power([r["kappa"] for r in sel], [r["iterations"] for r in sel])
        assert p == pytest.approx(expected, abs=0.08), (m, p)
        for r in sel:
            assert r["iterations"] == pytest.approx(r["predicted_iterations"], rel=0.25)


def test_iterations_to_eps_and_rate_helpers():
    e = 0.5 ** np.arange(30)
    assert rates.iterations_to_eps(e, 1e-3) == 10
    assert rates.iterations_to_eps(e, 1e-30) is None
    assert rates.iterations_to_eps(e, 2.0) == 0
    assert rates.measured_rate(e) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="too few iterations"):
        rates.measured_rate(np.array([1.0, 1e-20]))


def test_layer_error_curves_on_lemma1_cost():
    W = random_spd(12, (0.05, 0.9), rng=0)  # tanh: mu = 1 - 0.9 = 0.1
    curves = rates.layer_error_curves(W, "tanh", np.ones(12), 80)
    assert set(curves) == {"GD", "HB", "AGD", "z_star"}
    z_star = curves.pop("z_star")
    lo, hi = rates.local_curvature(W, "tanh", z_star)
    assert lo == pytest.approx(0.1, abs=1e-6) and hi <= 1.0  # z* = 0, where tanh' = sup = 1
    assert curves["AGD"][-1] < curves["GD"][-1] and curves["HB"][-1] < curves["GD"][-1]
    assert rates.measured_rate(curves["GD"]) <= 1 - 0.1 + 1e-3
    with pytest.raises(ValueError, match="not strongly convex"):
        rates.layer_error_curves(np.diag([1.0, 2.0]), "relu", np.ones(2), 10)
