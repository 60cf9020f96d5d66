"""Exercises of notebook 03 (activations, their cost functions Psi and the curvature of (8)).

Conventions: float64 numpy arrays; vectors have shape ``(n,)``; ``act`` is an activation of
:data:`optnb.theory.ACTIVATIONS` (``act.phi`` is Phi, ``act.dphi`` its derivative Phi').
"""

from __future__ import annotations

import numpy as np

from optnb.teach.feedback import Exercise, Wrong, as_float64, expect_close_or_mistake
from optnb.theory.activations import cost_constants, get_activation
from optnb.theory.equivalence import Lemma1Cost
from optnb.theory.spd import random_spd, spd_2d

NOTEBOOK = "03_activation_cost_functions"

_STABLE_TANH_PSI = "log cosh t = |t| + log1p(exp(-2|t|)) - log 2 never overflows"


def check_psi_tanh(psi_tanh) -> str:
    """03.1: ``psi_tanh(t)`` is a cost of tanh (Psi' = tanh, up to a constant), finite for any t."""
    tanh = get_activation("tanh")
    t = np.concatenate([np.linspace(-8.0, 8.0, 33), [-800.0, -60.0, 60.0, 800.0]])
    zero = int(np.flatnonzero(t == 0.0)[0])
    found = as_float64(psi_tanh(t.copy()), "psi_tanh(t)")
    if found.shape != t.shape:
        raise Wrong("psi_tanh(t) has the wrong shape.", expected=f"shape {t.shape}", found=f"shape {found.shape}",
                    hint="work element-wise on the array t (np.log, np.abs, ... , not math.*)")
    bad = ~np.isfinite(found)
    if bad.any():
        where = t[bad]
        if np.all(np.abs(where) >= 60):
            raise Wrong(f"psi_tanh is not finite at t = {where.tolist()} (large |t|).",
                        hint=f"cosh(t) overflows beyond |t| = 710: {_STABLE_TANH_PSI}")
        raise Wrong(f"psi_tanh is not finite at t = {where.tolist()}.", hint="Psi(t) is finite for every real t")
    expected = tanh.psi(t)
    shifted = found - found[zero]  # Psi is defined up to a constant: compare Psi(t) - Psi(0)
    moderate = np.abs(t) <= 8
    slope = _slope(psi_tanh, 1.5)
    mistakes = [(-expected, "the sign is flipped: (log cosh t)' = tanh t, so Psi = +log cosh t"),
                (-np.tanh(t) ** 2, "1 - tanh^2 t is Phi' (the derivative); Psi is an *antiderivative* of tanh"),
                (t * np.tanh(t), "t tanh t differentiates to tanh t + t (1 - tanh^2 t): integrate instead; "
                                 "tanh = sinh/cosh = (cosh)'/cosh")]
    if np.all(np.abs(shifted[moderate] - expected[moderate]) <= 1e-10 * (1 + np.abs(expected[moderate]))):
        hint = f"right for |t| <= 8, wrong for large |t|: {_STABLE_TANH_PSI}"
    else:
        hint = (f"Psi is only fixed up to a constant, but yours differs from log cosh t by a non-constant: "
                f"at t = 1.5 its slope is {slope:.6g}, and Phi(1.5) = tanh(1.5) = {np.tanh(1.5):.6g}")
    expect_close_or_mistake(shifted, expected, "psi_tanh(t) - psi_tanh(0)", mistakes, atol=1e-10, rtol=1e-10,
                            hint=hint)
    error = abs(slope - np.tanh(1.5))
    return (f"Psi(t) - Psi(0) = log cosh t to 1e-10 for |t| <= 800 (finite at t = +-800), and a central difference "
            f"of your Psi at t = 1.5 is tanh(1.5) to {error:.0e}: Psi' = Phi.")


def _slope(psi, t: float, h: float = 1e-5) -> float:
    """Central difference of the student's Psi at ``t``."""
    values = as_float64(psi(np.array([t - h, t + h])), "psi_tanh(t)").reshape(-1)
    return float((values[-1] - values[0]) / (2 * h))


