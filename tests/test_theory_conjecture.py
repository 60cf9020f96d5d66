"""optnb.theory.conjecture: measured rates vs theory, and the GD/HB/AGD-inspired nets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from optnb.theory import algorithms as alg
from optnb.theory import conjecture as cj
from optnb.theory.equivalence import random_spd


def test_momentum_rate_matches_simulation():
    lam = cj.quadratic_spectrum(50.0, 16)
    for method, beta, agd in (("GD", 0.0, None), ("HB", 0.55, None), ("AGD", 0.0, 0.6)):
        curves = cj.convergence_curves(lam, 800, hb_beta=beta, agd_beta=agd)
        predicted = cj.momentum_rate(method, beta if method == "HB" else (agd or 0.0), lam)
        assert cj.measured_rate(curves[method]) == pytest.approx(predicted, abs=2e-3), method


def test_tuned_momenta_reach_sqrt_kappa_rate():
    mu = 1e-2
    lam = cj.quadratic_spectrum(1 / mu, 8)
    assert cj.momentum_rate("HB", cj.hb_unit_step_beta(mu), lam) == pytest.approx(0.9, abs=1e-7)
    assert cj.momentum_rate("AGD", alg.strongly_convex_beta(mu), lam) == pytest.approx(
        0.9, abs=1e-7)
    assert cj.momentum_rate("GD", 0.0, lam) == pytest.approx(0.99)
    # a worse HB momentum is slower (the slider's point)
    assert cj.momentum_rate("HB", 0.5, lam) > 0.95
    assert cj.theory_rates(mu) == {"GD": 0.99, "HB": 0.9, "AGD": 0.9}


def test_iteration_counts_scale_like_theory():
    """O(kappa log 1/eps) for GD against O(sqrt(kappa) log 1/eps) for HB and AGD."""
    rows = cj.rate_table([10, 100, 1000], eps=1e-6, n=16)
    for m, expected in (("GD", 1.0), ("HB", 0.5), ("AGD", 0.5)):
        sel = [r for r in rows if r["method"] == m]
        p = cj.fit_power([r["kappa"] for r in sel], [r["iterations"] for r in sel])
        assert p == pytest.approx(expected, abs=0.08), (m, p)
        for r in sel:
            assert r["iterations"] == pytest.approx(r["predicted_iterations"], rel=0.25)


def test_iterations_to_eps_and_rate_helpers():
    e = 0.5 ** np.arange(30)
    assert cj.iterations_to_eps(e, 1e-3) == 10
    assert cj.iterations_to_eps(e, 1e-30) is None
    assert cj.iterations_to_eps(e, 2.0) == 0
    assert cj.measured_rate(e) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="too few iterations"):
        cj.measured_rate(np.array([1.0, 1e-20]))


def test_layer_error_curves_on_lemma1_cost():
    W = random_spd(12, (0.05, 0.9), rng=0)  # tanh: mu = 1 - 0.9 = 0.1
    curves = cj.layer_error_curves(W, "tanh", np.ones(12), 80)
    assert set(curves) == {"GD", "HB", "AGD", "z_star"}
    z_star = curves.pop("z_star")
    lo, hi = cj.local_curvature(W, "tanh", z_star)
    assert lo == pytest.approx(0.1, abs=1e-6) and hi <= 1.0  # z* = 0, where tanh' = sup = 1
    assert curves["AGD"][-1] < curves["GD"][-1] and curves["HB"][-1] < curves["GD"][-1]
    assert cj.measured_rate(curves["GD"]) <= 1 - 0.1 + 1e-3
    with pytest.raises(ValueError, match="not strongly convex"):
        cj.layer_error_curves(np.diag([1.0, 2.0]), "relu", np.ones(2), 10)


def _tiny(kind, beta=0.5, agd_betas=None, branch="mlp"):
    torch.manual_seed(0)
    size = 6 if branch == "conv" else 4
    return cj.InspiredNet(kind, 3, 5, 8, 4, branch, size, beta, agd_betas).double().eval()


@pytest.mark.parametrize("branch", ["mlp", "conv"])
def test_nets_share_parameters_and_reduce_to_resnet(branch):
    gd, hb, agd = (_tiny(k, branch=branch) for k in cj.KINDS)
    count = [sum(p.numel() for p in n.parameters()) for n in (gd, hb, agd)]
    assert count[0] == count[1] == count[2]
    for a, b in zip(gd.state_dict().values(), hb.state_dict().values()):
        assert torch.equal(a, b)  # same seed -> same initial weights
    x = torch.randn(3, 3, 6, 6, dtype=torch.float64)
    out = gd(x)
    torch.testing.assert_close(_tiny("hb", 0.0, branch=branch)(x), out, atol=0, rtol=0)
    torch.testing.assert_close(_tiny("agd", agd_betas=0.0, branch=branch)(x), out, atol=0, rtol=0)
    assert (hb(x) - out).abs().max() > 1e-6 and (agd(x) - out).abs().max() > 1e-6


def test_hb_net_matches_hand_unrolled_recursion():
    net = _tiny("hb", 0.3)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    z = net.stem(x.flatten(1))
    prev = z
    for block in net.blocks:
        prev, z = z, z + block(z) + 0.3 * (z - prev)
    ref = net.fc(torch.relu(net.head_norm(z)))
    torch.testing.assert_close(net(x), ref, atol=1e-13, rtol=0)


def test_bad_kind():
    with pytest.raises(ValueError, match="valid: gd, hb, agd"):
        cj.InspiredNet("adam", 3, 10, 8, 2)


@pytest.mark.parametrize("branch", ["mlp", "conv"])
def test_training_learns_a_separable_task(branch):
    """A few steps on an easy synthetic task beat chance for every kind (CPU, seconds)."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (256,), generator=g)
    images = torch.full((256, 3, 4, 4), 60, dtype=torch.uint8)
    images[labels == 1, :, :2] = 200  # top half bright: survives the conv path's random flips
    sizes = cj.NetSizes(branch, 4, 16 if branch == "mlp" else 8, 3, 3, 32, 0.05, 1,
                        cpu_threads=1)
    rows = cj.train_inspired_nets((images[:192], labels[:192]), (images[192:], labels[192:]),
                                  sizes, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert [r["kind"] for r in rows] == list(cj.KINDS)
    for r in rows:
        assert r["test_acc"] > 0.9 and math.isfinite(r["final_loss"])
    summary = cj.summarize(rows)
    assert set(summary) == set(cj.KINDS) and summary["gd"]["seeds"] == 1


def test_profile_sizes_exist():
    assert set(cj.NET_SIZES) == set(cj.RATE_KAPPAS) == {"smoke", "quick", "paper"}
