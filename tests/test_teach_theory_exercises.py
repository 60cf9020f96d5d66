"""The exercises of notebooks 01-03 (optnb.teach.forward_pass, .momentum, .activation_costs):
a reference solution is correct, nbgrader's stub is "not done", a crash is named, and each planted
typical mistake gets its own hint."""

from __future__ import annotations

import numpy as np
import pytest

from optnb import teach
from optnb.theory import Lemma1Cost, random_spd


def evaluate(exercise_id: str, fn):
    return teach.evaluate(teach.get(exercise_id), fn)


# --------------------------------------------------------------------------------------------
# reference solutions (written independently of the package's implementation)
# --------------------------------------------------------------------------------------------


def sqrt_spd(W):
    lam, Q = np.linalg.eigh(W)
    return (Q * np.sqrt(lam)) @ Q.T


def cost_f(x, U, act):
    return 0.5 * x @ x - np.sum(act.psi(U @ x))


def grad_F(z, W, act):
    return W @ z - W @ act.phi(W @ z)


def gd_iterates(grad, x0, num_steps):
    xs = [x0]
    for _ in range(num_steps):
        xs.append(xs[-1] - grad(xs[-1]))
    return np.stack(xs)


def hb_network(layer, z0, num_layers, beta, *, prev0=None, sign=1.0, inside=False):
    zs, prev, z = [z0], z0 if prev0 is None else prev0, z0
    for _ in range(num_layers):
        step = layer(z + sign * beta * (z - prev)) if inside else layer(z) + sign * beta * (z - prev)
        prev, z = z, step
        zs.append(z)
    return np.stack(zs)


def nesterov_beta(num, shift=0):
    thetas, t = [], 1.0
    for k in range(num + 1):
        if k > 0:
            t = (np.sqrt(t**4 + 4 * t**2) - t**2) / 2
        thetas.append(t)
    prev = [1.0] + thetas[:-1]
    betas = [thetas[k] * (1 - prev[k]) / prev[k] for k in range(num + 1)]
    return np.array(betas[shift:num + shift])


def h_row_four(beta):
    b1, b2, b3, b4 = beta[1:5]
    return np.array([b4 * b3 * b2 * b1, b4 * b3 * b2, b4 * b3, 1 + b4])


def agd_network(layer, z0, betas, *, offset=0):
    zs, prev, z = [z0], z0, z0
    for k in range(len(betas)):
        b = betas[k - offset] if k - offset >= 0 else 0.0
        prev, z = z, layer(z + b * (z - prev))
        zs.append(z)
    return np.stack(zs)


def psi_tanh(t):
    a = np.abs(t)
    return a + np.log1p(np.exp(-2 * a)) - np.log(2) + 3.25  # any constant is fine


def hessian_f(x, U, act):
    return np.eye(len(x)) - U @ np.diag(act.dphi(U @ x)) @ U


def lipschitz_and_mu(a, b, W):
    lam = np.linalg.eigvalsh(W)
    lower = min(1 - b * lam[0], 1 - b * lam[-1])
    upper = max(1 - a * lam[0], 1 - a * lam[-1])
    return max(abs(lower), abs(upper)), lower


SOLUTIONS = {"01.1": sqrt_spd, "01.2": cost_f, "01.3": grad_F, "01.4": gd_iterates, "02.1": hb_network,
             "02.2": nesterov_beta, "02.3": h_row_four, "02.4": agd_network, "03.1": psi_tanh,
             "03.2": hessian_f, "03.3": lipschitz_and_mu}


def test_the_three_notebooks_have_these_exercises_in_order():
    ids = [e.id for stem in ("01_forward_pass_is_gradient_descent", "02_momentum_networks",
                             "03_activation_cost_functions") for e in teach.for_notebook(stem)]
    assert ids == list(SOLUTIONS)
    for exercise_id in ids:
        e = teach.get(exercise_id)
        assert 1 <= e.minutes <= 20 and 1 <= e.points <= 3 and e.hint, exercise_id


@pytest.mark.parametrize("exercise_id", list(SOLUTIONS))
def test_reference_solution_is_correct(exercise_id):
    outcome = evaluate(exercise_id, SOLUTIONS[exercise_id])
    assert outcome.status == "correct", outcome.message


