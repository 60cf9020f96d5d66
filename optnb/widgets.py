"""Interactive explorers: momentum (beta) and activation/cost (theory notebooks), and the
reversible HBNet's gradient error against depth (notebook 10).

Each explorer is built by a function that returns the widget; nothing is displayed at import.
The widget is ``interactive_output`` over controls with ``continuous_update=False`` (a redraw
when the slider is released, not on every pixel). The computation behind a redraw is a *pure*
function (``beta_view``, ``activation_view``) that notebooks also call once with their
parameter defaults, so a headless run records the same numbers without anyone moving a slider.
``Explorer.history`` and ``Explorer.last`` let pytest drive the widget without a kernel.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np

from optnb.theory import algorithms as alg
from optnb.theory import plots, rates
from optnb.theory.activations import activation_names, cost_constants, get_activation
from optnb.theory.equivalence import Lemma1Cost, gd_equivalence, propagate_plain
from optnb.theory.spd import spd_2d
from optnb.train import memory

__all__ = [
    "Explorer",
    "activation_explorer",
    "activation_view",
    "beta_explorer",
    "beta_view",
    "draw_activation_view",
    "draw_beta_view",
    "draw_reversible_view",
    "reversible_explorer",
    "reversible_view",
]


# --------------------------------------------------------------------------------------------
# pure views
# --------------------------------------------------------------------------------------------


def beta_view(beta: float, kappa: float, num_steps: int = 60, agd_beta: float | None = None,
              dim: int = 32) -> dict[str, Any]:
    """GD, HB(beta) and AGD(agd_beta) on quadratics with condition number ``kappa`` (L = 1).

    Returns 2-D paths on ``diag(1/kappa, 1)``, error curves ``||x_k|| / ||x_0||`` on a
    ``dim``-eigenvalue spectrum, the exact predicted rate of each method at these momenta
    (:func:`optnb.theory.rates.momentum_rate`) and the measured average rate
    ``(e_K / e_0)^(1/K)``. ``agd_beta=None`` is the strongly convex value of Section 3.
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    mu = 1.0 / float(kappa)
    agd_beta = alg.strongly_convex_beta(mu) if agd_beta is None else float(agd_beta)
    lam2 = np.array([mu, 1.0])
    x0 = np.array([1.0, 1.0])
    paths = {
        "GD": alg.gradient_descent(lambda x: lam2 * x, x0, num_steps),
        "HB": alg.heavy_ball(lambda x: lam2 * x, x0, num_steps, beta),
        "AGD": alg.nesterov(lambda x: lam2 * x, x0, num_steps, agd_beta).x,
    }
    lam = rates.quadratic_spectrum(kappa, dim)
    curves = rates.convergence_curves(lam, num_steps, hb_beta=beta, agd_beta=agd_beta)
    momenta = {"GD": 0.0, "HB": float(beta), "AGD": agd_beta}
    predicted = {m: rates.momentum_rate(m, momenta[m], lam) for m in curves}
    measured = {m: float((max(c[-1], 1e-300) / c[0]) ** (1.0 / num_steps))
                for m, c in curves.items()}
    return {"beta": float(beta), "agd_beta": agd_beta, "kappa": float(kappa), "mu": mu,
            "num_steps": int(num_steps), "eigenvalues_2d": lam2, "paths": paths,
            "curves": curves, "predicted_rate": predicted, "measured_rate": measured,
            "final_error": {m: float(c[-1]) for m, c in curves.items()},
            "best_hb_beta": rates.hb_unit_step_beta(mu)}


def draw_beta_view(view: dict[str, Any]) -> Any:
    """Two panels: 2-D trajectories and error against layer, with the predicted rates."""
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    plots.plot_quadratic_paths(view["eigenvalues_2d"], view["paths"], ax=ax0,
                               title=f"kappa = {view['kappa']:.0f}: iterates = layer outputs")
    plots.plot_error_curves(view["curves"], ax=ax1, theory=view["predicted_rate"],
                            ylabel=r"$\|x_k - x^*\| / \|x_0 - x^*\|$",
                            title=f"HB beta = {view['beta']:.2f}, AGD beta = "
                                  f"{view['agd_beta']:.2f} (best HB: {view['best_hb_beta']:.2f})")
    fig.tight_layout()
    return fig


