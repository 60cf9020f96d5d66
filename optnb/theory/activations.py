"""Activations Phi and their cost functions Psi (Appendix A, reconstructed), with Psi' = Phi.

Lemma 1 / eq. (8) needs, for an element-wise activation Phi, a scalar Psi with Psi' = Phi: then
``f(x) = ||x||^2 / 2 - sum_i Psi((U x)_i)`` has gradient (9) ``x - U Phi(U x)``. Psi is defined up
to a constant; the constants chosen here are stated in each entry's ``psi_tex``.

Each numeric Phi and Psi is written once, in torch float64 and stable for large |t|; the
``phi``/``psi``/``dphi`` methods accept floats, numpy arrays or torch tensors and return the same
kind. A sympy Psi is *derived* by integrating the symbolic Phi (:func:`symbolic_psi`) and checked
against the numeric one in the tests.

Curvature facts used by :func:`cost_constants` (appendix note, Section 2.2): with
``D = diag(Phi'(U x))`` the Hessian of (8) is ``I - U D U``; ``a <= Phi' <= b`` gives
``I - b W <= Hess f <= I - a W``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from optnb.theory.spd import check_spd

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "CostConstants",
    "UnknownActivationError",
    "activation_names",
    "cost_constants",
    "evaluate_symbolic",
    "get_activation",
    "make_elu",
    "make_leaky_relu",
    "psi_derivative_error",
    "symbolic_check",
    "symbolic_phi",
    "symbolic_psi",
]

TorchFn = Callable[[torch.Tensor], torch.Tensor]


class UnknownActivationError(KeyError):
    """An activation name that is not registered; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------------------------
# -Li2(-e^t): the cost function of softplus (and, by parts, of SiLU)
# --------------------------------------------------------------------------------------------

_SERIES_TERMS = 48


@functools.cache
def _eta_taylor() -> torch.Tensor:
    """Taylor coefficients ``eta(2 - n) / n!`` of ``-Li2(-e^t)`` at 0 (Dirichlet eta)."""
    import mpmath

    return torch.tensor([float(mpmath.altzeta(2 - n) / mpmath.factorial(n))
                         for n in range(_SERIES_TERMS)], dtype=torch.float64)


def _upto(t: torch.Tensor, c: float) -> torch.Tensor:
    """``min(t, c)`` whose gradient is 1 at ``t == c`` (``torch.clamp`` gives 0 there), so that
    branch formulas stay differentiable on their own boundary."""
    return torch.where(t <= c, t, torch.full_like(t, c))


def _neg_li2_neg_exp_left(t: torch.Tensor) -> torch.Tensor:
    """``sum_{n>=1} (-1)^{n+1} e^{n t} / n^2``, accurate for t <= -1."""
    u = torch.exp(_upto(t, -1.0))
    n = torch.arange(1, _SERIES_TERMS + 1, dtype=t.dtype, device=t.device)
    signs = torch.where(n % 2 == 1, 1.0, -1.0).to(t.dtype)
    powers = u.unsqueeze(-1) ** n
    return (signs * powers / n**2).sum(-1)


def _neg_li2_neg_exp(t: torch.Tensor) -> torch.Tensor:
    """``-Li2(-e^t) = int_{-inf}^t softplus``: series (t <= -1), Taylor (|t| < 1), reflection."""
    coeffs = _eta_taylor().to(device=t.device, dtype=t.dtype)
    mid = torch.clamp(t, -1.0, 1.0)
    taylor = torch.zeros_like(t)
    for c in coeffs.flip(0):  # Horner
        taylor = taylor * mid + c
    left = _neg_li2_neg_exp_left(t)
    # Li2(-u) + Li2(-1/u) = -pi^2/6 - log(u)^2/2  =>  -Li2(-e^t) = pi^2/6 + t^2/2 + Li2(-e^{-t})
    right = math.pi**2 / 6 + t * t / 2 - _neg_li2_neg_exp_left(-t)
    return torch.where(t <= -1.0, left, torch.where(t >= 1.0, right, taylor))


def _softplus(t: torch.Tensor) -> torch.Tensor:
    return torch.logaddexp(t, torch.zeros_like(t))  # exact; F.softplus switches to t at 20


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def _as_tensor(x: Any) -> tuple[torch.Tensor, Callable[[torch.Tensor], Any]]:
    if isinstance(x, torch.Tensor):
        return x, lambda y: y
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 0:
        return torch.tensor(float(arr), dtype=torch.float64), lambda y: float(y)
    return torch.from_numpy(arr), lambda y: y.detach().cpu().numpy()