def check_hessian(hessian_f) -> str:
    """03.2: ``hessian_f(x, U, act)`` is the Hessian ``I - U diag(Phi'(Ux)) U`` of (8)."""
    rng = np.random.default_rng(13)
    cases = []
    for n, name, zero in ((3, "tanh", False), (4, "sigmoid", False), (2, "softplus", False), (1, "relu", False),
                          (3, "tanh", True)):
        cost = Lemma1Cost(random_spd(n, (0.2, 1.6), rng=rng), name)
        x = np.zeros(n) if zero else rng.standard_normal(n)
        cases.append((f"n={n}, act={name}" + (", x=0" if zero else ""), cost, x))
    for what, cost, x in cases:
        U, act, identity = cost.U, cost.activation, np.eye(cost.n)
        Ux = U @ x
        D = np.diag(act.dphi(Ux))
        expected = identity - U @ D @ U
        found = hessian_f(x.copy(), U.copy(), act)
        expect_close_or_mistake(found, expected, f"the Hessian for {what}", [
            (-expected, "the sign is flipped: the Hessian of x @ x / 2 is +I, and the Psi term subtracts U D U"),
            (identity - U @ np.diag(act.phi(Ux)) @ U, "D holds Phi'((Ux)_i), the derivative (act.dphi), not Phi"),
            (-U @ D @ U, "the Hessian of ||x||^2 / 2 is the identity: I - U D U"),
            (identity - U @ np.diag(act.dphi(x)) @ U, "Phi' is evaluated at U x, not at x"),
            (identity - D @ cost.W, "U D U is not D W: D sits between the two factors U"),
            (identity - cost.W @ D, "U D U is not W D: D sits between the two factors U"),
        ], atol=1e-10, rtol=1e-10, hint="differentiate (9), x - U Phi(Ux): the Jacobian of Phi(Ux) is D U")
    return (f"Hess f(x) = I - U diag(Phi'(Ux)) U is right to 1e-10 on {len(cases)} cases (n = 1 to 4, x = 0 among "
            "them); it is symmetric, as the Hessian of a cost must be.")


def _constants(a: float, b: float, lam: np.ndarray) -> tuple[float, float, float]:
    """Hessian bounds for ``a <= Phi' <= b`` and W's eigenvalues ``lam``: (L, mu, upper)."""
    lower, upper = float(np.min(1 - b * lam)), float(np.max(1 - a * lam))
    return max(abs(lower), abs(upper)), lower, upper


def check_constants(lipschitz_and_mu) -> str:
    """03.3: ``lipschitz_and_mu(a, b, W)`` is (L, mu) of (8) for ``a <= Phi' <= b``."""
    cases = [("tanh", spd_2d(0.3, 0.9, 30.0)), ("relu", spd_2d(0.3, 12.0, 10.0)), ("silu", spd_2d(0.3, 1.5, 60.0)),
             ("sigmoid", spd_2d(2.0, 3.0, 45.0)), ("identity", spd_2d(0.5, 0.5)),
             ("leaky_relu", random_spd(3, (0.2, 4.0), rng=3))]
    for name, W in cases:
        act = get_activation(name)
        a, b = act.inf_dphi, act.sup_dphi
        lam = np.linalg.eigvalsh(W)
        c = cost_constants(name, W)
        found = as_float64(lipschitz_and_mu(a, b, W.copy()), "(L, mu)")
        if found.shape != (2,):
            raise Wrong(f"lipschitz_and_mu should return the pair (L, mu), got shape {found.shape}.",
                        hint="return L, mu")
        swapped_L, swapped_mu, _ = _constants(b, a, lam)
        _, _, upper = _constants(a, b, lam)
        lower_min = 1 - b * lam.min()
        upper_min = 1 - a * lam.min()
        expect_close_or_mistake(found, [c.L, c.mu], f"(L, mu) for {name} (a={a:.4g}, b={b:.4g}), "
                                                     f"eigenvalues of W {np.round(lam, 4).tolist()}", [
            ([c.mu, c.L], "return them in the order (L, mu)"),
            ([swapped_L, swapped_mu], "a = inf Phi' bounds the Hessian I - U D U from *above* (I - aW) and "
                                      "b = sup Phi' from below (I - bW): you swapped a and b"),
            ([upper, c.mu], "L = max(|lower|, |upper|): when 1 - b lam_max < -1 the lower bound is the larger "
                            "one in absolute value, and f is not convex"),
            ([max(abs(c.mu), abs(upper_min)), c.mu], "upper = max over lam of 1 - a lam: when a < 0 (SiLU) the "
                                                     "maximum is at lam_max, not lam_min"),
            ([max(abs(lower_min), abs(upper)), lower_min], "mu = min over lam of 1 - b lam, which is at lam_max "
                                                           "(b > 0): 1 - b lam_max"),
        ], atol=1e-12, rtol=1e-12,
            hint="lower = min(1 - b lam), upper = max(1 - a lam) over W's extreme eigenvalues; "
                 "L = max(|lower|, |upper|), mu = lower")
    return ("(L, mu) match cost_constants on 6 cases: strongly convex (tanh, sigmoid, identity with W = I/2), "
            "not convex (ReLU with lam = 12, leaky ReLU) and SiLU, whose Hessian can exceed I.")


EXERCISES: tuple[Exercise, ...] = (
    Exercise("03.1", NOTEBOOK, "the cost function Psi of tanh", "derivation", minutes=12, points=2,
             check=check_psi_tanh, hint="integrate tanh t = sinh t / cosh t; mind overflow for large |t|"),
    Exercise("03.2", NOTEBOOK, "the Hessian of the cost (8)", "quick check", minutes=6, points=1,
             check=check_hessian, hint="Hess f(x) = I - U @ np.diag(act.dphi(U @ x)) @ U, shape (n, n)"),
    Exercise("03.3", NOTEBOOK, "L and mu of (8): is f convex?", "computation", minutes=10, points=2,
             check=check_constants,
             hint="eigenvalues with np.linalg.eigvalsh(W); the bounds of Section 3 of the notebook"),
)
