"""Figures for the search: alpha and path-weight heatmaps, cells drawn with matplotlib (any
arity, no graphviz needed), the collapse diagnostic (parameter-free ops per epoch, several runs),
and a live search monitor built on ``optnb.live.LiveFigure``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from optnb.live import LiveFigure
from optnb.nas.edges import Edge, space_edges
from optnb.nas.genotypes import Genotype, arity, cell_steps, from_json, normalize
from optnb.nas.operations import PRIMITIVES
from optnb.train.callbacks import Callback

OP_COLORS = {
    "none": "#bbbbbb", "max_pool_3x3": "#1f77b4", "avg_pool_3x3": "#17becf",
    "skip_connect": "#2ca02c", "sep_conv_3x3": "#d62728", "sep_conv_5x5": "#ff7f0e",
    "dil_conv_3x3": "#9467bd", "dil_conv_5x5": "#8c564b", "neg_skip_connect": "#e377c2",
}
_SHORT = {"none": "none", "max_pool_3x3": "max3", "avg_pool_3x3": "avg3", "skip_connect": "id",
          "sep_conv_3x3": "sep3", "sep_conv_5x5": "sep5", "dil_conv_3x3": "dil3",
          "dil_conv_5x5": "dil5", "neg_skip_connect": "-id"}


def _state_name(index: int) -> str:
    return {0: "c_{k-2}", 1: "c_{k-1}"}.get(index, str(index - 2))


def edge_labels(edges: Sequence[Edge]) -> list[str]:
    """``"c_{k-1}->0"``-style row labels (with the HB slot)."""
    return [f"{_state_name(e.source)}->{e.node}" + (f" {e.slot}" if e.slot else "") for e in edges]


def plot_alpha(ax: Axes, weights: Any, space: str, primitives: Sequence[str] = PRIMITIVES,
               title: str = "softmax(alpha)", row_labels: bool = True) -> None:
    """Heatmap of the ``[edges, ops]`` mixing weights, one row per edge."""
    w = np.asarray(weights, dtype=float)
    edges = space_edges(space, cell_steps_from_rows(space, w.shape[0]))
    image = ax.imshow(w, aspect="auto", cmap="viridis", vmin=0.0, vmax=max(w.max(), 1e-9))
    ax.set_xticks(range(len(primitives)), [_SHORT.get(p, p) for p in primitives], rotation=60,
                  fontsize=7)
    ax.set_yticks(range(len(edges)), edge_labels(edges) if row_labels else [], fontsize=6)
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.02)


def cell_steps_from_rows(space: str, rows: int) -> int:
    """Number of nodes whose cell has ``rows`` edges in ``space``."""
    for steps in range(1, 16):
        if len(space_edges(space, steps)) == rows:
            return steps
    raise ValueError(f"no {space!r} cell has {rows} edges")


def plot_path_weights(ax: Axes, paths: Any, space: str = "agd",
                      title: str = "path weights p (eq. 21)") -> None:
    """Eq. (21) path weights as a node x source matrix (blank where no edge exists)."""
    p = np.asarray(paths, dtype=float).reshape(-1)
    edges = space_edges(space, cell_steps_from_rows(space, len(p)))
    steps = 1 + max(e.node for e in edges)
    grid = np.full((steps, steps + 1), np.nan)
    for value, e in zip(p, edges):
        grid[e.node, e.source] = value
    image = ax.imshow(grid, cmap="magma", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(steps + 1), [_state_name(i) for i in range(steps + 1)], fontsize=7)
    ax.set_yticks(range(steps), [f"node {i}" for i in range(steps)], fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.02)


def _bezier_edge(p0: tuple[float, float], p2: tuple[float, float],
                 rad: float) -> tuple[list[tuple[float, float]], tuple]:
    """A quadratic Bezier from p0 to p2 bent by ``rad`` (data coordinates), trimmed at both ends
    so that arrows stop at the node boxes; also returns the curve's midpoint."""
    (x0, y0), (x2, y2) = p0, p2
    length = max(((x2 - x0) ** 2 + (y2 - y0) ** 2) ** 0.5, 1e-9)
    t0, t1 = min(0.3, 0.13 / length), 1 - min(0.3, 0.17 / length)
    c = ((x0 + x2) / 2 + rad * (y2 - y0), (y0 + y2) / 2 - rad * (x2 - x0))

    def at(t: float) -> tuple[float, float]:
        a, b, d = (1 - t) ** 2, 2 * t * (1 - t), t * t
        return (a * x0 + b * c[0] + d * x2, a * y0 + b * c[1] + d * y2)

    q = tuple((1 - t0) * (1 - t1) * p + ((1 - t0) * t1 + t0 * (1 - t1)) * m + t0 * t1 * e
              for p, m, e in zip(p0, c, p2))
    return [at(t0), q, at(t1)], at(0.5)


