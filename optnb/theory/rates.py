"""Convergence rates of GD (1), HB (2) and AGD (3): the theory half of Appendix B (reconstructed),
"a faster optimizer may imply a better network".

On quadratics of condition number ``kappa = L / mu`` (``L = 1``, unit step as in the networks) and
on the Lemma 1 cost (8), seen layer by layer through the networks (7), (10) and (11). Theory
(Section 3): GD needs ``O(kappa log 1/eps)`` iterations, HB and AGD ``O(sqrt(kappa) log 1/eps)``.
Per-step contraction factors: GD ``1 - mu``; AGD with ``beta = (1 - sqrt mu)/(1 + sqrt mu)``
``1 - sqrt mu``; HB with the *unit step of (2)* and ``beta = (1 - sqrt mu)^2``, also
``1 - sqrt mu`` (every eigenvalue in ``[mu, 1]`` then gives complex roots of modulus
``sqrt(beta)``). The textbook HB tuning (step ``4/(1+sqrt mu)^2``) needs a non-unit step,
which a layer of (10) does not have; :func:`hb_unit_step_beta` is our choice.

The network half of the conjecture (GD-, HB- and AGD-inspired nets) is
:mod:`optnb.models.inspired`, trained by :mod:`optnb.train.inspired`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from optnb.theory import algorithms as alg
from optnb.theory.activations import cost_constants, get_activation
from optnb.theory.equivalence import Lemma1Cost, propagate_agd, propagate_hb, propagate_plain

__all__ = [
    "METHODS",
    "RATE_KAPPAS",
    "convergence_curves",
    "fit_power",
    "hb_unit_step_beta",
    "iterations_to_eps",
    "layer_error_curves",
    "local_curvature",
    "measured_rate",
    "momentum_rate",
    "quadratic_spectrum",
    "rate_table",
    "theory_rates",
]

METHODS = ("GD", "HB", "AGD")

#: condition numbers of the iterations-vs-kappa table, per profile.
RATE_KAPPAS: dict[str, tuple[float, ...]] = {
    "smoke": (10.0, 30.0, 100.0, 300.0, 1000.0),
    "quick": (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0),
    "paper": (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0),
}


def hb_unit_step_beta(mu: float) -> float:
    """Fastest HB momentum for the unit step of (2) on ``mu <= eig <= 1``: ``(1 - sqrt mu)^2``."""
    if not 0.0 < mu <= 1.0:
        raise ValueError(f"need 0 < mu <= 1, got {mu}")
    return float((1.0 - math.sqrt(mu)) ** 2)


def theory_rates(mu: float) -> dict[str, float]:
    """Per-iteration contraction of ``||x_k - x*||`` predicted for ``L = 1``, unit step."""
    return {"GD": 1.0 - mu, "HB": 1.0 - math.sqrt(mu), "AGD": 1.0 - math.sqrt(mu)}


def momentum_rate(method: str, beta: float, eigenvalues: Sequence[float]) -> float:
    """Exact asymptotic contraction of GD / HB / constant-beta AGD (unit step) on a quadratic.

    Per eigenvalue lam the error obeys a 2-term recurrence with characteristic polynomial
    ``r^2 - (1 + beta - lam) r + beta`` (HB, (2)) or ``r^2 - (1 + beta)(1 - lam) r + beta (1 - lam)``
    (AGD, (3)); GD is ``r = 1 - lam``. The rate is the largest root modulus over the spectrum.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    if method == "GD":
        return float(np.max(np.abs(1.0 - lam)))
    if method == "HB":
        b, c = -(1.0 + beta - lam), np.full_like(lam, beta)
    elif method == "AGD":
        b, c = -(1.0 + beta) * (1.0 - lam), beta * (1.0 - lam)
    else:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    disc = (b * b - 4.0 * c).astype(complex)
    roots = np.stack([(-b + np.sqrt(disc)) / 2.0, (-b - np.sqrt(disc)) / 2.0])
    return float(np.abs(roots).max())


def quadratic_spectrum(kappa: float, n: int = 32) -> np.ndarray:
    """Eigenvalues of a diagonal test quadratic: geometric from ``1/kappa`` to ``1``."""
    if kappa < 1.0:
        raise ValueError(f"kappa must be >= 1, got {kappa}")
    return np.geomspace(1.0 / kappa, 1.0, n)


def _methods(grad: Any, x0: Any, num_steps: int, mu: float, hb_beta: float | None,
             agd_beta: float | str | None) -> dict[str, np.ndarray]:
    hb_beta = hb_unit_step_beta(mu) if hb_beta is None else hb_beta
    if agd_beta is None or agd_beta == "strongly_convex":
        betas: Any = alg.strongly_convex_beta(mu)
    elif agd_beta == "nesterov":
        betas = None
    else:
        betas = float(agd_beta)
    return {
        "GD": alg.gradient_descent(grad, x0, num_steps),
        "HB": alg.heavy_ball(grad, x0, num_steps, hb_beta),
        "AGD": alg.nesterov(grad, x0, num_steps, betas).x,
    }


