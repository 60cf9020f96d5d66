"""Matplotlib figures for the theory notebooks (01-04) and the explorers in ``optnb.widgets``.

Each function draws into a given ``Axes`` (or makes one) and returns it; nothing is shown here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from optnb.theory.activations import get_activation

__all__ = [
    "COLORS",
    "plot_activations",
    "plot_coefficients",
    "plot_error_curves",
    "plot_iterations_vs_kappa",
    "plot_landscape",
    "plot_quadratic_paths",
]

COLORS = {"GD": "tab:blue", "HB": "tab:orange", "AGD": "tab:green"}


def _axes(ax: Any, figsize: tuple[float, float] = (5, 4)) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize)[1]


def _grid(points: np.ndarray, margin: float = 0.3, num: int = 121) -> tuple[np.ndarray, ...]:
    lo, hi = points.min(0), points.max(0)
    pad = margin * np.maximum(hi - lo, 1e-3) + 0.2
    gx = np.linspace(lo[0] - pad[0], hi[0] + pad[0], num)
    gy = np.linspace(lo[1] - pad[1], hi[1] + pad[1], num)
    X, Y = np.meshgrid(gx, gy)
    return X, Y, np.stack([X.ravel(), Y.ravel()], -1)


def plot_landscape(cost: Any, paths: Mapping[str, np.ndarray], ax: Any = None,
                   levels: int = 30, title: str = "") -> Any:
    """Contours of ``F(z) = f(U z)`` (2-D only) with layer outputs ``z_k`` drawn as paths."""
    if cost.n != 2:
        raise ValueError(f"landscapes need a 2 x 2 W, got {cost.n} x {cost.n}")
    ax = _axes(ax)
    pts = np.concatenate([np.asarray(p).reshape(-1, 2) for p in paths.values()])
    X, Y, flat = _grid(pts)
    Z = np.asarray(cost.F(flat)).reshape(X.shape)
    ax.contour(X, Y, Z, levels=levels, cmap="viridis", linewidths=0.7)
    styles = [dict(marker=".", ms=5, lw=1.2), dict(marker="o", ms=8, lw=0, mfc="none"),
              dict(marker="x", ms=6, lw=0)]
    for i, (name, p) in enumerate(paths.items()):
        p = np.asarray(p).reshape(-1, 2)
        ax.plot(p[:, 0], p[:, 1], label=name, color=COLORS.get(name.split()[0], f"C{i}"),
                **styles[i % len(styles)])
    ax.plot(*pts[0], "k*", ms=10, label="$z_0$")
    ax.set(xlabel="$z_1$", ylabel="$z_2$", title=title or "F(z) = f(Uz) and the layer outputs")
    ax.legend(fontsize=8)
    return ax


def plot_coefficients(H: np.ndarray, ax: Any = None, title: str = "", annotate: bool = True,
                      skip_row0: bool = True, ylabel: str = "k+1 (layer)") -> Any:
    """Heatmap of a lower-triangular coefficient table (rows ``k+1``, columns ``j``)."""
    ax = _axes(ax)
    M = np.asarray(H, dtype=float)
    rows = np.arange(M.shape[0])
    if skip_row0:
        M, rows = M[1:], rows[1:]
    mask = np.triu(np.ones_like(M, dtype=bool), k=1 if not skip_row0 else 1)
    shown = np.ma.array(M, mask=mask if skip_row0 else None)
    im = ax.imshow(shown, cmap="magma_r", aspect="auto")
    ax.figure.colorbar(im, ax=ax, shrink=0.8)
    ax.set_xticks(range(M.shape[1]))
    ax.set_yticks(range(M.shape[0]), [str(r) for r in rows])
    ax.set(xlabel="j (branch output of layer j)", ylabel=ylabel,
           title=title or r"$h_{k+1,j}$ of (5)")
    if annotate and M.shape[0] <= 12:
        for i in range(M.shape[0]):
            for j in range(min(M.shape[1], i + 1)):
                ax.text(j, i, f"{M[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="w" if M[i, j] > 0.6 * M.max() else "k")
    return ax


def plot_activations(names: Sequence[str], axes: Sequence[Any] | None = None,
                     t_range: tuple[float, float] = (-4.0, 4.0)) -> Sequence[Any]:
    """Phi (left) and its cost Psi (right) for each activation; non-monotone ones dashed."""
    if axes is None:
        import matplotlib.pyplot as plt

        axes = plt.subplots(1, 2, figsize=(10, 4))[1]
    t = np.linspace(*t_range, 401)
    for name in names:
        act = get_activation(name)
        style = "-" if act.monotone else "--"
        axes[0].plot(t, act.phi(t), style, label=act.label)
        axes[1].plot(t, act.psi(t) - act.psi(0.0), style, label=act.label)
    axes[0].set(title=r"activation $\Phi(t)$", xlabel="t")
    axes[1].set(title=r"cost $\Psi(t) - \Psi(0)$, $\Psi' = \Phi$", xlabel="t")
    axes[1].legend(fontsize=7)
    return axes


def plot_error_curves(curves: Mapping[str, np.ndarray], ax: Any = None,
                      theory: Mapping[str, float] | None = None, title: str = "",
                      ylabel: str = r"$\|z_k - z^*\|$") -> Any:
    """Semilog error against iteration / layer, with dotted ``rate^k`` lines when given."""
    ax = _axes(ax)
    for name, e in curves.items():
        e = np.asarray(e, dtype=float)
        k = np.arange(e.size)
        ax.semilogy(k, np.maximum(e, 1e-300), label=name, color=COLORS.get(name))
        if theory and name in theory:
            ax.semilogy(k, e[0] * theory[name] ** k, ":", color=COLORS.get(name),
                        label=f"{name} theory {theory[name]:.3f}$^k$")
    floor = min(float(np.min(np.maximum(np.asarray(e), 1e-300))) for e in curves.values())
    ax.set_ylim(bottom=max(floor, 1e-16))
    ax.set(xlabel="layer k (= iteration)", ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    return ax


def plot_iterations_vs_kappa(rows: Sequence[Mapping[str, Any]], ax: Any = None,
                             eps: float | None = None) -> Any:
    """Iterations to eps against kappa (log-log): GD ~ kappa, HB/AGD ~ sqrt(kappa)."""
    ax = _axes(ax)
    for m in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == m and r["iterations"]]
        k = [r["kappa"] for r in sel]
        ax.loglog(k, [r["iterations"] for r in sel], "o-", color=COLORS.get(m), label=m)
        ax.loglog(k, [r["predicted_iterations"] for r in sel], ":", color=COLORS.get(m))
    eps_txt = f" (eps = {eps:g})" if eps else ""
    ax.set(xlabel=r"condition number $\kappa$", ylabel="iterations to eps" + eps_txt,
           title="measured (o) vs predicted (dotted)")
    ax.legend(fontsize=8)
    return ax


def plot_quadratic_paths(eigenvalues: Sequence[float], paths: Mapping[str, np.ndarray],
                         ax: Any = None, title: str = "") -> Any:
    """Contours of ``x^T diag(eig) x / 2`` with 2-D iterate paths."""
    ax = _axes(ax)
    lam = np.asarray(eigenvalues, dtype=float)
    pts = np.concatenate([np.asarray(p) for p in paths.values()])
    X, Y, flat = _grid(pts, margin=0.1)
    Z = 0.5 * (lam * flat**2).sum(-1).reshape(X.shape)
    ax.contour(X, Y, Z, levels=np.geomspace(max(Z.min(), 1e-6), Z.max(), 15), cmap="Greys",
               linewidths=0.6)
    for name, p in paths.items():
        ax.plot(p[:, 0], p[:, 1], ".-", ms=3, lw=1, label=name, color=COLORS.get(name))
    ax.plot(0, 0, "k+", ms=10)
    ax.set(xlabel="$x_1$", ylabel="$x_2$", title=title)
    ax.legend(fontsize=8)
    return ax