def activation_view(activation: str, lam1: float, lam2: float, angle: float = 0.0,
                    num_layers: int = 30, z0: Sequence[float] = (1.5, -1.0)) -> dict[str, Any]:
    """The plain network (7) with ``W = R(angle) diag(lam1, lam2) R^T`` as GD on ``F = f(Uz)``.

    Returns W, the layer outputs, ``F(z_k)``, the GD-equivalence deviation, the curvature
    constants of (8) and whether F decreased at every layer.
    """
    act = get_activation(activation)
    W = spd_2d(lam1, lam2, angle)
    cost = Lemma1Cost(W, act)
    z0 = np.asarray(z0, dtype=np.float64)
    zs = propagate_plain(cost.layer, z0, num_layers)
    F = np.asarray(cost.F(zs))
    eq = gd_equivalence(W, act, z0, num_layers)
    consts = cost_constants(act, W)
    return {"activation": act.name, "W": W, "cost": cost, "zs": zs, "F": F,
            "deviation": eq.max_rel, "constants": consts,
            "decreasing": bool(np.all(np.diff(F) <= 1e-12 * max(1.0, np.abs(F).max())))}


def draw_activation_view(view: dict[str, Any]) -> Any:
    """Three panels: Phi and Psi, the landscape with the layer path, F against layer."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    plots.plot_activations([view["activation"]], axes=axes[:2])
    c = view["constants"]
    plots.plot_landscape(view["cost"], {"GD (7)": view["zs"]}, ax=axes[2],
                         title=f"mu = {c.mu:.2f}, L = {c.L:.2f}, Hess <= {c.hess_upper:.2f}")
    axes[3].plot(view["F"], ".-")
    axes[3].set(xlabel="layer k", ylabel=r"$F(z_k)$",
                title="decreasing" if view["decreasing"] else "F INCREASES somewhere")
    fig.tight_layout()
    return fig


def reversible_view(beta: float, blocks: Sequence[int] = (4, 8, 16), width: int = 4,
                    image: int = 8, batch: int = 2, seed: int = 0) -> dict[str, Any]:
    """Reversible against ordinary HBNet gradients (momentum outside, eq. (10)) at ``beta``, per
    depth, in float64 and float32 (:func:`optnb.train.memory.gradient_error` on a small net).

    The reversible net recovers ``z_{k-1}`` by dividing by ``beta`` once per block, so round-off
    can grow like ``(1 / beta)^depth``: small betas and deep stages are where float32 fails.
    """
    if not 0.0 < beta < 1.0:
        raise ValueError(f"beta must be in (0, 1) for the reversible net, got {beta}")
    builder = functools.partial(memory.hbnet_outside, width=width)
    rows = memory.gradient_error(builder, blocks, (float(beta),), batch=batch, image=image,
                                 seed=seed)
    return {"beta": float(beta), "rows": rows, "usable_rel_err": memory.USABLE_REL_ERR}


def draw_reversible_view(view: dict[str, Any]) -> Any:
    """Relative gradient error against depth, one line per dtype, and the usable threshold."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for dtype in sorted({r["dtype"] for r in view["rows"]}):
        rows = [r for r in view["rows"] if r["dtype"] == dtype]
        ax.semilogy([r["depth"] for r in rows], [max(r["rel_err"], 1e-17) for r in rows], "o-",
                    label=dtype)
    ax.axhline(view["usable_rel_err"], color="grey", ls="--", lw=1, label="usable below")
    ax.set(xlabel="depth 6n + 2", ylabel="relative gradient error",
           title=f"reversible vs ordinary HBNet, beta = {view['beta']:.2f}")
    ax.legend()
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# widgets
# --------------------------------------------------------------------------------------------


def _show(fig: Any) -> None:
    import matplotlib.pyplot as plt

    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        get_ipython = None  # type: ignore[assignment]
    if get_ipython is not None and get_ipython() is not None:
        display(fig)
    plt.close(fig)