@dataclass(frozen=True)
class Activation:
    """An element-wise activation Phi with its cost function Psi (Psi' = Phi).

    ``inf_dphi`` / ``sup_dphi`` bound Phi' over the real line (the infimum need not be attained).
    ``monotone`` is ``inf_dphi >= 0``: the condition under which f of (8) is 1-smooth in the
    one-sided sense (``Hess f <= I``), so that the unit step of (1) never increases f.
    """

    name: str
    label: str
    torch_phi: TorchFn
    torch_psi: TorchFn
    inf_dphi: float
    sup_dphi: float
    phi_tex: str
    psi_tex: str
    sympy_phi: Callable[[Any], Any]
    note: str = ""

    @property
    def monotone(self) -> bool:
        return self.inf_dphi >= 0.0

    def phi(self, x: Any) -> Any:
        """Phi(x), element-wise; same kind (float / numpy / torch) as ``x``."""
        t, back = _as_tensor(x)
        return back(self.torch_phi(t))

    def psi(self, x: Any) -> Any:
        """Psi(x) with Psi' = Phi, element-wise; same kind as ``x``."""
        t, back = _as_tensor(x)
        return back(self.torch_psi(t))

    def dphi(self, x: Any) -> Any:
        """Phi'(x) by autograd, element-wise; same kind as ``x``."""
        t, back = _as_tensor(x)
        t = t.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(self.torch_phi(t).sum(), t)
        return back(g)

    __call__ = phi


def make_leaky_relu(slope: float = 0.1) -> Activation:
    """Leaky ReLU with ``0 < slope < 1``: Psi = t^2/2 (t >= 0), slope t^2/2 (t < 0)."""
    if not 0.0 < slope < 1.0:
        raise ValueError(f"leaky ReLU slope must be in (0, 1), got {slope}")
    a = float(slope)

    def sym(t: Any) -> Any:
        import sympy as sp

        return sp.Piecewise((sp.nsimplify(a) * t, t < 0), (t, True))

    return Activation(
        "leaky_relu", f"leaky ReLU (a={a:g})",
        lambda t: torch.where(t >= 0, t, a * t),
        lambda t: torch.where(t >= 0, 0.5 * t * t, 0.5 * a * t * t),
        a, 1.0, r"\max(t, a t)", r"\tfrac12 t^2 \ (t\ge0),\ \tfrac a2 t^2 \ (t<0)", sym)


def make_elu(alpha: float = 1.0) -> Activation:
    """ELU with ``alpha > 0``: Psi = t^2/2 (t >= 0), alpha (e^t - 1 - t) (t < 0)."""
    if not alpha > 0.0:
        raise ValueError(f"ELU alpha must be > 0 (monotone), got {alpha}")
    al = float(alpha)

    def phi(t: torch.Tensor) -> torch.Tensor:
        return torch.where(t > 0, t, al * torch.expm1(_upto(t, 0.0)))

    def psi(t: torch.Tensor) -> torch.Tensor:
        neg = _upto(t, 0.0)
        return torch.where(t > 0, 0.5 * t * t, al * (torch.expm1(neg) - neg))

    def sym(t: Any) -> Any:
        import sympy as sp

        return sp.Piecewise((sp.nsimplify(al) * (sp.exp(t) - 1), t < 0), (t, True))

    return Activation("elu", f"ELU (alpha={al:g})", phi, psi, 0.0, max(1.0, al),
                      r"t\ (t>0),\ \alpha(e^t-1)\ (t\le0)",
                      r"\tfrac12 t^2\ (t\ge0),\ \alpha(e^t-1-t)\ (t<0)", sym)


def _sp(name: str) -> Callable[[Any], Any]:
    """Symbolic Phi builders that need only sympy functions."""

    def build(t: Any) -> Any:
        import sympy as sp

        return {
            "identity": lambda: t,
            "relu": lambda: sp.Piecewise((0, t < 0), (t, True)),
            "sigmoid": lambda: 1 / (1 + sp.exp(-t)),
            "tanh": lambda: sp.tanh(t),
            "softplus": lambda: sp.log(1 + sp.exp(t)),
            "softsign": lambda: sp.Piecewise((t / (1 - t), t < 0), (t / (1 + t), True)),
            "silu": lambda: t / (1 + sp.exp(-t)),
        }[name]()

    return build


def _tanh_psi(t: torch.Tensor) -> torch.Tensor:
    a = t.abs()
    return a + torch.log1p(torch.exp(-2.0 * a)) - math.log(2.0)  # log cosh t


