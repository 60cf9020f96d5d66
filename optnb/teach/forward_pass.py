"""Exercises of notebook 01 (Lemma 1: a forward pass is gradient descent, eqs. (1), (7)-(9)).

Conventions of every exercise here: vectors are 1-D float64 numpy arrays of shape ``(n,)``, so
``U x`` is ``U @ x``; ``act`` is an activation of :data:`optnb.theory.ACTIVATIONS` (``act.phi``
is Phi, ``act.psi`` its cost Psi, both element-wise).
"""

from __future__ import annotations

import numpy as np

from optnb.teach.feedback import Exercise, Wrong, as_float64, expect_close, expect_close_or_mistake
from optnb.theory.algorithms import gradient_descent
from optnb.theory.equivalence import Lemma1Cost, propagate_plain
from optnb.theory.spd import random_spd

NOTEBOOK = "01_forward_pass_is_gradient_descent"



def _costs() -> list[tuple[str, Lemma1Cost, np.ndarray]]:
    """Test cases: (description, Lemma 1 cost, a vector); n = 1 and the zero vector are among them."""
    cases = []
    for n, name, seed, zero in ((4, "tanh", 0, False), (6, "softplus", 1, False), (1, "sigmoid", 2, False),
                                (5, "relu", 3, False), (3, "sigmoid", 4, True)):
        rng = np.random.default_rng(seed)
        cost = Lemma1Cost(random_spd(n, (0.2, 1.8), rng=rng), name)
        x = np.zeros(n) if zero else 1.5 * rng.standard_normal(n)
        cases.append((f"n={n}, act={name}" + (", at 0" if zero else ""), cost, x))
    return cases


def check_sqrt_spd(sqrt_spd) -> str:
    """01.1: ``sqrt_spd(W)`` is the symmetric positive definite U with ``U @ U = W`` (Lemma 1)."""
    for n, seed in ((2, 0), (5, 1), (12, 2)):
        W = random_spd(n, (0.05, 2.0), rng=seed)
        U = as_float64(sqrt_spd(W.copy()), f"sqrt_spd(W) for a {n}x{n} W")
        if U.shape != W.shape:
            raise Wrong(f"sqrt_spd(W) for a {n}x{n} W has the wrong shape.", expected=W.shape, found=U.shape)
        asymmetry = float(np.abs(U - U.T).max())
        if asymmetry > 1e-10:
            raise Wrong(f"U is not symmetric for a {n}x{n} W: max |U - U^T| = {asymmetry:.3g} (tolerance 1e-10).",
                        hint="Lemma 1 needs the symmetric root: build it from the eigen-decomposition "
                             "W = Q diag(lam) Q^T, not from a Cholesky factor")
        expect_close(U @ U, W, f"U @ U for a {n}x{n} W", atol=1e-10,
                     hint="U = Q diag(sqrt(lam)) Q^T squares to W; np.linalg.eigh gives Q and lam")
        smallest = float(np.linalg.eigvalsh(0.5 * (U + U.T)).min())
        if smallest <= 0:
            raise Wrong(f"U squares to W but is not positive definite (smallest eigenvalue {smallest:.3g}).",
                        hint="take the positive square root of every eigenvalue: Lemma 1 needs U invertible "
                             "and the map x = U z one-to-one with the positive root")
        expect_close(U, Lemma1Cost(W, "relu").U, f"U for a {n}x{n} W", atol=1e-9)
    return "U is symmetric, positive definite and U @ U = W to 1e-10 for 2x2, 5x5 and 12x12 W."


def check_cost(cost_f) -> str:
    """01.2: ``cost_f(x, U, act)`` is f(x) of (8)."""
    cases = _costs()
    for what, cost, x in cases:
        U, act = cost.U, cost.activation
        Ux = U @ x
        found = cost_f(x.copy(), U.copy(), act)
        half = 0.5 * x @ x
        expect_close_or_mistake(found, cost.f(x), f"f(x) for {what}", [
            (half - act.phi(Ux).sum(), "(8) subtracts the cost Psi of the activation (act.psi), not Phi itself"),
            (x @ x - act.psi(Ux).sum(), "the first term of (8) is ||x||^2 / 2: you lost the 1/2"),
            (half + act.psi(Ux).sum(), "(8) subtracts sum_i Psi((Ux)_i): check the sign"),
            (0.5 * np.sqrt(x @ x) - act.psi(Ux).sum(), "the first term is half the *squared* norm, x @ x / 2"),
            (half - act.psi(U @ Ux).sum(), "Psi is applied to U x, not to W x = U (U x)"),
        ], atol=1e-10, rtol=1e-10,
            hint="f(x) = x @ x / 2 - sum(act.psi(U @ x)): one number")
    return f"f(x) of (8) is right to 1e-10 on {len(cases)} cases (n = 1 to 6, x = 0 among them, 4 activations)."