def draw_cell(ax: Axes, genotype: Genotype, cell: str = "normal", title: str | None = None) -> None:
    """Draw one cell as a DAG: inputs left, nodes in the middle, the concat output right.

    Works for any arity; parallel edges between one pair of states (HB's o1/o2) are bent apart.
    """
    from matplotlib.path import Path as MplPath

    g = normalize(genotype)
    ops, concat = getattr(g, cell), list(getattr(g, f"{cell}_concat"))
    steps, k = cell_steps(concat), arity(g, cell)
    pos = {0: (0.0, 0.85), 1: (0.0, 0.15)}
    for i in range(steps):
        pos[i + 2] = (1.0 + i, 0.5 + (0.25 if i % 2 else -0.25))
    out = (steps + 1.0, 0.5)
    seen: dict[tuple[int, int], int] = {}
    codes = [MplPath.MOVETO, MplPath.CURVE3, MplPath.CURVE3]
    for j, (name, src) in enumerate(ops):
        dst = 2 + j // k
        n = seen.get((src, dst), 0)
        seen[(src, dst)] = n + 1
        rad = (0.08 if dst - src > 1 else 0.0) + 0.2 * n * (-1) ** n
        color = OP_COLORS.get(name, "black")
        verts, mid = _bezier_edge(pos[src], pos[dst], rad)
        ax.add_patch(FancyArrowPatch(path=MplPath(verts, codes), arrowstyle="-|>",
                                     mutation_scale=9, color=color, lw=1.3))
        ax.text(*mid, _SHORT.get(name, name), fontsize=6, color=color, ha="center", va="center",
                bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
    for idx in concat:
        verts, _ = _bezier_edge(pos[idx], out, 0.0)
        ax.add_patch(FancyArrowPatch(path=MplPath(verts, codes), arrowstyle="-|>",
                                     mutation_scale=7, color="#999999", lw=0.6, ls="--"))
    for idx, (x, y) in pos.items():
        face = "#cde3f5" if idx < 2 else "#fdf1c6"
        ax.text(x, y, _state_name(idx), ha="center", va="center", fontsize=7,
                bbox={"boxstyle": "round", "fc": face, "ec": "#555555"})
    ax.text(*out, "c_k", ha="center", va="center", fontsize=7,
            bbox={"boxstyle": "round", "fc": "#d9f2d0", "ec": "#555555"})
    ax.set_xlim(-0.5, steps + 1.5)
    ax.set_ylim(-0.05, 1.05)
    ax.axis("off")
    ax.set_title(title or f"{cell} cell (arity {k})", fontsize=9)


def draw_genotype(fig: Figure, genotype: Genotype, title: str = "") -> None:
    """Both cells side by side."""
    for i, cell in enumerate(("normal", "reduce")):
        draw_cell(fig.add_subplot(1, 2, i + 1), genotype, cell)
    if title:
        fig.suptitle(title, fontsize=10)


def plot_curves(ax: Axes, history: Sequence[dict[str, Any]],
                steps: Sequence[tuple[float, float]] = ()) -> None:
    """Train loss per step (thin) and per epoch; val/train accuracy per epoch (right axis)."""
    if steps:
        xs, ys = zip(*steps)
        ax.plot(xs, ys, color="#1f77b4", lw=0.6, alpha=0.5, label="train loss (steps)")
    if history:
        ep = [r["epoch"] for r in history]
        ax.plot(ep, [r["train_loss"] for r in history], "o-", color="#1f77b4", ms=3,
                label="train loss")
        ax.plot(ep, [r.get("search_val_loss", float("nan")) for r in history], "s--", color="#ff7f0e", ms=3,
                label="val loss (arch steps)")
        acc = ax.twinx()
        acc.plot(ep, [r["train_acc"] for r in history], "^-", color="#2ca02c", ms=3,
                 label="train acc")
        val = [(r["epoch"], r["val_acc"]) for r in history if r.get("val_acc") is not None]
        if val:
            acc.plot(*zip(*val), "v-", color="#d62728", ms=3, label="val acc")
        acc.set_ylim(0, 100)
        acc.set_ylabel("accuracy (%)", fontsize=7)
        acc.tick_params(labelsize=6)
        acc.legend(fontsize=6, loc="upper right")
    ax.set_xlabel("epoch")
    ax.set_title("search curves", fontsize=9)
    ax.legend(fontsize=6, loc="upper left")
    ax.grid(alpha=0.3)


def plot_param_free(ax: Axes, runs: Mapping[str, Sequence[dict[str, Any]]],
                    cells: Sequence[str] = ("normal", "reduce"), title: str | None = None) -> None:
    """Parameter-free ops (pools, skip, negative skip) of the derived cell per epoch, one colour per
    run (``label -> history``; ``optnb.nas.collapse.run_label`` and ``search_histories`` make
    them from search logs), a solid line for the normal cell, dashed for the reduction cell;
    an ``x`` marks an epoch where the search stopped early (``stopped_early``). Records without
    ``param_free`` (step and start records of a ``metrics.jsonl``) are skipped."""
    if not runs:
        raise ValueError("plot_param_free needs at least one run (label -> history records)")
    styles = {"normal": "o-", "reduce": "s--"}
    top = 0
    for i, (label, history) in enumerate(runs.items()):
        epochs = [r for r in history if isinstance(r, dict) and "param_free" in r]
        color = f"C{i % 10}"
        for cell in cells:
            ys = [r["param_free"][cell] for r in epochs]
            top = max([top, *ys])
            ax.plot([r["epoch"] for r in epochs], ys, styles.get(cell, "^:"), color=color, ms=3,
                    lw=1.2, label=f"{label} ({cell})")
        for r in epochs:
            if r.get("stopped_early"):
                ax.plot(r["epoch"], r["param_free"][cells[0]], "x", color=color, ms=9, mew=2)
    ax.set_ylim(-0.3, top + 0.7)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch")
    ax.set_ylabel("parameter-free ops in the derived cell")
    ax.set_title(title or "collapse: parameter-free ops per epoch", fontsize=9)
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)