def _silu_psi(t: torch.Tensor) -> torch.Tensor:
    return t * _softplus(t) - _neg_li2_neg_exp(t)  # by parts: t softplus(t) - int softplus


# SiLU: Phi'(t) = s(t) (1 + t (1 - s(t))) with s the sigmoid; extremes at t = +-2.39935732...
_SILU_SUP = 1.099839320128867
_SILU_INF = -0.09983932012886693

_BUILTIN = [
    Activation("identity", "identity", lambda t: t, lambda t: 0.5 * t * t, 1.0, 1.0,
               "t", r"\tfrac12 t^2", _sp("identity"),
               "linear network: f(x) = x^T (I - W) x / 2"),
    Activation("relu", "ReLU", torch.relu, lambda t: 0.5 * torch.relu(t) ** 2, 0.0, 1.0,
               r"\max(t, 0)", r"\tfrac12 \max(t,0)^2", _sp("relu")),
    make_leaky_relu(0.1),
    Activation("sigmoid", "sigmoid", torch.sigmoid, _softplus, 0.0, 0.25,
               r"1/(1+e^{-t})", r"\log(1+e^t)", _sp("sigmoid")),
    Activation("tanh", "tanh", torch.tanh, _tanh_psi, 0.0, 1.0,
               r"\tanh t", r"\log\cosh t", _sp("tanh")),
    Activation("softplus", "softplus", _softplus, _neg_li2_neg_exp, 0.0, 1.0,
               r"\log(1+e^t)", r"-\mathrm{Li}_2(-e^t)", _sp("softplus")),
    make_elu(1.0),
    Activation("softsign", "softsign", lambda t: t / (1 + t.abs()),
               lambda t: t.abs() - torch.log1p(t.abs()), 0.0, 1.0,
               r"t/(1+\lvert t\rvert)", r"\lvert t\rvert - \log(1+\lvert t\rvert)",
               _sp("softsign")),
    Activation("silu", "SiLU / swish (counter-example)", lambda t: t * torch.sigmoid(t),
               _silu_psi, _SILU_INF, _SILU_SUP, r"t\,\sigma(t)",
               r"t\log(1+e^t) + \mathrm{Li}_2(-e^t)", _sp("silu"),
               "NOT monotone: Phi' < 0 for t < -1.28, so Hess f <= I fails and Psi is not convex"),
]

#: name -> Activation. The registered names are the valid ``ACTIVATION`` notebook parameters.
ACTIVATIONS: dict[str, Activation] = {a.name: a for a in _BUILTIN}


def activation_names(monotone_only: bool = False) -> list[str]:
    """Registered names, in registry order (optionally only the monotone ones)."""
    return [n for n, a in ACTIVATIONS.items() if a.monotone or not monotone_only]


def get_activation(name: str | Activation) -> Activation:
    """Look an activation up by name; unknown names raise :class:`UnknownActivationError`."""
    if isinstance(name, Activation):
        return name
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise UnknownActivationError(
            f"unknown activation {name!r}; valid names: {', '.join(ACTIVATIONS)}") from None


# --------------------------------------------------------------------------------------------
# sympy: Psi derived by integrating Phi
# --------------------------------------------------------------------------------------------


def symbolic_phi(name: str | Activation) -> Any:
    """Phi as a sympy expression in the real symbol ``t``."""
    import sympy as sp

    return get_activation(name).sympy_phi(sp.Symbol("t", real=True))


@functools.cache
def _symbolic_psi(act: Activation) -> Any:
    import sympy as sp

    t = sp.Symbol("t", real=True)
    s = sp.Symbol("s", real=True)
    if act.name == "softplus":
        # sympy cannot integrate log(1 + e^t) dt directly; substitute u = e^t, dt = du / u, and
        # go straight to the Meijer-G integrator that sp.integrate would reach after slower tries.
        from sympy.integrals.meijerint import meijerint_indefinite

        u = sp.Symbol("u", positive=True)
        prim = meijerint_indefinite(sp.log(1 + u) / u, u).subs(sp.exp_polar(sp.I * sp.pi), -1)
        return prim.subs(u, sp.exp(t))
    if act.name == "silu":
        # by parts: int t sigma(t) dt = t log(1 + e^t) - int log(1 + e^t) dt
        return t * sp.log(1 + sp.exp(t)) - _symbolic_psi(ACTIVATIONS["softplus"])
    return sp.integrate(act.sympy_phi(s), (s, 0, t))