class Explorer(widgets.VBox):
    """Controls above an ``interactive_output``. ``view(**values)`` is the pure computation,
    ``draw(view)`` makes the figure. ``history`` holds the control values of every redraw and
    ``last`` the latest view, so tests can drive the widget by setting a control's ``.value``."""

    def __init__(self, controls: dict[str, Any], view: Callable[..., dict[str, Any]],
                 draw: Callable[[dict[str, Any]], Any] | None, title: str = "") -> None:
        super().__init__()
        self.controls = controls
        self.view = view
        self.draw = draw
        self.history: list[dict[str, Any]] = []
        self.last: dict[str, Any] | None = None
        self.output = widgets.interactive_output(self._update, controls)
        shown = [w for w in controls.values() if isinstance(w, widgets.DOMWidget)]
        header = [widgets.HTML(f"<b>{title}</b>")] if title else []
        self.children = (*header, widgets.VBox(shown), self.output)

    def _update(self, **values: Any) -> None:
        self.history.append(dict(values))
        self.last = self.view(**values)
        if self.draw is not None:
            _show(self.draw(self.last))


def beta_explorer(beta: float = 0.81, kappa: float = 100.0, num_steps: int = 60,
                  agd_beta: float | None = None, draw: bool = True) -> Any:
    """Sliders for the HB and AGD momenta and log10(kappa); redraws :func:`draw_beta_view`."""
    agd_default = alg.strongly_convex_beta(1.0 / kappa) if agd_beta is None else agd_beta
    style = {"description_width": "initial"}
    controls = {
        "beta": widgets.FloatSlider(value=beta, min=0.0, max=0.99, step=0.01,
                                    description="HB beta", continuous_update=False, style=style),
        "agd_beta": widgets.FloatSlider(value=round(agd_default, 2), min=0.0, max=0.99,
                                        step=0.01, description="AGD beta",
                                        continuous_update=False, style=style),
        "kappa": widgets.FloatLogSlider(value=kappa, base=10, min=0, max=4, step=0.1,
                                        description="kappa", continuous_update=False,
                                        style=style),
        "num_steps": widgets.IntSlider(value=num_steps, min=10, max=300, step=10,
                                       description="layers", continuous_update=False,
                                       style=style),
    }
    return Explorer(controls, beta_view, draw_beta_view if draw else None,
                             "Momentum explorer: GD (7) vs HB (10) vs AGD (11) on a quadratic")


def activation_explorer(activation: str = "tanh", lam1: float = 0.3, lam2: float = 0.9,
                        angle: float = 30.0, num_layers: int = 30, draw: bool = True) -> Any:
    """Pick the activation, W's eigenvalues and its rotation; redraws
    :func:`draw_activation_view`."""
    get_activation(activation)
    style = {"description_width": "initial"}
    slider = dict(min=0.05, max=12.0, step=0.05, continuous_update=False, style=style)
    controls = {
        "activation": widgets.Dropdown(options=activation_names(), value=activation,
                                       description="activation", style=style),
        "lam1": widgets.FloatSlider(value=lam1, description="eig 1 of W", **slider),
        "lam2": widgets.FloatSlider(value=lam2, description="eig 2 of W", **slider),
        "angle": widgets.FloatSlider(value=angle, min=0.0, max=180.0, step=5.0,
                                     description="rotation (deg)", continuous_update=False,
                                     style=style),
        "num_layers": widgets.fixed(num_layers),
    }
    return Explorer(controls, activation_view,
                             draw_activation_view if draw else None,
                             "Cost explorer: the network (7) is GD on F(z) = f(Uz)")


def reversible_explorer(beta: float = 0.5, blocks: Sequence[int] = (4, 8, 16),
                        draw: bool = True) -> Any:
    """A beta slider; redraws :func:`draw_reversible_view` (a second or two per redraw on a CPU)."""
    style = {"description_width": "initial"}
    controls = {
        "beta": widgets.FloatSlider(value=beta, min=0.05, max=0.95, step=0.05,
                                    description="HB beta", continuous_update=False, style=style),
        "blocks": widgets.fixed(tuple(blocks)),
    }
    return Explorer(controls, reversible_view, draw_reversible_view if draw else None,
                    "Reversible HBNet: where does reconstructing z_{k-1} stop being exact?")
