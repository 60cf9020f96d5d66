"""optnb.theory.algorithms: theta/beta schedule, h and c coefficients, GD/HB/AGD/LADMM (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optnb.theory import algorithms as alg


def _quadratic(n: int, seed: int = 0, lo: float = 0.05, hi: float = 1.0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (q * rng.uniform(lo, hi, n)) @ q.T
    b = rng.standard_normal(n)
    return A, b, (lambda x: x @ A - b)  # row-vector convention, A symmetric


# ---------------------------------------------------------------------------- theta / beta


def test_theta_recursion_and_start():
    th = alg.nesterov_thetas(40)
    assert th[0] == 1.0 and th.dtype == np.float64
    lhs = (1 - th[1:]) / th[1:] ** 2
    np.testing.assert_allclose(lhs, 1 / th[:-1] ** 2, rtol=1e-13)
    assert np.all(np.diff(th) < 0) and np.all(th > 0)
    # theta_k ~ 2 / (k + 2) asymptotically
    assert abs(th[-1] * (len(th) + 1) / 2 - 1) < 0.05


def test_betas_match_note_and_fista():
    beta = alg.nesterov_betas(13)
    note = [0, 0, 0.2818, 0.4340, 0.5311, 0.5988, 0.6489, 0.6876, 0.7185, 0.7437, 0.7647,
            0.7824, 0.7976]
    np.testing.assert_allclose(beta, note, atol=5e-5)
    # FISTA: t_1 = 1, t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2, momentum (t_{k-1} - 1) / t_k
    t = [1.0]
    for _ in range(30):
        t.append((1 + np.sqrt(1 + 4 * t[-1] ** 2)) / 2)
    fista = [(t[k - 1] - 1) / t[k] for k in range(1, 31)]
    np.testing.assert_allclose(alg.nesterov_betas(31)[1:], fista, rtol=0, atol=1e-14)
    assert np.all(alg.nesterov_betas(200) < 1)


def test_strongly_convex_beta():
    assert alg.strongly_convex_beta(1.0) == 0.0
    assert alg.strongly_convex_beta(0.01) == pytest.approx(0.9 / 1.1, rel=1e-14)
    with pytest.raises(ValueError, match="0 < mu <= L"):
        alg.strongly_convex_beta(0.0)


@pytest.mark.parametrize("bad", [-1, 2.5, True, "3"])
def test_bad_num_raises(bad):
    with pytest.raises(ValueError, match="num must be an int >= 0"):
        alg.nesterov_betas(bad)


# ---------------------------------------------------------------------------- h and c


def test_h_table_matches_recursion_and_note():
    H = alg.h_coefficients(6)
    assert H.shape == (7, 6) and np.all(H[0] == 0) and np.all(np.triu(H[1:], 1) == 0)
    note = {(1, 0): 1, (2, 0): 0, (2, 1): 1.2818, (3, 1): 0.1223, (3, 2): 1.4340,
            (4, 1): 0.0649, (4, 2): 0.2305, (4, 3): 1.5311, (6, 1): 0.0252, (6, 4): 0.3886,
            (6, 5): 1.6489}
    for (r, c), v in note.items():
        assert H[r, c] == pytest.approx(v, abs=5e-5), (r, c)
    # the defining recursion (5), independently re-applied
    beta = alg.nesterov_betas(30)
    H = alg.h_coefficients(29)
    for k in range(2, 29):
        assert H[k + 1, k] == pytest.approx(1 + beta[k + 1], abs=1e-15)
        assert H[k + 1, k - 1] == pytest.approx(beta[k + 1] * (H[k, k - 1] - 1), abs=1e-15)
        np.testing.assert_allclose(H[k + 1, : k - 1], beta[k + 1] * H[k, : k - 1], atol=1e-15)


@pytest.mark.parametrize("betas", [None, 0.7, [0.0, 0.1, 0.5, 0.2, 0.9, 0.3, 0.4, 0.6, 0.8]])
def test_h_are_increments_of_c(betas):
    H, C = alg.h_coefficients(8, betas), alg.cumulative_coefficients(8, betas)
    assert H.shape == C.shape == (9, 8)
    D = C[1:] - C[:-1]
    np.testing.assert_allclose(D, H[1:], atol=1e-14)


def test_c_table_values():
    C = alg.cumulative_coefficients(6)
    assert np.all(C[1:, 0] == 1.0)  # beta_1 = 0
    assert C[6, 3] == pytest.approx(2.055, abs=5e-4) and C[4, 2] == pytest.approx(1.665, abs=5e-4)


# ---------------------------------------------------------------------------- algorithms


def test_gd_hb_basic_and_hb0_is_gd():
    A, b, grad = _quadratic(5)
    x0 = np.zeros(5)
    xs = alg.gradient_descent(grad, x0, 300)
    assert xs.shape == (301, 5) and np.array_equal(xs[0], x0)
    np.testing.assert_allclose(xs[-1], np.linalg.solve(A, b), atol=1e-6)
    np.testing.assert_array_equal(alg.heavy_ball(grad, x0, 20, beta=0.0), xs[:21])
    hb = alg.heavy_ball(grad, x0, 3, beta=0.5)
    x1 = x0 - grad(x0)
    x2 = x1 - grad(x1) + 0.5 * (x1 - x0)
    np.testing.assert_allclose(hb[2], x2, atol=1e-15)


@pytest.mark.parametrize("betas", [None, 0.6])
@pytest.mark.parametrize("n", [1, 9, 64])
def test_single_sequence_equals_two_sequence(n, betas):
    """(4)-(5) equal (3): the y sequence of AGD, on a quadratic and on a nonlinear gradient."""
    _, _, grad_q = _quadratic(n, seed=n)
    rng = np.random.default_rng(1)
    M = rng.standard_normal((n, n)) / np.sqrt(n)
    grad_nl = lambda x: 0.5 * x + 0.3 * np.tanh(x @ M) @ M.T - 0.1  # noqa: E731
    for grad in (grad_q, grad_nl):
        y0 = rng.standard_normal(n)
        two = alg.nesterov(grad, y0, 60, betas)
        one = alg.nesterov_single_sequence(grad, y0, 60, betas)
        scale = np.abs(two.y).max()
        assert np.abs(one - two.y).max() <= 1e-12 * scale


def test_nesterov_sequences_shape_and_first_step():
    _, _, grad = _quadratic(4)
    x0 = np.ones(4)
    it = alg.nesterov(grad, x0, 10)
    assert it.x.shape == it.y.shape == (11, 4)
    np.testing.assert_array_equal(it.y[0], x0)
    np.testing.assert_allclose(it.x[1], x0 - grad(x0), atol=0)
    np.testing.assert_allclose(it.y[1], it.x[1], atol=0)  # beta_1 = 0
    beta2 = alg.nesterov_betas(3)[2]
    np.testing.assert_allclose(it.y[2], it.x[2] + beta2 * (it.x[2] - it.x[1]), atol=1e-15)


def test_admm_closed_form_solves_subproblems():
    """Each step of admm_linearized is the argmin of (6): check first-order conditions."""
    A, b, grad = _quadratic(6)
    rng = np.random.default_rng(3)
    x0, y0, lam0 = rng.standard_normal((3, 6))
    it = alg.admm_linearized(grad, x0, 5, y0=y0, lam0=lam0)
    for k in range(5):
        x, y, lam, x1, y1 = it.x[k], it.y[k], it.lam[k], it.x[k + 1], it.y[k + 1]
        np.testing.assert_allclose(grad(x) + (x1 - x) + lam + (x1 - y), 0, atol=1e-14)
        np.testing.assert_allclose(grad(y) + (y1 - y) - lam + (y1 - x1), 0, atol=1e-14)
        np.testing.assert_allclose(it.lam[k + 1], lam + x1 - y1, atol=1e-15)
    far = alg.admm_linearized(grad, np.zeros(6), 400)
    np.testing.assert_allclose(far.x[-1], np.linalg.solve(A, b), atol=1e-6)


def test_batched_torch_matches_numpy_rows():
    A, b, _ = _quadratic(7)
    At, bt = torch.from_numpy(A), torch.from_numpy(b)
    gt = lambda x: x @ At - bt  # noqa: E731
    gn = lambda x: x @ A - b  # noqa: E731
    X0 = torch.randn(4, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    runs = [
        (lambda g, x: alg.gradient_descent(g, x, 30)),
        (lambda g, x: alg.heavy_ball(g, x, 30, 0.4)),
        (lambda g, x: alg.nesterov(g, x, 30).y),
        (lambda g, x: alg.nesterov_single_sequence(g, x, 30)),
        (lambda g, x: alg.admm_linearized(g, x, 30).y),
    ]
    for run in runs:
        batched = run(gt, X0)
        assert isinstance(batched, torch.Tensor) and batched.shape == (31, 4, 7)
        assert batched.dtype == torch.float64
        for i in range(4):
            np.testing.assert_allclose(batched[:, i].numpy(), run(gn, X0[i].numpy()), atol=1e-13)


def test_bad_steps():
    with pytest.raises(ValueError, match="num_steps must be >= 0"):
        alg.gradient_descent(lambda x: x, np.zeros(2), -1)
    with pytest.raises(ValueError, match="need at least 5 momentum values"):
        alg.nesterov(lambda x: x, np.zeros(2), 4, betas=[0.1, 0.2])