@pytest.mark.parametrize("exercise_id", list(SOLUTIONS))
def test_stub_is_not_done_and_a_crash_is_named(exercise_id):
    def stub(*args):
        raise NotImplementedError()

    def crash(*args):
        raise IndexError("index 7 is out of bounds")

    assert evaluate(exercise_id, stub).status == "not done"
    outcome = evaluate(exercise_id, crash)
    assert outcome.status == "wrong"
    assert "Calling your code raised IndexError: index 7 is out of bounds" in outcome.message
    assert "hint:" in outcome.message


# --------------------------------------------------------------------------------------------
# planted mistakes: (exercise, wrong answer, a phrase its specific hint must contain)
# --------------------------------------------------------------------------------------------


def _sqrt(W):
    lam, Q = np.linalg.eigh(W)
    return (Q * np.sqrt(lam)) @ Q.T


def _in_place_gd(grad, x0, num_steps):
    x, xs = x0, [x0]
    for _ in range(num_steps):
        x -= grad(x)
        xs.append(x)
    return np.stack(xs)


def _agd_outside(layer, z0, betas):
    zs, prev, z = [z0], z0, z0
    for b in betas:
        prev, z = z, layer(z) + b * (z - prev)
        zs.append(z)
    return np.stack(zs)


def _naive_log_cosh(t):
    with np.errstate(over="ignore"):
        return np.log(np.cosh(t))


def _h_row_no_minus_one(beta):
    b1, b2, b3, b4 = beta[1:5]
    return np.array([b4 * b3 * b2 * (1 + b1), b4 * b3 * (1 + b2), b4 * (1 + b3), 1 + b4])


MISTAKES = [
    ("01.1", lambda W: np.linalg.cholesky(W), "not from a Cholesky factor"),
    ("01.2", lambda x, U, act: 0.5 * x @ x - np.sum(act.phi(U @ x)), "not Phi itself"),
    ("01.2", lambda x, U, act: x @ x - np.sum(act.psi(U @ x)), "you lost the 1/2"),
    ("01.2", lambda x, U, act: 0.5 * x @ x + np.sum(act.psi(U @ x)), "check the sign"),
    ("01.3", lambda z, W, act: -grad_F(z, W, act), "the sign is flipped"),
    ("01.3", lambda z, W, act: z - act.phi(W @ z), "you dropped the chain-rule factor"),
    ("01.3", lambda z, W, act: _sqrt(W) @ (z - act.phi(W @ z)), "that is grad f at x = Uz"),
    ("01.3", lambda z, W, act: W @ z - act.phi(W @ z), "both terms get the factor W"),
    ("01.3", lambda z, W, act: W @ (z - act.phi(z)), "not on z"),
    ("01.4", lambda grad, x0, n: gd_iterates(grad, x0, n)[1:], "row 0 is x_0 itself"),
    ("01.4", lambda grad, x0, n: gd_iterates(grad, x0, n + 1), "one step too many"),
    ("01.4", lambda grad, x0, n: gd_iterates(lambda x: -grad(x), x0, n), "*against* the gradient"),
    ("01.4", _in_place_gd, "`x -= ...` changes the array you already stored"),
    ("02.1", lambda layer, z0, K, beta: hb_network(layer, z0, K, 0.0), "your momentum term is zero"),
    ("02.1", lambda layer, z0, K, beta: hb_network(layer, z0, K, beta, sign=-1.0), "new minus old"),
    ("02.1", lambda layer, z0, K, beta: hb_network(layer, z0, K, beta, prev0=0 * z0), "not zero"),
    ("02.1", lambda layer, z0, K, beta: hb_network(layer, z0, K, beta, inside=True), "the AGD network (11)"),
    ("02.2", lambda num: nesterov_beta(num, shift=1), "your entry k is beta_{k+1}"),
    ("02.2", lambda num: np.concatenate([[0.0], nesterov_beta(num)])[:num], "your entry k is beta_{k-1}"),
    ("02.2", lambda num: (np.arange(num) - 1.0) / (np.arange(num) + 2.0), "popular approximation"),
    ("02.3", lambda beta: h_row_four(np.concatenate([[0.0], beta[:4]])), "off by one in k"),
    ("02.3", _h_row_no_minus_one, "the '- 1' makes h_{4,2}"),
    ("02.3", lambda beta: h_row_four(beta)[::-1], "j = 0 first"),
    ("02.4", _agd_outside, "the extrapolation is *inside* the layer"),
    ("02.4", lambda layer, z0, betas: agd_network(layer, z0, betas, offset=1), "not betas[k - 1]"),
    ("02.4", lambda layer, z0, betas: agd_network(layer, z0, betas)[1:], "K layers give K + 1 rows"),
    ("03.1", _naive_log_cosh, "cosh(t) overflows beyond |t| = 710"),
    ("03.1", lambda t: -psi_tanh(t), "the sign is flipped"),
    ("03.1", lambda t: 1 - np.tanh(t) ** 2, "is Phi' (the derivative)"),
    ("03.1", lambda t: t * np.tanh(t), "integrate instead"),
    ("03.1", lambda t: psi_tanh(t) + 0.1 * t**2, "differs from log cosh t by a non-constant"),
    ("03.2", lambda x, U, act: -hessian_f(x, U, act), "the sign is flipped"),
    ("03.2", lambda x, U, act: np.eye(len(x)) - U @ np.diag(act.phi(U @ x)) @ U, "not Phi"),
    ("03.2", lambda x, U, act: np.eye(len(x)) - np.diag(act.dphi(U @ x)) @ U @ U, "U D U is not D W"),
    ("03.3", lambda a, b, W: lipschitz_and_mu(a, b, W)[::-1], "in the order (L, mu)"),
    ("03.3", lambda a, b, W: lipschitz_and_mu(b, a, W), "you swapped a and b"),
    ("03.3", lambda a, b, W: (max(1 - a * np.linalg.eigvalsh(W)), 1 - b * max(np.linalg.eigvalsh(W))),
     "L = max(|lower|, |upper|)"),
    ("03.3", lambda a, b, W: (max(abs(1 - b * max(np.linalg.eigvalsh(W))), 1 - a * min(np.linalg.eigvalsh(W))),
                              1 - b * max(np.linalg.eigvalsh(W))), "when a < 0 (SiLU)"),
]


