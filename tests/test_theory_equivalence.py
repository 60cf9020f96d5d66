"""optnb.theory.equivalence: networks (7), (10)-(13) equal optimizers on f (8), float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optnb.theory import ACTIVATIONS
from optnb.theory import equivalence as E
from optnb.theory import spd as S

NAMES = list(ACTIVATIONS)
SIZES = [1, 2, 13, 64]  # a sample of 1..64 with both ends, to keep the runtime modest
NUM_LAYERS = 60
TOL = 1e-10


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", NAMES)
def test_every_form_every_activation(name, n):
    """(7)=GD, (10)=HB, (11)=AGD, (12)=AGD's y sequence via h of (5), (13)=LADMM (6)."""
    W = S.random_spd(n, (0.05, 1.0), rng=100 + n)
    z0 = np.random.default_rng(n).standard_normal(n) * 2
    results = E.all_equivalences(W, name, z0, NUM_LAYERS, beta=0.6)
    assert set(results) == {"gd", "hb", "agd", "agd_dense", "admm"}
    for key, r in results.items():
        assert r.network.shape[0] >= NUM_LAYERS + 1
        assert r.max_rel <= TOL, f"{name} n={n} {key}: {r.summary()}"


@pytest.mark.parametrize("name", ["relu", "softplus", "silu"])
def test_large_eigenvalues_and_constant_beta(name):
    """Outside the convex regime (lam_max = 3) the algebra is still exact; AGD with the constant
    strongly convex momentum too."""
    W = S.random_spd(8, (0.2, 3.0), rng=7)
    z0 = np.random.default_rng(1).standard_normal(8)
    for r in (E.gd_equivalence(W, name, z0, 50), E.agd_equivalence(W, name, z0, 50, 0.7),
              E.agd_dense_equivalence(W, name, z0, 50, 0.7), E.admm_equivalence(W, name, z0, 50)):
        assert r.max_rel <= TOL, r.summary()


def test_deviation_detects_a_wrong_network():
    """The comparison is not vacuous: a network with the wrong beta is far from HB."""
    W = S.random_spd(5, rng=3)
    z0 = np.ones(5)
    cost = E.Lemma1Cost(W, "tanh")
    wrong = E.propagate_hb(cost.layer, z0, 50, 0.5)
    right = E.hb_equivalence(W, "tanh", z0, 50, 0.6)
    assert np.abs(wrong - right.optimizer).max() > 1e-3
    # and beta = 0 reduces (10) to (7)
    np.testing.assert_array_equal(E.propagate_hb(cost.layer, z0, 20, 0.0),
                                  E.propagate_plain(cost.layer, z0, 20))


def test_batched_torch_equivalence():
    W = S.random_spd(16, rng=2)
    z0 = torch.randn(5, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for name in ("tanh", "softplus"):
        res = E.all_equivalences(W, name, z0, 50)
        for r in res.values():
            assert isinstance(r.network, torch.Tensor) and r.network.shape[-2:] == (5, 16)
            assert r.max_rel <= TOL, r.summary()
        # each row of the batch equals the unbatched run
        single = E.gd_equivalence(W, name, z0[3].numpy(), 50)
        np.testing.assert_allclose(res["gd"].network[:, 3].numpy(), single.network, atol=1e-14)


def test_cost_gradient_is_autograd_of_cost():
    """(9) is the gradient of (8): compare with torch autograd for every activation."""
    W = S.random_spd(6, (0.1, 2.0), rng=4)
    x = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for name in NAMES:
        cost = E.Lemma1Cost(W, name)
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(cost.f(xr).sum(), xr)
        torch.testing.assert_close(g, cost.grad(x), atol=1e-12, rtol=0)
    np.testing.assert_allclose(cost.U @ cost.U, W, atol=1e-13)
    np.testing.assert_allclose(cost.U, cost.U.T, atol=0)
    np.testing.assert_allclose(cost.to_z(cost.to_x(x.numpy())), x.numpy(), atol=1e-13)


def test_non_symmetric_w_raises():
    W = S.random_spd(4, rng=0)
    W[0, 1] += 0.1
    with pytest.raises(S.NotSymmetricError, match="not symmetric") as err:
        E.Lemma1Cost(W, "relu")
    assert isinstance(err.value, ValueError) and "\n" not in str(err.value)


@pytest.mark.parametrize("lam", [[-0.5, 1.0], [0.0, 1.0]])
def test_indefinite_or_singular_w_raises(lam):
    with pytest.raises(S.NotPositiveDefiniteError, match="not positive definite"):
        E.gd_equivalence(np.diag(lam), "tanh", np.ones(2), 5)


def test_other_bad_inputs():
    with pytest.raises(S.WeightError, match="square"):
        S.check_spd(np.ones((2, 3)))
    with pytest.raises(KeyError, match="valid names: identity, relu"):
        E.gd_equivalence(np.eye(2), "swish", np.ones(2), 3)
    with pytest.raises(ValueError, match="3 features but W is 2 x 2"):
        E.gd_equivalence(np.eye(2), "relu", np.ones(3), 3)
    with pytest.raises(ValueError, match="eig_range"):
        S.random_spd(3, (0.0, 1.0))


def test_random_spd_spectrum():
    W = S.random_spd(10, (0.3, 2.0), rng=9)
    lam = np.linalg.eigvalsh(W)
    assert lam[0] == pytest.approx(0.3) and lam[-1] == pytest.approx(2.0)
    np.testing.assert_array_equal(W, W.T)
    W2 = S.spd_2d(0.5, 2.0, 30.0)
    np.testing.assert_allclose(np.linalg.eigvalsh(W2), [0.5, 2.0], atol=1e-14)


def test_descent_only_fails_without_monotonicity():
    """Monotone Phi: one layer never increases f (descent lemma). SiLU: it can."""
    for name in NAMES:
        v = E.descent_violation(name)
        if ACTIVATIONS[name].monotone:
            assert v["increase"] <= 1e-12, (name, v)
        else:
            assert v["increase"] > 0.1, (name, v)


def test_check_close_returns_residual_and_fails_readably():
    from optnb.theory import CheckFailed, check_close

    assert check_close(np.ones(3), np.ones(3) + 1e-13, atol=1e-12, name="a") == pytest.approx(1e-13)
    with pytest.raises(CheckFailed, match=r"claim: max \|actual - expected\| = 1.000e-03 exceeds"):
        check_close(np.zeros(2), np.array([0.0, 1e-3]), atol=1e-6, name="claim")
    with pytest.raises(CheckFailed, match="shapes differ"):
        check_close(np.zeros(2), np.zeros((2, 1)))
    assert isinstance(CheckFailed("x"), AssertionError)


def test_step_field_asymmetry_flags_non_symmetric_w():
    x = np.array([0.7, -0.4])
    W = S.spd_2d(0.3, 0.9, 30.0)
    assert E.step_field_asymmetry(W, "tanh", x) < 1e-12
    assert E.step_field_asymmetry(W + np.array([[0.0, 0.3], [0.0, 0.0]]), "tanh", x) > 1e-2
    with pytest.raises(S.NotPositiveDefiniteError):
        E.step_field_asymmetry(np.diag([-1.0, 1.0]), "tanh", x)
