"""Lemma 1 and Section 5: network propagations (7), (10)-(13) versus optimizers on the cost (8).

For a symmetric positive definite ``W = U^2`` and an activation Phi with cost Psi (Psi' = Phi),
``f(x) = ||x||^2/2 - sum_i Psi((U x)_i)`` (8) has gradient (9) ``x - U Phi(U x)``. Running an
optimizer on f from ``x_0 = U z_0`` and mapping back with ``z = U^{-1} x`` reproduces the
network. Each ``*_equivalence`` function runs both sides and returns the largest deviation.

States are vectors of shape ``(n,)`` or row batches ``(B, n)``; numpy or torch (float64).
For a row batch the layer ``Phi(W z)`` is ``Phi(z @ W.T)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optnb.theory import algorithms as alg
from optnb.theory.activations import Activation, get_activation
from optnb.theory.spd import NotPositiveDefiniteError, check_spd

__all__ = [
    "Equivalence",
    "Lemma1Cost",
    "admm_equivalence",
    "agd_dense_equivalence",
    "agd_equivalence",
    "all_equivalences",
    "descent_violation",
    "gd_equivalence",
    "hb_equivalence",
    "propagate_admm",
    "propagate_agd",
    "propagate_agd_dense",
    "propagate_hb",
    "propagate_plain",
    "step_field_asymmetry",
]

Layer = Callable[[Any], Any]


def _like(M: np.ndarray, x: Any) -> Any:
    """``M`` as the same kind of array as ``x`` (torch tensor on x's device/dtype, else numpy)."""
    if type(x).__module__.split(".")[0] == "torch":
        import torch

        return torch.as_tensor(M, dtype=x.dtype, device=x.device)
    return M


class Lemma1Cost:
    """The cost f of (8) for a symmetric positive definite W, with ``U = W^{1/2}`` symmetric."""

    def __init__(self, W: Any, activation: str | Activation) -> None:
        self.W = check_spd(W)
        self.activation = get_activation(activation)
        lam, Q = np.linalg.eigh(self.W)
        self.eigenvalues = lam
        U, U_inv = (Q * np.sqrt(lam)) @ Q.T, (Q / np.sqrt(lam)) @ Q.T
        self.U = 0.5 * (U + U.T)  # exactly symmetric, as (9) requires
        self.U_inv = 0.5 * (U_inv + U_inv.T)

    @property
    def n(self) -> int:
        return self.W.shape[0]

    def to_x(self, z: Any) -> Any:
        """``x = U z`` (row batches allowed; U is symmetric)."""
        return z @ _like(self.U, z)

    def to_z(self, x: Any) -> Any:
        """``z = U^{-1} x``."""
        return x @ _like(self.U_inv, x)

    def layer(self, z: Any) -> Any:
        """One layer of (7): ``Phi(W z)``."""
        return self.activation.phi(z @ _like(self.W, z))

    def f(self, x: Any) -> Any:
        """The cost (8): ``||x||^2/2 - sum_i Psi((U x)_i)`` (summed over the last axis)."""
        return 0.5 * (x * x).sum(-1) - self.activation.psi(x @ _like(self.U, x)).sum(-1)

    def F(self, z: Any) -> Any:
        """``F(z) = f(U z)`` of Lemma 1."""
        return self.f(self.to_x(z))

    def grad(self, x: Any) -> Any:
        """The gradient (9): ``x - U Phi(U x)``."""
        U = _like(self.U, x)
        return x - self.activation.phi(x @ U) @ U


# --------------------------------------------------------------------------------------------
# network propagations in feature space; ``layer(z) = Phi(W z)``
# --------------------------------------------------------------------------------------------


def _stack(xs: list) -> Any:
    return alg._stack(xs)


def propagate_plain(layer: Layer, z0: Any, num_layers: int) -> Any:
    """(7): ``z_{k+1} = Phi(W z_k)``; returns ``z_0 .. z_K``."""
    zs = [z0]
    for _ in range(num_layers):
        zs.append(layer(zs[-1]))
    return _stack(zs)


def propagate_hb(layer: Layer, z0: Any, num_layers: int, beta: float) -> Any:
    """(10): ``z_{k+1} = Phi(W z_k) + beta (z_k - z_{k-1})`` with ``z_{-1} = z_0``."""
    zs = [z0]
    prev, z = z0, z0
    for _ in range(num_layers):
        prev, z = z, layer(z) + beta * (z - prev)
        zs.append(z)
    return _stack(zs)


def propagate_agd(layer: Layer, z0: Any, num_layers: int,
                  betas: float | Sequence[float] | None = None) -> Any:
    """(11): ``z_{k+1} = Phi(W (z_k + beta_k (z_k - z_{k-1})))`` with ``z_{-1} = z_0``."""
    beta = alg.beta_schedule(betas, num_layers + 1)
    zs = [z0]
    prev, z = z0, z0
    for k in range(num_layers):
        prev, z = z, layer(z + beta[k] * (z - prev))
        zs.append(z)
    return _stack(zs)


def propagate_agd_dense(layer: Layer, z0: Any, num_layers: int,
                        betas: float | Sequence[float] | None = None) -> Any:
    """(12): ``z_{k+1} = z_k + sum_{j<=k} h_{k+1,j} (Phi(W z_j) - z_j)`` (dense connections).

    The ``h_{k+1,j}`` of (5) come from :func:`optnb.theory.algorithms.h_coefficients`.
    """
    H = alg.h_coefficients(num_layers, betas)
    zs, branches = [z0], []
    z = z0
    for k in range(num_layers):
        branches.append(layer(z) - z)
        step = H[k + 1, 0] * branches[0]
        for j in range(1, k + 1):
            step = step + H[k + 1, j] * branches[j]
        z = z + step
        zs.append(z)
    return _stack(zs)


def propagate_admm(layer: Layer, z0: Any, num_layers: int) -> tuple[Any, Any]:
    """(13), with ``z'_0 = z_0`` (the paper leaves the start open; this one makes (13) exact)::

        z'_{k+1} = (Phi(W z'_k) + z_k - sum_{t=1}^k (z'_t - z_t)) / 2
        z_{k+1}  = (Phi(W z_k) + z'_{k+1} + sum_{t=1}^k (z'_t - z_t)) / 2

    Returns the stacked ``z'`` and ``z`` sequences.
    """
    zp, z = z0, z0
    zps, zs = [z0], [z0]
    acc = 0.0 * z0
    for _ in range(num_layers):
        zp_new = 0.5 * (layer(zp) + z - acc)
        z = 0.5 * (layer(z) + zp_new + acc)
        zp = zp_new
        acc = acc + (zp - z)
        zps.append(zp)
        zs.append(z)
    return _stack(zps), _stack(zs)


# --------------------------------------------------------------------------------------------
# side-by-side runs
# --------------------------------------------------------------------------------------------


@dataclass
class Equivalence:
    """One network form run next to its optimizer. ``max_rel = max_abs / max |network|``."""

    name: str
    equation: str
    network: Any
    optimizer: Any
    max_abs: float
    max_rel: float

    def summary(self) -> str:
        return (f"{self.name} {self.equation}: max |network - optimizer| = {self.max_abs:.2e} "
                f"(relative {self.max_rel:.2e})")


def _pair(a: Any, b: Any) -> Any:
    """Stack two iterate sequences on axis 1, keeping the layer axis first."""
    if type(a).__module__.split(".")[0] == "torch":
        import torch

        return torch.stack([a, b], dim=1)
    return np.stack([a, b], axis=1)


def _to_numpy(a: Any) -> np.ndarray:
    return np.asarray(a.detach().cpu() if hasattr(a, "detach") else a, dtype=np.float64)


def _compare(name: str, equation: str, network: Any, optimizer: Any) -> Equivalence:
    net, opt = _to_numpy(network), _to_numpy(optimizer)
    if net.shape != opt.shape:
        raise ValueError(f"{name}: shapes differ: {net.shape} vs {opt.shape}")
    max_abs = float(np.abs(net - opt).max())
    scale = max(float(np.abs(net).max()), np.finfo(float).tiny)
    return Equivalence(name, equation, network, optimizer, max_abs, max_abs / scale)


def _setup(W: Any, activation: str | Activation, z0: Any) -> tuple[Lemma1Cost, Any, Any]:
    cost = Lemma1Cost(W, activation)
    if z0.shape[-1] != cost.n:
        raise ValueError(f"z0 has {z0.shape[-1]} features but W is {cost.n} x {cost.n}")
    return cost, z0, cost.to_x(z0)


def gd_equivalence(W: Any, activation: str | Activation, z0: Any, num_layers: int) -> Equivalence:
    """Lemma 1: the plain network (7) against GD (1) on f, mapped back with ``z = U^{-1} x``."""
    cost, z0, x0 = _setup(W, activation, z0)
    net = propagate_plain(cost.layer, z0, num_layers)
    xs = alg.gradient_descent(cost.grad, x0, num_layers)
    return _compare("GD", "(7) vs (1)", net, cost.to_z(xs))


def hb_equivalence(W: Any, activation: str | Activation, z0: Any, num_layers: int,
                   beta: float) -> Equivalence:
    """The HB network (10) against heavy ball (2) on f."""
    cost, z0, x0 = _setup(W, activation, z0)
    net = propagate_hb(cost.layer, z0, num_layers, beta)
    xs = alg.heavy_ball(cost.grad, x0, num_layers, beta)
    return _compare("HB", "(10) vs (2)", net, cost.to_z(xs))


def agd_equivalence(W: Any, activation: str | Activation, z0: Any, num_layers: int,
                    betas: float | Sequence[float] | None = None) -> Equivalence:
    """The AGD network (11) against the x sequence of AGD (3) on f."""
    cost, z0, x0 = _setup(W, activation, z0)
    net = propagate_agd(cost.layer, z0, num_layers, betas)
    it = alg.nesterov(cost.grad, x0, num_layers, betas)
    return _compare("AGD", "(11) vs (3)", net, cost.to_z(it.x))


def agd_dense_equivalence(W: Any, activation: str | Activation, z0: Any, num_layers: int,
                          betas: float | Sequence[float] | None = None) -> Equivalence:
    """The dense AGD network (12) against the y (extrapolated) sequence of AGD (3) on f.

    This checks the h coefficients of (5) and the network together: (12) is (4) mapped to z.
    """
    cost, z0, x0 = _setup(W, activation, z0)
    net = propagate_agd_dense(cost.layer, z0, num_layers, betas)
    it = alg.nesterov(cost.grad, x0, num_layers, betas)
    return _compare("AGD dense", "(12) vs (3)", net, cost.to_z(it.y))


def admm_equivalence(W: Any, activation: str | Activation, z0: Any,
                     num_layers: int) -> Equivalence:
    """The ADMM network (13) against linearized ADMM (6) on f (``x <-> z'``, ``y <-> z``).

    ``network`` and ``optimizer`` have shape ``(K + 1, 2, ...)``: ``[:, 0]`` is ``z'``, ``[:, 1]``
    is ``z``.
    """
    cost, z0, x0 = _setup(W, activation, z0)
    zp, z = propagate_admm(cost.layer, z0, num_layers)
    it = alg.admm_linearized(cost.grad, x0, num_layers)
    net = _pair(zp, z)
    opt = _pair(cost.to_z(it.x), cost.to_z(it.y))
    return _compare("ADMM", "(13) vs (6)", net, opt)


def all_equivalences(W: Any, activation: str | Activation, z0: Any, num_layers: int,
                     beta: float = 0.5) -> dict[str, Equivalence]:
    """All five forms for one W, activation and start; keys ``gd, hb, agd, agd_dense, admm``."""
    return {
        "gd": gd_equivalence(W, activation, z0, num_layers),
        "hb": hb_equivalence(W, activation, z0, num_layers, beta),
        "agd": agd_equivalence(W, activation, z0, num_layers),
        "agd_dense": agd_dense_equivalence(W, activation, z0, num_layers),
        "admm": admm_equivalence(W, activation, z0, num_layers),
    }


# --------------------------------------------------------------------------------------------
# what breaks without the assumptions
# --------------------------------------------------------------------------------------------


def step_field_asymmetry(W: Any, activation: str | Activation, x: Any) -> float:
    """``max |J - J^T|`` of the step field ``g(x) = x - U Phi(U x)`` at ``x``, U the principal
    real square root of W (any W with one). ``J = I - U diag(Phi'(Ux)) U``.

    A gradient field has a symmetric Jacobian, so a clearly nonzero value means g is the gradient
    of *no* cost f: (9) needs a symmetric U, hence a symmetric W.
    """
    import scipy.linalg

    act = get_activation(activation)
    arr = np.asarray(W, dtype=np.float64)
    U = scipy.linalg.sqrtm(arr)
    if np.iscomplexobj(U):
        if np.abs(U.imag).max() > 1e-12 * max(1.0, np.abs(U.real).max()):
            raise NotPositiveDefiniteError("W has no real square root (negative eigenvalues)")
        U = U.real
    x = np.asarray(x, dtype=np.float64)
    J = np.eye(len(x)) - U @ np.diag(act.dphi(U @ x)) @ U
    return float(np.abs(J - J.T).max())


def descent_violation(activation: str | Activation, w_max: float = 40.0,
                      num: int = 101) -> dict[str, float]:
    """Largest increase ``f(x_1) - f(x_0)`` of one unit GD step (= one layer), over 1-D costs.

    Scans ``W = w`` in ``(0, w_max]`` and ``z_0`` in ``[-6, 6]``. For a monotone Phi the Hessian
    of (8) is ``<= 1`` and the descent lemma gives ``f(x_1) <= f(x_0) - |grad f|^2 / 2``, so the
    result is <= 0. A non-monotone Phi (SiLU) can make the layer *increase* the cost.
    Returns ``{"increase", "w", "z0"}`` at the worst point.
    """
    act = get_activation(activation)
    w = np.linspace(w_max / num, w_max, num)[:, None]
    z = np.linspace(-6.0, 6.0, 4 * num + 1)[None, :]
    u = np.sqrt(w)
    x0 = u * z
    x1 = u * act.phi(u * x0)

    def f(x: np.ndarray) -> np.ndarray:
        return 0.5 * x * x - act.psi(u * x)

    inc = f(x1) - f(x0)
    i, j = np.unravel_index(np.argmax(inc), inc.shape)
    return {"increase": float(inc[i, j]), "w": float(w[i, 0]), "z0": float(z[0, j])}
