"""optnb.theory.activations: Psi' = Phi, stability at large |t|, sympy derivations, constants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optnb.theory import activations as A
from optnb.theory.equivalence import Lemma1Cost
from optnb.theory.spd import random_spd

NAMES = list(A.ACTIVATIONS)
REQUIRED = {"identity", "relu", "leaky_relu", "sigmoid", "tanh", "softplus", "elu", "softsign",
            "silu"}


def test_registry_contents_and_flags():
    assert set(NAMES) >= REQUIRED
    assert [n for n in NAMES if not A.ACTIVATIONS[n].monotone] == ["silu"]
    assert "silu" not in A.activation_names(monotone_only=True)
    assert "NOT monotone" in A.get_activation("silu").note


def test_unknown_activation_lists_valid_names():
    with pytest.raises(A.UnknownActivationError) as err:
        A.get_activation("gelu")
    msg = str(err.value)
    assert isinstance(err.value, KeyError) and "gelu" in msg and "\n" not in msg
    for name in NAMES:
        assert name in msg


def _autograd_dpsi(act: A.Activation, t: torch.Tensor) -> torch.Tensor:
    t = t.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(act.torch_psi(t).sum(), t)
    return g


@pytest.mark.parametrize("name", NAMES)
def test_psi_prime_is_phi_by_autograd(name):
    act = A.get_activation(name)
    grid = torch.linspace(-12, 12, 2401, dtype=torch.float64)
    big = torch.tensor([-800.0, -300.0, -60.0, -25.0, 25.0, 60.0, 300.0, 800.0],
                       dtype=torch.float64)
    edges = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)  # branch boundaries, exactly
    for t in (grid, big, edges):
        g = _autograd_dpsi(act, t)
        phi = act.torch_phi(t)
        assert torch.all(torch.isfinite(g)) and torch.all(torch.isfinite(act.torch_psi(t)))
        err = (g - phi).abs() / (1 + phi.abs())
        assert err.max() <= 1e-12, (name, float(err.max()), float(t[err.argmax()]))


@pytest.mark.parametrize("name", NAMES)
def test_psi_prime_is_phi_by_central_differences(name):
    """Independent of autograd: (Psi(t+h) - Psi(t-h)) / 2h on points away from kinks."""
    act = A.get_activation(name)
    t = np.linspace(-7.3, 7.3, 146)  # avoids the kink at 0
    h = 1e-5
    fd = (act.psi(t + h) - act.psi(t - h)) / (2 * h)
    np.testing.assert_allclose(fd, act.phi(t), atol=1e-8)


def test_softplus_cost_series_regions_join_smoothly():
    """-Li2(-e^t) is evaluated by three formulas (t <= -1, |t| < 1, t >= 1): check continuity
    and known values (Li2(-1) = -pi^2/12)."""
    sp = A.get_activation("softplus")
    assert sp.psi(0.0) == pytest.approx(np.pi**2 / 12, abs=1e-15)
    for edge in (-1.0, 1.0):
        left, right = sp.psi(edge - 1e-12), sp.psi(edge + 1e-12)
        assert abs(left - right) < 1e-11
    assert sp.psi(-50.0) == pytest.approx(np.exp(-50.0), rel=1e-12)
    assert sp.psi(40.0) == pytest.approx(np.pi**2 / 6 + 800.0, rel=1e-15)


def test_input_kinds_round_trip():
    act = A.get_activation("tanh")
    assert isinstance(act.psi(0.3), float)
    assert isinstance(act.phi(np.zeros(3)), np.ndarray)
    t = torch.zeros(2, 3, dtype=torch.float64)
    assert isinstance(act(t), torch.Tensor) and act(t).shape == (2, 3)
    np.testing.assert_allclose(act.dphi(np.array([0.0, 1.0])), [1.0, 1 - np.tanh(1) ** 2])


@pytest.mark.parametrize("name", NAMES)
def test_sympy_psi_matches_numeric_up_to_constant(name):
    """The sympy Psi is derived by integrating Phi; it must equal the numeric Psi + const."""
    import sympy as sp

    expr = A.symbolic_psi(name)
    t = sp.Symbol("t", real=True)
    assert expr.has(t)
    grid = np.array([-9.0, -4.5, -2.0, -1.0, -0.3, 0.0, 0.4, 1.0, 2.5, 6.0, 9.0])
    sym = A.evaluate_symbolic(expr, grid)
    num = A.get_activation(name).psi(grid)
    diff = sym - num
    assert np.ptp(diff) <= 1e-12 * max(1.0, np.abs(num).max()), (name, diff)


def test_sympy_derivative_is_phi_for_closed_forms():
    import sympy as sp

    t = sp.Symbol("t", real=True)
    for name in ("identity", "sigmoid", "tanh", "softplus", "silu"):
        d = sp.diff(A.symbolic_psi(name), t) - A.symbolic_phi(name)
        vals = [complex(d.subs(t, sp.Rational(v)).evalf(40)) for v in ("-3.1", "-0.2", "0.7", "2.9")]
        assert max(abs(v) for v in vals) < 1e-20, name


@pytest.mark.parametrize("name", NAMES)
def test_derivative_bounds(name):
    act = A.get_activation(name)
    t = np.linspace(-30, 30, 600001)
    d = act.dphi(t)
    assert d.max() <= act.sup_dphi + 1e-9 and d.max() >= act.sup_dphi - 1e-6
    far = act.dphi(np.array([-1e8, 1e8]))  # infima like softsign's 0 are only approached
    assert d.min() >= act.inf_dphi - 1e-9 and min(d.min(), far.min()) <= act.inf_dphi + 1e-6


def test_variants_and_bad_parameters():
    leaky = A.make_leaky_relu(0.2)
    assert leaky.inf_dphi == 0.2 and leaky.phi(-1.0) == -0.2
    assert A.make_elu(2.0).sup_dphi == 2.0
    with pytest.raises(ValueError, match="slope must be in"):
        A.make_leaky_relu(1.5)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        A.make_elu(-1.0)


@pytest.mark.parametrize("name", NAMES)
def test_cost_constants_bound_the_hessian(name):
    """Sampled Hessians I - U diag(Phi'(Ux)) U lie inside [hess_lower, hess_upper]."""
    W = random_spd(6, (0.2, 3.0), rng=5)
    c = A.cost_constants(name, W)
    cost = Lemma1Cost(W, name)
    act = A.get_activation(name)
    rng = np.random.default_rng(0)
    eigs = []
    for _ in range(200):
        x = rng.standard_normal(6) * 3
        H = np.eye(6) - cost.U @ np.diag(act.dphi(cost.U @ x)) @ cost.U
        eigs.extend(np.linalg.eigvalsh(H))
    assert min(eigs) >= c.hess_lower - 1e-12 and max(eigs) <= c.hess_upper + 1e-12
    assert max(abs(c.hess_lower), abs(c.hess_upper)) == c.L
    assert c.one_sided_smooth == act.monotone


def test_cost_constants_regimes():
    W = np.diag([0.1, 0.5])
    tanh = A.cost_constants("tanh", W)
    assert tanh.strongly_convex and tanh.mu == pytest.approx(0.5) and tanh.L == 1.0
    assert tanh.kappa == pytest.approx(2.0)
    sig = A.cost_constants("sigmoid", np.diag([1.0, 4.0]))
    assert sig.mu == pytest.approx(0.0) and sig.convex and not sig.strongly_convex
    big = A.cost_constants("relu", np.diag([1.0, 3.0]))
    assert not big.convex and big.L == 2.0 and big.kappa == np.inf