def convergence_curves(eigenvalues: np.ndarray, num_steps: int, hb_beta: float | None = None,
                       agd_beta: float | str | None = None,
                       x0: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Relative distance ``||x_k|| / ||x_0||`` (x* = 0) of GD, HB, AGD on ``f = x^T diag(eig) x/2``.

    ``hb_beta`` defaults to :func:`hb_unit_step_beta`, ``agd_beta`` to the strongly convex value;
    ``agd_beta="nesterov"`` uses the theta schedule of (3).
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    x0 = np.ones_like(lam) if x0 is None else np.asarray(x0, dtype=np.float64)
    xs = _methods(lambda x: lam * x, x0, num_steps, float(lam.min()), hb_beta, agd_beta)
    norm0 = np.linalg.norm(x0)
    return {k: np.linalg.norm(v, axis=-1) / norm0 for k, v in xs.items()}


def iterations_to_eps(errors: np.ndarray, eps: float) -> int | None:
    """First k with ``errors[j] <= eps`` for every ``j >= k`` (None if never)."""
    errors = np.asarray(errors)
    above = np.flatnonzero(errors > eps)
    if above.size == 0:
        return 0
    k = int(above[-1]) + 1
    return k if k < errors.size else None


def measured_rate(errors: np.ndarray, floor: float = 1e-13) -> float:
    """Per-step contraction factor: slope of a least-squares fit of ``log errors`` over the
    second half of the iterations above ``floor`` (transients and round-off excluded)."""
    e = np.asarray(errors, dtype=np.float64)
    idx = np.flatnonzero(e > floor)
    idx = idx[idx.size // 2:]
    if idx.size < 3:
        raise ValueError("too few iterations above the floor to fit a rate; run more steps")
    slope = np.polyfit(idx.astype(float), np.log(e[idx]), 1)[0]
    return float(np.exp(slope))


def fit_power(x: Sequence[float], y: Sequence[float]) -> float:
    """Exponent p of ``y ~ c x^p`` by least squares in log-log."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def rate_table(kappas: Sequence[float], eps: float = 1e-6, n: int = 32) -> list[dict[str, Any]]:
    """For each kappa: iterations to ``eps`` and measured vs predicted rates of GD, HB, AGD."""
    rows = []
    for kappa in kappas:
        lam = quadratic_spectrum(kappa, n)
        mu = float(lam.min())
        steps = int(math.ceil(3.0 * kappa * math.log(1.0 / eps))) + 50
        curves = convergence_curves(lam, steps)
        theory = theory_rates(mu)
        for m in METHODS:
            rows.append({
                "kappa": float(kappa), "method": m,
                "iterations": iterations_to_eps(curves[m], eps),
                "predicted_iterations": math.log(1.0 / eps) / -math.log(theory[m]),
                "rate": measured_rate(curves[m]), "predicted_rate": theory[m],
            })
    return rows


def layer_error_curves(W: Any, activation: str, z0: Any, num_layers: int,
                       beta: float | None = None,
                       agd_beta: float | str | None = None) -> dict[str, np.ndarray]:
    """``||z_k - z*||`` per layer of the networks (7), (10) and (11) for one SPD W (keys ``GD``,
    ``HB``, ``AGD``; ``z_star`` holds the fixed point itself).

    These are GD, HB and AGD on the Lemma 1 cost (8), seen in feature space. ``z*`` is the fixed
    point ``z = Phi(W z)`` (the minimiser of F), found by running HB to round-off. Needs a
    strongly convex f (``lam_max(W) sup Phi' < 1``); ``beta`` defaults to
    :func:`hb_unit_step_beta` of the cost's mu, ``agd_beta`` to the strongly convex value.
    """
    consts = cost_constants(activation, W)
    if not consts.strongly_convex:
        raise ValueError(f"f is not strongly convex for this W and {activation!r} "
                         f"(mu = {consts.mu:.3g}); scale W so that lam_max * sup Phi' < 1")
    mu = consts.mu
    cost = Lemma1Cost(W, activation)
    hb_beta = hb_unit_step_beta(mu) if beta is None else beta
    agd = alg.strongly_convex_beta(mu) if agd_beta in (None, "strongly_convex") else (
        None if agd_beta == "nesterov" else float(agd_beta))
    z0 = np.asarray(z0, dtype=np.float64)
    long = int(60 / math.sqrt(mu)) + 200
    z_star = propagate_hb(cost.layer, z0, long, hb_unit_step_beta(mu))[-1]
    curves = {
        "GD": propagate_plain(cost.layer, z0, num_layers),
        "HB": propagate_hb(cost.layer, z0, num_layers, hb_beta),
        "AGD": propagate_agd(cost.layer, z0, num_layers, agd),
    }
    out = {k: np.linalg.norm(v - z_star, axis=-1) for k, v in curves.items()}
    out["z_star"] = z_star
    return out


def local_curvature(W: Any, activation: str, z: Any) -> tuple[float, float]:
    """Extreme eigenvalues of the Hessian ``I - U diag(Phi'(W z)) U`` of (8) at ``x = U z``.

    At the fixed point this is the *local* (mu, L); the global constants of
    :func:`optnb.theory.activations.cost_constants` are worst cases over all x.
    """
    cost = Lemma1Cost(W, activation)
    d = get_activation(activation).dphi(cost.W @ np.asarray(z, dtype=np.float64))
    lam = np.linalg.eigvalsh(np.eye(cost.n) - cost.U @ np.diag(d) @ cost.U)
    return float(lam[0]), float(lam[-1])