@pytest.mark.parametrize(("exercise_id", "answer", "phrase"), MISTAKES,
                         ids=[f"{m[0]}-{m[2][:24]}" for m in MISTAKES])
def test_a_typical_mistake_gets_its_hint(exercise_id, answer, phrase):
    outcome = evaluate(exercise_id, answer)
    assert outcome.status == "wrong"
    assert phrase in outcome.message, outcome.message
    assert "expected:" in outcome.message or "hint:" in outcome.message


def test_wrong_feedback_says_expected_found_and_hint():
    message = evaluate("02.2", lambda num: nesterov_beta(num, shift=1)).message
    assert "nesterov_beta(13) is off by up to" in message
    assert "expected: [0.       0.       0.281754" in message
    assert "found:    [0.       0.281754" in message
    assert message.splitlines()[-1].startswith("  hint:     off by one")


def test_unspecific_wrong_answers_get_the_generic_hint():
    outcome = evaluate("01.3", lambda z, W, act: 0.9 * grad_F(z, W, act))
    assert outcome.status == "wrong" and "simplify with U^T U = U U = W" in outcome.message
    wrong_shape = evaluate("03.3", lambda a, b, W: (1.0, 2.0, 3.0))
    assert wrong_shape.status == "wrong" and "return the pair (L, mu)" in wrong_shape.message


def test_the_references_of_01_3_and_03_2_are_finite_differences():
    """grad F(z) = W (z - Phi(Wz)) against central differences of F, the Hessian against those of (9)."""
    cost = Lemma1Cost(random_spd(3, (0.2, 1.6), rng=2), "tanh")
    z, h = np.array([0.4, -0.9, 1.3]), 1e-6
    fd = np.array([(cost.F(z + h * e) - cost.F(z - h * e)) / (2 * h) for e in np.eye(3)])
    np.testing.assert_allclose(grad_F(z, cost.W, cost.activation), fd, atol=1e-8)
    assert evaluate("01.3", grad_F).status == "correct"


def test_the_hessian_checked_is_the_finite_difference_jacobian_of_the_gradient():
    """03.2's reference (I - U D U) against central differences of (9), independently."""
    cost = Lemma1Cost(random_spd(4, (0.2, 1.6), rng=1), "softplus")
    x, h = np.array([0.3, -1.2, 0.8, 2.0]), 1e-6
    fd = np.array([(cost.grad(x + h * e) - cost.grad(x - h * e)) / (2 * h) for e in np.eye(4)]).T
    np.testing.assert_allclose(hessian_f(x, cost.U, cost.activation), fd, atol=1e-8)
