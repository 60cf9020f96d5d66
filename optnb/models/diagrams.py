"""Block diagrams of HBNet (10) and AGDNet (12) drawn with matplotlib, for notebook 05.

Both functions draw onto a given ``Axes`` and return it; the AGDNet edge labels are the
coefficients ``c_{k,j}`` computed by ``optnb.theory`` (not typed in).
"""

from __future__ import annotations

from matplotlib.axes import Axes

from optnb.models.cifar_densenet import agd_coefficients

__all__ = ["draw_agd_block", "draw_hb_block"]

_NODE = {"boxstyle": "round,pad=0.3", "fc": "#e8f0fe", "ec": "#3b6fb6"}
_BRANCH = {"boxstyle": "round,pad=0.3", "fc": "#fdf1e3", "ec": "#c77d1a"}
_SUM = {"boxstyle": "circle,pad=0.15", "fc": "white", "ec": "black"}


def _box(ax: Axes, xy: tuple[float, float], text: str, style: dict) -> None:
    ax.text(*xy, text, ha="center", va="center", fontsize=11, bbox=style, zorder=3)


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], label: str = "",
           rad: float = 0.0, color: str = "black", label_at: float = 0.5,
           offset: tuple[float, float] = (0.0, 0.12)) -> None:
    ax.annotate("", xy=end, xytext=start, zorder=2,
                arrowprops={"arrowstyle": "-|>", "color": color, "shrinkA": 14, "shrinkB": 14,
                            "connectionstyle": f"arc3,rad={rad}"})
    if label:
        x = start[0] + label_at * (end[0] - start[0]) + offset[0]
        y = start[1] + label_at * (end[1] - start[1]) + offset[1]
        ax.text(x, y, label, ha="center", va="center", fontsize=9, color=color, zorder=4)


def draw_hb_block(ax: Axes, beta: float | None = None, num_blocks: int = 3) -> Axes:
    """Unrolled HBNet, eq. (10) relaxed: ``z_{k+1} = relu(z_k + F_k(z_k) + beta (z_k - z_{k-1}))``.

    The identity path carries ``(1 + beta) z_k``, the momentum edge ``-beta z_{k-1}``;
    ``beta = 0`` removes the momentum edges and leaves ResNet.
    """
    b = "\u03b2" if beta is None else f"{beta:g}"
    step = 3.0
    for k in range(num_blocks + 1):
        _box(ax, (k * step, 0.0), f"$z_{{{k}}}$", _NODE)
    for k in range(num_blocks):
        x0, x1 = k * step, (k + 1) * step
        sum_xy, branch_xy = (x1 - 0.9, 0.0), (x0 + 1.1, 1.1)
        _box(ax, branch_xy, f"$F_{{{k}}}$", _BRANCH)
        _box(ax, sum_xy, "+", _SUM)
        _arrow(ax, (x0, 0.0), branch_xy)
        _arrow(ax, branch_xy, sum_xy)
        _arrow(ax, (x0, 0.0), sum_xy, f"1+{b}" if k else "1", offset=(0.0, -0.2))
        _arrow(ax, sum_xy, (x1, 0.0), "ReLU", offset=(0.0, 0.2))
        if k >= 1:
            _arrow(ax, ((k - 1) * step, 0.0), sum_xy, f"\u2212{b}", rad=0.35, color="#b22222",
                   label_at=0.5, offset=(0.0, -0.75))
    ax.text(-0.4, -1.6, f"$z_{{-1}} := z_0$; red: momentum $-{b}\\,z_{{k-1}}$ (eq. (10))",
            fontsize=9, color="#b22222", ha="left")
    ax.set_xlim(-0.8, num_blocks * step + 0.8)
    ax.set_ylim(-2.0, 1.8)
    ax.set_title("HBNet block: $z_{k+1} = z_k + F_k(z_k) + \\beta(z_k - z_{k-1})$")
    ax.axis("off")
    return ax


def draw_agd_block(ax: Axes, num_layers: int = 3, beta: float | None = None) -> Axes:
    """One AGDNet dense block: layer ``k`` reads ``y_k = y_0 + sum_{j<k} c_{k,j} F_j(y_j)``.

    Edge ``F_j -> y_k`` is labelled with ``c_{k,j}`` (cumulative form of (12), from the theory
    module); all labels equal to 1 give DenseNet.
    """
    table = agd_coefficients(num_layers, beta)
    step, top = 3.0, 1.2
    for k in range(num_layers + 1):
        label = f"$y_{{{k}}}$" if k < num_layers else f"$y_{{{k}}}$ (block out)"
        _box(ax, (k * step, 0.0), label, _NODE)
    edges = sorted((k - j, j, k) for j in range(num_layers) for k in range(j + 2, num_layers + 1))
    levels = {(j, k): i for i, (_, j, k) in enumerate(edges)}
    for j in range(num_layers):
        branch = (j * step + 1.2, top)
        _box(ax, branch, f"$F_{{{j}}}$", _BRANCH)
        _arrow(ax, (j * step, 0.0), branch)
        _arrow(ax, branch, ((j + 1) * step, 0.0), f"{table[j + 1, j]:.3f}", color="#c77d1a",
               label_at=0.4, offset=(0.45, 0.05))
        for k in range(j + 2, num_layers + 1):
            level = top + 0.7 + 0.45 * levels[(j, k)]
            x_up = branch[0] + 0.12 * (k - j - 1)
            x_down = k * step - 0.25 * (k - j - 1)
            ax.plot([x_up, x_up, x_down], [top + 0.3, level, level], color="#c77d1a", lw=1)
            ax.annotate("", xy=(x_down, 0.3), xytext=(x_down, level), zorder=2,
                        arrowprops={"arrowstyle": "-|>", "color": "#c77d1a", "lw": 1})
            ax.text((x_up + x_down) / 2, level + 0.13, f"$c_{{{k},{j}}}$ = {table[k, j]:.3f}",
                    ha="center", fontsize=9, color="#c77d1a")
    for k in range(1, num_layers + 1):
        _arrow(ax, ((k - 1) * step, 0.0), (k * step, 0.0), "", color="#3b6fb6")
    ax.text(-0.4, -0.9, "blue: the concatenation carried forward ($y_0$ keeps coefficient 1); "
            "orange: $c_{k,j}$, applied to chunk $j$ after the consumer's BatchNorm",
            fontsize=9, ha="left")
    ax.set_xlim(-0.8, num_layers * step + 1.6)
    ax.set_ylim(-1.2, top + 1.3 + 0.45 * len(edges))
    ax.set_title("AGDNet block: $y_k = y_0 + \\sum_{j<k} c_{k,j} F_j(y_j)$  (eq. (12))")
    ax.axis("off")
    return ax