def draw_search(fig: Figure, state: dict[str, Any]) -> None:
    """The live search panel: curves, alpha heatmaps (and AGD path weights), the current cell."""
    history, space = state.get("history", []), state["space"]
    primitives = state["primitives"]
    fig.set_layout_engine("constrained")
    grid = fig.add_gridspec(2, 3)
    plot_curves(fig.add_subplot(grid[0, 0]), history, state.get("steps", ()))
    if history:
        last = history[-1]
        plot_alpha(fig.add_subplot(grid[0, 1]), last["alpha_normal"], space, primitives,
                   "softmax(alpha) normal")
        plot_alpha(fig.add_subplot(grid[0, 2]), last["alpha_reduce"], space, primitives,
                   "softmax(alpha) reduce", row_labels=False)
        if "path_normal" in last:
            plot_path_weights(fig.add_subplot(grid[1, 0]), last["path_normal"], space)
        else:
            ax = fig.add_subplot(grid[1, 0])
            ep = [r["epoch"] for r in history]
            for cell, style in (("normal", "o-"), ("reduce", "s--")):
                ax.plot(ep, [r["param_free"][cell] for r in history], style, ms=3, label=cell)
            ax.set_title("parameter-free ops in derived cell", fontsize=9)
            ax.set_xlabel("epoch")
            ax.legend(fontsize=6)
        draw_cell(fig.add_subplot(grid[1, 1:]), from_json(last["genotype"]), "normal",
                  f"derived normal cell, epoch {last['epoch']}")
    fig.suptitle(state.get("title") or f"search space {space}", fontsize=10)


class SearchMonitor(Callback):
    """A ``fit`` callback (``search(..., callbacks=[monitor])``) that draws the search live:
    losses, softmax(alpha), path weights, parameter-free ops and the derived cell, throttled."""

    def __init__(self, space: str, primitives: Sequence[str], mode: str = "off",
                 save_to: str | Path | None = None, title: str = "",
                 min_interval: float = 1.0) -> None:
        self.state: dict[str, Any] = {"space": space, "primitives": list(primitives),
                                      "history": [], "steps": [], "title": title}
        self.live = mode != "off"  # headless: only the final figure, no per-step drawing
        self.figure = LiveFigure(draw_search, mode=mode, min_interval=min_interval,
                                 save_to=save_to, figsize=(13.0, 7.0))

    def on_fit_start(self, info: dict[str, Any]) -> None:
        self.state["history"] = []

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        if self.live:
            self.state["steps"].append((metrics["epoch"], metrics["loss"]))
            self.figure.update(self.state)

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        self.state["history"].append(metrics)
        self.figure.update(self.state, force=True)

    def close(self) -> Figure:
        return self.figure.close(self.state)