def check_grad_F(grad_F) -> str:
    """01.3: ``grad_F(z, W, act)`` is the gradient of F(z) = f(Uz): ``U grad f(Uz) = W (z - Phi(Wz))``."""
    cases = _costs()
    for what, cost, z in cases:
        W, act = cost.W, cost.activation
        layer = act.phi(W @ z)
        found = grad_F(z.copy(), W.copy(), act)
        expect_close_or_mistake(found, cost.U @ cost.grad(cost.to_x(z)), f"grad F(z) for {what}", [
            (z - layer, "you dropped the chain-rule factor: grad F(z) = U^T grad f(Uz), and U^T U = W "
                        "multiplies *both* terms"),
            (cost.U @ z - cost.U @ layer, "that is grad f at x = Uz, (9); the chain rule for F(z) = f(Uz) "
                                          "multiplies it by U^T = U once more"),
            (W @ (layer - z), "the sign is flipped: F has +||Uz||^2/2, whose gradient is +W z"),
            (W @ z - layer, "both terms get the factor W from the chain rule: W z - W Phi(Wz)"),
            (W @ (z - act.phi(z)), "Phi acts on U (U z) = W z, not on z"),
        ], atol=1e-10, rtol=1e-10, hint="chain rule: grad F(z) = U^T grad f(U z) with grad f from (9); "
                                        "simplify with U^T U = U U = W")
    return (f"grad F(z) = W (z - Phi(Wz)) is right to 1e-10 on {len(cases)} cases (n = 1 to 6, z = 0 among them). "
            "So z - W^-1 grad F(z) = Phi(Wz): a layer is a gradient step on F preconditioned by W^-1.")


def check_gd_iterates(gd_iterates) -> str:
    """01.4: ``gd_iterates(grad, x0, num_steps)`` stacks the GD iterates (1) x_0..x_K; on f of (8)
    they are the layer outputs of (7) after ``z = U^{-1} x``."""
    rng = np.random.default_rng(7)
    A = random_spd(3, (0.2, 1.5), rng=rng)
    b = rng.standard_normal(3)
    tanh_cost = Lemma1Cost(random_spd(5, (0.1, 1.0), rng=rng), "tanh")
    relu_cost = Lemma1Cost(random_spd(4, (0.1, 1.0), rng=rng), "relu")
    cases = [("a quadratic, grad(x) = A x - b", lambda x: A @ x - b, rng.standard_normal(3), 6, None),
             ("f of (8), tanh", tanh_cost.grad, tanh_cost.to_x(rng.standard_normal(5)), 30, tanh_cost),
             ("f of (8), relu", relu_cost.grad, relu_cost.to_x(rng.standard_normal(4)), 1, relu_cost),
             ("a quadratic, 0 steps", lambda x: A @ x - b, rng.standard_normal(3), 0, None)]
    for what, grad, x0, steps, cost in cases:
        xs = gradient_descent(grad, x0, steps)
        found = gd_iterates(grad, x0.copy(), steps)
        ascent = gradient_descent(lambda x, g=grad: -g(x), x0, steps)
        expect_close_or_mistake(found, xs, f"the iterates for {what}, {steps} steps", [
            (xs[1:], "row 0 is x_0 itself: num_steps steps give num_steps + 1 rows x_0 .. x_K"),
            (gradient_descent(grad, x0, steps + 1), "one step too many: num_steps steps give rows x_0 .. x_K, "
                                                    "K = num_steps"),
            (gradient_descent(grad, x0, max(steps - 1, 0)), "one step too few: K = num_steps steps after x_0"),
            (ascent, "(1) steps *against* the gradient: x_{k+1} = x_k - grad(x_k)"),
            (np.tile(xs[-1], (steps + 1, 1)), "every row is the last iterate: `x -= ...` changes the array you "
                                              "already stored; write x = x - grad(x) or store x.copy()"),
        ], atol=1e-12, rtol=1e-10, hint="x_{k+1} = x_k - grad(x_k) (unit step); return np.stack of x_0 .. x_K")
        if cost is not None:  # Lemma 1: mapped back, these are the layers of (7)
            layers = propagate_plain(cost.layer, cost.to_z(x0), steps)
            expect_close(cost.to_z(as_float64(found, "the iterates")), layers,
                         f"U^-1 x_k against the layers Phi(W z_k) for {what}", atol=1e-12, rtol=1e-10)
    return ("GD (1) is right on a quadratic and on f of (8) (0 to 30 steps); mapped back with z = U^-1 x, your "
            "iterates on f are the layer outputs Phi(W z_k) of (7) to 1e-12: Lemma 1.")


EXERCISES: tuple[Exercise, ...] = (
    Exercise("01.1", NOTEBOOK, "the symmetric square root U of W", "quick check", minutes=5, points=1,
             check=check_sqrt_spd, hint="np.linalg.eigh(W) returns the eigenvalues and an orthonormal Q"),
    Exercise("01.2", NOTEBOOK, "the cost f of (8)", "quick check", minutes=5, points=1,
             check=check_cost, hint="f(x) = x @ x / 2 - sum(act.psi(U @ x))"),
    Exercise("01.3", NOTEBOOK, "the gradient of F(z) = f(Uz)", "derivation", minutes=10, points=2,
             check=check_grad_F, hint="grad F(z) = U^T grad f(Uz) (chain rule), with grad f from (9)"),
    Exercise("01.4", NOTEBOOK, "gradient descent (1), mapped back, is the network (7)", "computation",
             minutes=10, points=2, check=check_gd_iterates,
             hint="x_{k+1} = x_k - grad(x_k); collect x_0 .. x_K and return np.stack(...)"),
)