def symbolic_psi(name: str | Activation) -> Any:
    """Psi as a sympy expression in ``t``, derived by integrating :func:`symbolic_phi`.

    For most activations this is the definite integral from 0 (so it may differ from the numeric
    Psi by a constant, and may carry a cancelling ``I*pi`` from sympy's branch of ``log``). Softplus
    needs the substitution ``u = e^t`` (giving ``-polylog(2, -e^t)``), SiLU one integration by parts.
    """
    return _symbolic_psi(get_activation(name))


def evaluate_symbolic(expr: Any, values: np.ndarray) -> np.ndarray:
    """Evaluate a sympy expression in ``t`` at float values with mpmath (real part; the imaginary
    part must vanish)."""
    import mpmath
    import sympy as sp

    t = sp.Symbol("t", real=True)
    fn = sp.lambdify(t, expr, modules="mpmath")
    out = np.empty(len(values))
    with mpmath.workdps(30):
        for i, v in enumerate(np.asarray(values, dtype=np.float64)):
            z = complex(fn(mpmath.mpf(float(v))))
            if abs(z.imag) > 1e-9 * max(1.0, abs(z.real)):
                raise ValueError(f"symbolic Psi is not real at t={v}: {z}")
            out[i] = z.real
    return out


def psi_derivative_error(name: str | Activation, t: Any = None) -> float:
    """``max |dPsi/dt - Phi| / (1 + |Phi|)`` by autograd, on ``t`` (default: a grid on [-12, 12]
    plus large |t| up to 800)."""
    act = get_activation(name)
    if t is None:
        t = np.concatenate([np.linspace(-12, 12, 2401), [-800.0, -60.0, -25.0, 25.0, 60.0, 800.0]])
    x = torch.as_tensor(np.asarray(t, dtype=np.float64)).clone().requires_grad_(True)
    (g,) = torch.autograd.grad(act.torch_psi(x).sum(), x)
    phi = act.torch_phi(x.detach())
    return float(((g - phi).abs() / (1 + phi.abs())).max())


def symbolic_check(name: str | Activation, t: Any = None) -> float:
    """Spread ``max - min`` of ``Psi_sympy(t) - Psi_numeric(t)`` over ``t``: zero when the two
    agree up to the integration constant (default grid: 11 points in [-9, 9])."""
    t = np.linspace(-9.0, 9.0, 11) if t is None else np.asarray(t, dtype=np.float64)
    diff = evaluate_symbolic(symbolic_psi(name), t) - get_activation(name).psi(t)
    return float(np.ptp(diff))


# --------------------------------------------------------------------------------------------
# smoothness and strong convexity of f in (8)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostConstants:
    """Curvature of ``f(x) = ||x||^2/2 - sum_i Psi((Ux)_i)`` for one W (eigenvalues lam_min..max).

    ``hess_lower <= eig(Hess f) <= hess_upper`` everywhere. ``L = max(|lower|, |upper|)`` is the
    Lipschitz constant of grad f, ``mu = hess_lower`` the strong-convexity modulus when positive.
    """

    activation: str
    lam_min: float
    lam_max: float
    hess_lower: float
    hess_upper: float

    @property
    def L(self) -> float:
        return max(abs(self.hess_lower), abs(self.hess_upper))

    @property
    def mu(self) -> float:
        return self.hess_lower

    @property
    def one_sided_smooth(self) -> bool:
        """``Hess f <= I``: the unit step of (1) is a descent step (needs monotone Phi)."""
        return self.hess_upper <= 1.0 + 1e-15

    @property
    def convex(self) -> bool:
        return self.hess_lower >= 0.0

    @property
    def strongly_convex(self) -> bool:
        return self.hess_lower > 0.0

    @property
    def kappa(self) -> float:
        """Condition number ``L / mu`` (inf unless strongly convex)."""
        return self.L / self.mu if self.strongly_convex else math.inf


def cost_constants(activation: str | Activation, W: Any) -> CostConstants:
    """Bounds on the Hessian ``I - U diag(Phi'(Ux)) U`` of (8) for a symmetric PD ``W = U^2``.

    With ``a <= Phi' <= b``: ``I - b W <= Hess f <= I - a W`` (Loewner order), so the eigenvalues
    lie in ``[min(1 - b lam), max(1 - a lam)]`` over ``lam in {lam_min, lam_max}``.
    """
    act = get_activation(activation)
    lam = np.linalg.eigvalsh(check_spd(W))
    lam_min, lam_max = float(lam[0]), float(lam[-1])
    a, b = act.inf_dphi, act.sup_dphi
    lower = min(1.0 - b * lam_min, 1.0 - b * lam_max)
    upper = max(1.0 - a * lam_min, 1.0 - a * lam_max)
    return CostConstants(act.name, lam_min, lam_max, lower, upper)
