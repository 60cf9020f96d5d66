"""First-order algorithms of Section 3: GD (1), heavy ball (2), Nesterov AGD (3)-(5), LADMM (6).

Every algorithm takes a gradient oracle ``grad`` and a start point ``x0`` and returns the stacked
iterates, first axis = iteration. Only ``+``, ``-``, ``*`` and ``/`` are applied to the state, so a
numpy array, a scalar or a (batched) torch tensor all work; the oracle decides the semantics of a
batch. Use float64 inputs for the equivalence checks.

Momentum indexing follows the paper: ``beta_k = theta_k (1 - theta_{k-1}) / theta_{k-1}`` with
``theta_{-1} = theta_0 = 1`` and ``x_{-1} = x_0``, so ``beta_0 = beta_1 = 0`` and the first step of
every method is a plain gradient step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

Grad = Callable[[Any], Any]

__all__ = [
    "ADMMIterates",
    "NesterovIterates",
    "admm_linearized",
    "beta_schedule",
    "cumulative_coefficients",
    "gradient_descent",
    "h_coefficients",
    "heavy_ball",
    "nesterov",
    "nesterov_betas",
    "nesterov_single_sequence",
    "nesterov_thetas",
    "strongly_convex_beta",
]


class NesterovIterates(NamedTuple):
    """Both sequences of AGD (3): ``x`` (gradient-step points) and ``y`` (extrapolated points)."""

    x: Any
    y: Any


class ADMMIterates(NamedTuple):
    """The three sequences of linearized ADMM (6)."""

    x: Any
    y: Any
    lam: Any


def _stack(xs: list) -> Any:
    first = xs[0]
    if type(first).__module__.split(".")[0] == "torch":
        import torch

        return torch.stack(xs)
    return np.stack([np.asarray(x) for x in xs])


def _check_steps(num_steps: int) -> None:
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)):
        raise TypeError(f"num_steps must be an int, got {type(num_steps).__name__}")
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")


def _check_num(num: int, what: str = "num") -> int:
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 0:
        raise ValueError(f"{what} must be an int >= 0, got {num!r}")
    return int(num)


# --------------------------------------------------------------------------------------------
# theta / beta schedule and the coefficients of (4)-(5)
# --------------------------------------------------------------------------------------------


def nesterov_thetas(num: int) -> np.ndarray:
    """``theta_0 .. theta_{num-1}`` of (3): ``(1 - theta_k) / theta_k^2 = 1 / theta_{k-1}^2``.

    ``theta_0 = 1``; the positive root is ``theta_k = (sqrt(t^4 + 4 t^2) - t^2) / 2`` with
    ``t = theta_{k-1}``, written in the cancellation-free form ``2 t^2 / (sqrt(t^4 + 4 t^2) + t^2)``.
    """
    num = _check_num(num)
    thetas = np.empty(num, dtype=np.float64)
    t = 1.0
    for k in range(num):
        if k > 0:
            t2 = t * t
            t = 2.0 * t2 / (np.sqrt(t2 * t2 + 4.0 * t2) + t2)
        thetas[k] = t
    return thetas


def nesterov_betas(num: int) -> np.ndarray:
    """``beta_0 .. beta_{num-1}`` with ``beta_k = theta_k (1 - theta_{k-1}) / theta_{k-1}`` (3).

    With ``theta_{-1} = 1``: ``0, 0, 0.2818, 0.4340, 0.5311, ...`` (FISTA's ``(t_{k-1}-1)/t_k``).
    """
    num = _check_num(num)
    thetas = nesterov_thetas(num)
    prev = np.concatenate([[1.0], thetas[:-1]]) if num else thetas
    return thetas * (1.0 - prev) / prev


def strongly_convex_beta(mu: float, L: float = 1.0) -> float:
    """The constant momentum ``(sqrt L - sqrt mu) / (sqrt L + sqrt mu)`` of AGD for mu-strongly
    convex, L-smooth f (Section 3, text after (3))."""
    if not (0 < mu <= L):
        raise ValueError(f"need 0 < mu <= L, got mu={mu}, L={L}")
    return float((np.sqrt(L) - np.sqrt(mu)) / (np.sqrt(L) + np.sqrt(mu)))


def beta_schedule(betas: float | Sequence[float] | np.ndarray | None, num: int) -> np.ndarray:
    """Momenta ``beta_0 .. beta_{num-1}`` of (3)/(11): the theta schedule (None), a constant, or a
    sequence."""
    if betas is None:
        return nesterov_betas(num)
    if np.isscalar(betas):
        out = np.full(num, float(betas))
        if num:
            out[0] = 0.0  # x_{-1} = x_0: beta_0 never acts
        return out
    arr = np.asarray(betas, dtype=np.float64).reshape(-1)
    if arr.size < num:
        raise ValueError(f"need at least {num} momentum values beta_0..beta_{num - 1}, "
                         f"got {arr.size}")
    return arr[:num].copy()


def h_coefficients(num: int, betas: float | Sequence[float] | None = None) -> np.ndarray:
    """Lower-triangular ``H`` of shape ``(num + 1, num)`` with ``H[k+1, j] = h_{k+1,j}`` of (5).

    Recursion (5), with ``beta_{k+1} = theta_{k+1}(1 - theta_k)/theta_k``::

        h_{k+1,k}   = 1 + beta_{k+1}
        h_{k+1,k-1} = beta_{k+1} (h_{k,k-1} - 1)
        h_{k+1,j}   = beta_{k+1} h_{k,j}          (j <= k - 2)

    Row 0 is unused (zero). ``betas=None`` uses the theta schedule; a float gives the constant
    (strongly convex) momentum, a sequence gives ``beta_0, beta_1, ...`` explicitly.
    """
    num = _check_num(num)
    beta = beta_schedule(betas, num + 1)
    H = np.zeros((num + 1, num), dtype=np.float64)
    for k in range(num):
        b = beta[k + 1]
        if k >= 1:
            H[k + 1, : k - 1] = b * H[k, : k - 1]
            H[k + 1, k - 1] = b * (H[k, k - 1] - 1.0)
        H[k + 1, k] = 1.0 + b
    return H


def cumulative_coefficients(num: int, betas: float | Sequence[float] | None = None) -> np.ndarray:
    """``C[k, j] = c_{k,j}``, shape ``(num + 1, num)``: ``y_k = y_0 - sum_{j<k} c_{k,j} grad f(y_j)``.

    ``c_{k,j} = sum_{m=j}^{k} prod_{i=j+1}^{m} beta_i`` (appendix note, Section 3.2). The h of (5)
    are its increments: ``h_{k,j} = c_{k,j} - c_{k-1,j}`` (with ``c_{k-1,k-1} = 0``).
    """
    num = _check_num(num)
    beta = beta_schedule(betas, num + 1)
    C = np.zeros((num + 1, num), dtype=np.float64)
    for k in range(1, num + 1):
        for j in range(k):
            total, prod = 0.0, 1.0
            for m in range(j, k + 1):
                if m > j:
                    prod *= beta[m]
                total += prod
            C[k, j] = total
    return C


# --------------------------------------------------------------------------------------------
# algorithms
# --------------------------------------------------------------------------------------------


def gradient_descent(grad: Grad, x0: Any, num_steps: int, step: float = 1.0) -> Any:
    """GD (1): ``x_{k+1} = x_k - step * grad(x_k)``; returns ``x_0 .. x_{num_steps}``."""
    _check_steps(num_steps)
    xs = [x0]
    x = x0
    for _ in range(num_steps):
        x = x - step * grad(x)
        xs.append(x)
    return _stack(xs)


def heavy_ball(grad: Grad, x0: Any, num_steps: int, beta: float, step: float = 1.0) -> Any:
    """Heavy ball (2): ``x_{k+1} = x_k - step * grad(x_k) + beta (x_k - x_{k-1})``, ``x_{-1} = x_0``.

    ``beta = 0`` is GD (1). Returns ``x_0 .. x_{num_steps}``.
    """
    _check_steps(num_steps)
    xs = [x0]
    x_prev, x = x0, x0
    for _ in range(num_steps):
        x_prev, x = x, x - step * grad(x) + beta * (x - x_prev)
        xs.append(x)
    return _stack(xs)


def nesterov(grad: Grad, x0: Any, num_steps: int,
             betas: float | Sequence[float] | None = None, step: float = 1.0) -> NesterovIterates:
    """Nesterov AGD (3), two-sequence form.

    ``y_k = x_k + beta_k (x_k - x_{k-1})``, ``x_{k+1} = y_k - step * grad(y_k)``, ``x_{-1} = x_0``.
    ``betas=None`` uses the theta schedule of (3); a float is the constant momentum of the
    strongly convex case (see :func:`strongly_convex_beta`). Returns ``x_0 .. x_{num_steps}`` and
    ``y_0 .. y_{num_steps}`` (``y_{num_steps}`` uses ``beta_{num_steps}``).
    """
    _check_steps(num_steps)
    beta = beta_schedule(betas, num_steps + 1)
    xs, ys = [x0], []
    x_prev, x = x0, x0
    for k in range(num_steps + 1):
        y = x + beta[k] * (x - x_prev)
        ys.append(y)
        if k == num_steps:
            break
        x_prev, x = x, y - step * grad(y)
        xs.append(x)
    return NesterovIterates(_stack(xs), _stack(ys))


def nesterov_single_sequence(grad: Grad, y0: Any, num_steps: int,
                             betas: float | Sequence[float] | None = None,
                             step: float = 1.0) -> Any:
    """AGD in the single-sequence form (4): ``y_{k+1} = y_k - sum_{j<=k} h_{k+1,j} grad(y_j)``.

    The ``h_{k+1,j}`` come from :func:`h_coefficients` (recursion (5)). In exact arithmetic the
    result equals the ``y`` sequence of :func:`nesterov` with the same ``betas``.
    Returns ``y_0 .. y_{num_steps}``.
    """
    _check_steps(num_steps)
    H = h_coefficients(num_steps, betas)
    if step != 1.0:
        H = H * step
    ys, grads = [y0], []
    y = y0
    for k in range(num_steps):
        grads.append(grad(y))
        update = H[k + 1, 0] * grads[0]
        for j in range(1, k + 1):
            update = update + H[k + 1, j] * grads[j]
        y = y - update
        ys.append(y)
    return _stack(ys)


def admm_linearized(grad: Grad, x0: Any, num_steps: int, y0: Any = None,
                    lam0: Any = None) -> ADMMIterates:
    """Linearized ADMM (6) with penalty 1 on ``min f(x) + f(y)  s.t.  y - x = 0``.

    Solving the two quadratic sub-problems of (6) in closed form::

        x_{k+1} = (x_k + y_k - grad(x_k) - lam_k) / 2
        y_{k+1} = (y_k + x_{k+1} - grad(y_k) + lam_k) / 2
        lam_{k+1} = lam_k + x_{k+1} - y_{k+1}

    The paper does not state the initial values; the defaults ``y_0 = x_0`` and ``lam_0 = 0`` are
    the ones under which (13) is exact (appendix note, Section 3.3).
    """
    _check_steps(num_steps)
    y0 = x0 if y0 is None else y0
    lam0 = 0.0 * x0 if lam0 is None else lam0
    xs, ys, lams = [x0], [y0], [lam0]
    x, y, lam = x0, y0, lam0
    for _ in range(num_steps):
        x_new = 0.5 * (x + y - grad(x) - lam)
        y = 0.5 * (y + x_new - grad(y) + lam)
        x = x_new
        lam = lam + x - y
        xs.append(x)
        ys.append(y)
        lams.append(lam)
    return ADMMIterates(_stack(xs), _stack(ys), _stack(lams))
