"""Figures (optnb.nas.plots): heatmaps, cells of any arity, the live search monitor."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402

from optnb.nas import genotypes as G  # noqa: E402
from optnb.nas.edges import space_edges  # noqa: E402
from optnb.nas.operations import PRIMITIVES  # noqa: E402
from optnb.nas.plots import (  # noqa: E402
    SearchMonitor,
    draw_cell,
    draw_genotype,
    edge_labels,
    plot_alpha,
    plot_path_weights,
)


def hb_genotype():
    ops = [(n, i) for k in range(4) for n, i in
           (("sep_conv_3x3", k + 1), ("skip_connect", k + 1), ("neg_skip_connect", k))]
    return G.Genotype(ops, [2, 3, 4, 5], ops, [2, 3, 4, 5])


def arrows(ax) -> int:
    return sum(isinstance(p, FancyArrowPatch) for p in ax.patches)


def test_draw_cell_any_arity():
    for genotype, ops in ((G.get("DARTS_V2"), 8), (hb_genotype(), 12)):
        fig = Figure()
        ax = fig.add_subplot()
        draw_cell(ax, genotype, "normal")
        assert arrows(ax) == ops + 4  # one per op plus the 4 concat edges
        labels = {t.get_text() for t in ax.texts}
        assert {"c_{k-2}", "c_{k-1}", "0", "3", "c_k"} <= labels
    fig = Figure()
    draw_genotype(fig, hb_genotype(), "HB")
    assert len(fig.axes) == 2


def test_heatmaps_have_one_row_per_edge():
    fig = Figure()
    ax = fig.add_subplot()
    plot_alpha(ax, np.full((12, 9), 1 / 9), "hb", PRIMITIVES)
    assert len(ax.get_yticklabels()) == 12
    assert edge_labels(space_edges("hb"))[:3] == ["c_{k-1}->0 o1", "c_{k-1}->0 o2",
                                                  "c_{k-2}->0 o"]
    ax = fig.add_subplot()
    plot_path_weights(ax, np.full(14, 0.3), "agd")
    grid = ax.images[0].get_array()
    assert grid.shape == (4, 5) and np.ma.is_masked(grid[0, 2])  # node 0 has no edge from 2


def test_search_monitor_draws_records(tmp_path):
    record = {"epoch": 1, "train_loss": 2.3, "search_val_loss": 2.3, "train_acc": 10.0,
              "val_acc": 10.0, "alpha_normal": np.full((14, 9), 1 / 9).tolist(),
              "alpha_reduce": np.full((14, 9), 1 / 9).tolist(),
              "path_normal": [0.5] * 14, "param_free": {"normal": 2, "reduce": 3},
              "genotype": G.to_dict(G.get("DARTS_V2"))}
    monitor = SearchMonitor("agd", PRIMITIVES, mode="off", save_to=tmp_path / "search.png")
    monitor.on_step(1, {"loss": 2.4, "epoch": 0.5})
    assert monitor.state["steps"] == []  # no per-step drawing when nothing is shown
    monitor.on_epoch_end(0, record)
    fig = monitor.close()
    assert (tmp_path / "search.png").stat().st_size > 0
    assert len(fig.axes) >= 5
