"""Collapse remedies on hand-made weights and histories: the P-DARTS skip cap (optnb.nas.derive),
the DARTS+ early-stop rule and its ``fit`` callback (optnb.nas.collapse, optnb.train.engine), and
the parameter-free-ops plot (optnb.nas.plots)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from optnb import data  # noqa: E402
from optnb.nas import plots  # noqa: E402
from optnb.nas.collapse import (  # noqa: E402
    EarlyStop,
    count_skips,
    ranking,
    run_label,
    search_histories,
    should_stop,
    skip_positions,
)
from optnb.nas.derive import derive, derive_cell  # noqa: E402
from optnb.nas.errors import NasError  # noqa: E402
from optnb.nas.operations import DARTS_PRIMITIVES, PRIMITIVES  # noqa: E402
from optnb.train import Callback, FitOptions, fit, read_jsonl, recipes  # noqa: E402

P8, P9 = DARTS_PRIMITIVES, PRIMITIVES
SKIP, NEG = P9.index("skip_connect"), P9.index("neg_skip_connect")


def op(name: str, prims=P8) -> int:
    return prims.index(name)


def uniform(rows: int, prims=P8) -> np.ndarray:
    return np.full((rows, len(prims)), 1.0 / len(prims))


def skips(cell) -> int:
    return sum(name in ("skip_connect", "neg_skip_connect") for name, _ in cell)


# ------------------------------------------------------------------------------------ skip cap
def collapsed_darts() -> np.ndarray:
    """Every node keeps its two lowest edges, each with skip_connect at a distinct weight."""
    w = uniform(14)
    rows = [0, 1, 2, 3, 5, 6, 9, 10]  # the two lowest edges of nodes 0..3
    for n, r in enumerate(rows):
        w[r, op("skip_connect")] = 0.50 + 0.01 * n  # row 0 weakest ... row 10 strongest
        w[r, op("sep_conv_3x3")] = 0.30
    return w


def test_cap_off_is_the_plain_rule_and_cap_replaces_the_weakest_skips():
    w = collapsed_darts()
    plain = derive_cell("darts", w, P8)
    assert derive_cell("darts", w, P8, max_skip=None) == plain
    assert skips(plain) == 8
    capped = derive_cell("darts", w, P8, max_skip=2)
    assert skips(capped) == 2
    # the two strongest skips (rows 9 and 10: node 3, from states 0 and 1) survive, the other
    # edges get their strongest non-skip, non-none op in place of the skip
    assert capped[6:] == [("skip_connect", 1), ("skip_connect", 0)]
    assert capped[:6] == [("sep_conv_3x3", 0), ("sep_conv_3x3", 1)] * 3
    assert skips(derive_cell("darts", w, P8, max_skip=0)) == 0
    assert derive_cell("darts", w, P8, max_skip=8) == plain


def test_cap_reranks_the_edges_of_the_node_as_pdarts_does():
    w = uniform(14)
    # node 1 (rows 2, 3, 4): rows 2 and 3 win with skips; row 4 has a strong conv
    w[2, op("skip_connect")], w[2, op("dil_conv_3x3")] = 0.6, 0.15
    w[3, op("skip_connect")], w[3, op("sep_conv_3x3")] = 0.7, 0.45
    w[4, op("sep_conv_5x5")] = 0.4
    assert derive_cell("darts", w, P8)[2:4] == [("skip_connect", 1), ("skip_connect", 0)]
    capped = derive_cell("darts", w, P8, max_skip=1)
    # row 2's skip (weaker) is masked; row 2's best left (0.15) now loses to row 4 (0.4)
    assert capped[2:4] == [("skip_connect", 1), ("sep_conv_5x5", 2)]


def test_cap_ties_mask_the_lower_edge_then_the_lower_op_first():
    w = uniform(14)
    w[0, op("skip_connect")] = w[1, op("skip_connect")] = 0.5  # tied skips on node 0
    w[0, op("dil_conv_5x5")] = w[1, op("avg_pool_3x3")] = 0.2
    capped = derive_cell("darts", w, P8, max_skip=1)
    assert capped[:2] == [("skip_connect", 1), ("dil_conv_5x5", 0)]  # row 0 (lower) lost its skip
    # replacement ties: equal non-skip weights go to the lower op index (max_pool_3x3)
    w[0, op("dil_conv_5x5")] = 1.0 / 8
    assert derive_cell("darts", w, P8, max_skip=1)[1] == ("max_pool_3x3", 0)


def test_cap_counts_negative_identities_and_respects_the_hb_pair_option():
    w = uniform(12, P9)
    for i in range(4):  # the eq. (18) init after the search: o2 identity, o negative identity
        w[3 * i + 1, SKIP] = 0.8
        w[3 * i + 2, NEG] = 0.7 + 0.01 * i
        w[3 * i + 1, op("sep_conv_3x3", P9)] = 0.15
        w[3 * i + 2, op("dil_conv_3x3", P9)] = 0.15
    plain = derive_cell("hb", w, P9)
    assert skips(plain) == 8
    capped = derive_cell("hb", w, P9, max_skip=2)
    # the weakest are the 4 negative identities (0.70 .. 0.73), then the identities tied at 0.8
    # of the lower rows (nodes 0 and 1); each slot gets its strongest other op
    assert [capped[3 * i + 2] for i in range(4)] == [("dil_conv_3x3", i) for i in range(4)]
    assert [capped[3 * i + 1] for i in range(4)] == [("sep_conv_3x3", 1), ("sep_conv_3x3", 2),
                                                     ("skip_connect", 3), ("skip_connect", 4)]
    assert [capped[3 * i] for i in range(4)] == [plain[3 * i] for i in range(4)]  # o1 untouched
    # hb_pair: the pair is HB structure, not collapse: nothing is capped
    assert derive_cell("hb", w, P9, max_skip=0, hb_pair=True) == plain
    w[0, SKIP] = 0.9  # o1 of node 0 becomes an identity too: the weaker of the two counts
    capped = derive_cell("hb", w, P9, max_skip=0, hb_pair=True)
    assert capped[:3] == [("skip_connect", 1), ("sep_conv_3x3", 1), ("neg_skip_connect", 0)]
    assert capped[3:] == plain[3:]


def test_cap_pooled_and_agd_rules_and_bad_options():
    w = uniform(12, P9)
    w[0:3, SKIP] = [0.5, 0.6, 0.7]
    gene = derive_cell("hb", w, P9, rule="pooled", max_skip=1)
    # uniform nodes 1-3 first lose their tied 1/9 skips (lower rows first), then node 0 its two
    # weakest; its third pick falls to the tied 1/9 ops of the lowest row (o1), lower op first
    assert gene[:3] == [("skip_connect", 0), ("max_pool_3x3", 1), ("avg_pool_3x3", 1)]
    assert skips(gene) == 1 and gene[3:6] == [("max_pool_3x3", 2), ("avg_pool_3x3", 2), ("sep_conv_3x3", 2)]
    w = collapsed_darts()
    w9 = np.concatenate([w, np.full((14, 1), 1.0 / 8)], axis=1)
    p = np.full(14, 0.5)
    assert skips(derive_cell("agd", w9, P9, path_weights=p, max_skip=3)) == 3
    with pytest.raises(NasError, match="max_skip"):
        derive("darts", w, w, P8, max_skip=-1)
    with pytest.raises(NasError, match="hb_pair"):
        derive("darts", w, w, P8, max_skip=2, hb_pair=True)
    g = derive("darts", w, w, P8, max_skip=2)
    assert skips(g.normal) == 2 and skips(g.reduce) == 8  # the reduction cell is never capped
    with pytest.raises(NasError, match="no candidate"):
        derive_cell("darts", np.full((14, 2), 0.5), ("none", "skip_connect"), max_skip=0)


def test_skip_positions_hb_pair_exempts_one_pair_per_node():
    cell = [("skip_connect", 1), ("skip_connect", 1), ("neg_skip_connect", 0),
            ("sep_conv_3x3", 2), ("neg_skip_connect", 2), ("neg_skip_connect", 1)]
    assert skip_positions(cell) == [0, 1, 2, 4, 5]
    assert skip_positions(cell, hb_pair=True) == [1, 4]  # first of each pair member exempt
    assert skip_positions(cell, hb_pair=True, strength=[0.1, 0.9, 0.5, 0, 0.5, 0.5]) == [0, 4]
    assert count_skips(cell, hb_pair=True) == 2


# ------------------------------------------------------------------------------ DARTS+ rule
def record(epoch: int, normal, alpha=None, reduce=None, **extra) -> dict:
    alpha = uniform(14) if alpha is None else alpha
    return {"epoch": epoch, "genotype": {"normal": normal, "normal_concat": [2, 3, 4, 5],
                                         "reduce": reduce or normal, "reduce_concat": [2, 3, 4, 5]},
            "alpha_normal": np.asarray(alpha).tolist(), "alpha_reduce": np.asarray(alpha).tolist(),
            "param_free": {"normal": skips(normal), "reduce": skips(reduce or normal)}, **extra}


CONV = [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]] * 4


def test_ranking_ties_go_to_the_lower_index():
    assert ranking([[0.2, 0.5, 0.2, 0.1]]) == ((1, 0, 2, 3),)
    assert ranking(np.full((1, 3), 1 / 3)) == ((0, 1, 2),)


def test_darts_plus_stops_at_two_skips_in_the_normal_cell():
    one = [["skip_connect", 0], *CONV[1:]]
    two = [["skip_connect", 0], ["neg_skip_connect", 1], *CONV[2:]]
    assert should_stop([record(1, one)]) is None
    reason = should_stop([record(1, one), record(2, two)])
    assert reason.startswith("darts+") and "2 skip connections" in reason and "epoch 2" in reason
    assert should_stop([record(1, CONV, reduce=two)]) is None  # reduction cells do not count
    assert should_stop([record(1, two)], max_skip=3) is None
    assert should_stop([record(1, two)], max_skip=None) is None
    hb = [["sep_conv_3x3", 1], ["skip_connect", 1], ["neg_skip_connect", 0]]
    hb_cell = [(n, s + i) for i in range(4) for n, s in hb]
    rec = {"epoch": 1, "genotype": {"normal": hb_cell, "normal_concat": [2, 3, 4, 5],
                                    "reduce": hb_cell, "reduce_concat": [2, 3, 4, 5]},
           "alpha_normal": uniform(12, P9).tolist(), "alpha_reduce": uniform(12, P9).tolist()}
    assert "8 skip connections" in should_stop([rec])
    assert should_stop([rec], hb_pair=True) is None


def test_darts_plus_stops_when_the_ranking_is_stable_for_n_epochs():
    a = uniform(14)
    a[:, op("sep_conv_3x3")] = 0.3
    b = a.copy()
    b[5, op("dil_conv_5x5")] = 0.2  # a rank change on one edge, same genotype
    hist = [record(1, CONV, b)] + [record(e, CONV, a) for e in range(2, 5)]
    assert should_stop(hist, stable_epochs=3) is None  # epochs 2-4: only 2 epochs unchanged
    hist.append(record(5, CONV, a * 1.0001))  # values move, ranking does not
    reason = should_stop(hist, stable_epochs=3)
    assert reason is not None and "stable for 3 epochs" in reason and "epochs 2-5" in reason
    assert should_stop(hist, stable_epochs=4) is None
    assert should_stop(hist, stable_epochs=0) is None and should_stop(hist, stable_epochs=None) is None
    # a genotype change with the same alpha order also resets the window
    other = [["sep_conv_3x3", 1], ["sep_conv_3x3", 0], *CONV[2:]]
    hist[2] = record(3, other, a)
    assert should_stop(hist, stable_epochs=3) is None
    # ties: exactly equal weights rank by index every epoch, so they are stable
    flat = [record(e, CONV, uniform(14)) for e in range(1, 4)]
    assert should_stop(flat, stable_epochs=2) is not None
    # step/start records of a metrics.jsonl are ignored; an empty history never stops
    assert should_stop([{"kind": "start"}, *flat, {"kind": "step", "loss": 1.0}], stable_epochs=2)
    assert should_stop([]) is None


# --------------------------------------------------------------------- the clean stop in fit
class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


class StopAt(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch, self.seen = epoch, []

    def stop_reason(self, history):
        self.seen.append(len(history))
        return f"enough at {history[-1]['epoch']}" if history[-1]["epoch"] >= self.epoch else None


def _fit(run_dir, callbacks, epochs=4, **opts):
    x, y = data.load("synthetic", num_samples=16, image_size=8, seed=1)
    train = data.GpuLoader(x, y, 8, seed=0, mean=data.MEAN["synthetic"], std=data.STD["synthetic"])
    test = data.make_loader("synthetic", x[:8], y[:8], 8, train=False)
    torch.manual_seed(0)
    model = Tiny()
    recipe = recipes.get("densenet_cifar").replace(epochs=epochs, batch_size=8, milestones=(0.5,))
    options = FitOptions(steps_per_epoch=1, log_every=0, **opts)
    return fit(model, train, recipe, test=test, device="cpu", run_dir=run_dir, callbacks=callbacks,
               options=options)


def test_stop_reason_ends_fit_cleanly_and_resume_trains_no_more(tmp_path):
    cb = StopAt(2)
    res = _fit(tmp_path, [cb], eval_every=3)
    assert res.epochs_run == 2 and res.epochs_planned == 4
    assert res.complete and res.stopped_early == "enough at 2" and cb.seen == [1, 2]
    last = res.history[-1]
    assert last["stopped_early"] == "enough at 2" and "test_loss" in last  # evaluated on stopping
    assert "stopped_early" not in res.history[0] and "test_loss" not in res.history[0]
    epochs = read_jsonl(tmp_path / "metrics.jsonl", "epoch")
    assert [r["epoch"] for r in epochs] == [1, 2] and epochs[-1]["stopped_early"] == "enough at 2"
    assert read_jsonl(tmp_path / "metrics.jsonl", "end")[-1]["stopped_early"] == "enough at 2"
    before = (tmp_path / "checkpoint.pt").read_bytes()
    again = _fit(tmp_path, [StopAt(99)], resume=True)
    assert again.resumed_from == 2 and again.epochs_run == 2 and again.complete
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_no_stop_reason_and_last_epoch_are_never_early(tmp_path):
    res = _fit(tmp_path / "a", [Callback()], epochs=2)
    assert res.epochs_run == 2 and res.stopped_early is None and "stopped_early" not in res.summary()
    res = _fit(tmp_path / "b", [StopAt(2)], epochs=2)  # fires on the last planned epoch
    assert res.stopped_early is None and res.complete


def test_a_rank_without_callbacks_stops_when_rank_0_does(tmp_path, monkeypatch):
    """DDP: callbacks run on rank 0 only; the stop flag is all-reduced, so rank 1 stops too."""
    from optnb.train import distributed

    def all_reduce_sum(values):  # rank 0 (not this process) votes to stop
        return values + 1 if values.numel() == 1 else values

    monkeypatch.setattr(distributed, "current", lambda: distributed.DistInfo(rank=1, world_size=2))
    monkeypatch.setattr(distributed, "wrap", lambda model, *a, **k: model)
    monkeypatch.setattr(distributed, "all_reduce_sum", all_reduce_sum)
    res = _fit(None, [StopAt(1)], eval_every=3)  # rank 1 runs no callback at all
    assert res.epochs_run == 1 and res.stopped_early == "stopped early by rank 0"
    assert "test_loss" in res.history[-1]


def test_early_stop_callback_reads_the_whole_history_after_the_warm_up():
    a = uniform(14)
    hist = [record(e, CONV, a) for e in range(1, 4)]
    assert EarlyStop(stable_epochs=2).stop_reason(hist) is not None
    assert EarlyStop(stable_epochs=3).stop_reason(hist) is None
    assert EarlyStop(stable_epochs=2, after_epoch=1).stop_reason(hist) is None  # warm-up ignored
    two = [["skip_connect", 0], ["skip_connect", 1], *CONV[2:]]
    warm = [record(1, two, a), record(2, CONV, a)]  # the init cell (epoch 1) does not count
    assert should_stop(warm, stable_epochs=None, after_epoch=1) is None
    assert should_stop(warm[:1], stable_epochs=None, after_epoch=1) is None
    assert should_stop(warm[:1], stable_epochs=None) is not None


def test_search_histories_labels_and_filters_runs(tmp_path):
    import json

    def write(run, start, epochs):
        (tmp_path / run).mkdir()
        lines = [{"kind": "search", **start}, *({"kind": "epoch", **r} for r in epochs)]
        (tmp_path / run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))

    write("a", {"space": "hb", "init": "hb", "seed": 0, "C": 4}, [record(1, CONV)])
    write("b", {"space": "hb", "init": "hb", "seed": 0, "C": 4}, [record(1, CONV), record(2, CONV)])
    write("c", {"space": "darts", "init": "random", "seed": 0, "C": 16}, [record(1, CONV)])
    (tmp_path / "d").mkdir()  # a folder without a log
    write("e", {"space": "hb", "init": "hb", "seed": 1, "C": 4}, [])  # still in its first epoch
    runs = search_histories(tmp_path, like={"C": 4})
    assert list(runs) == ["space hb, init hb, seed 0", "space hb, init hb, seed 0 (b)"]
    assert [len(r) for r in runs.values()] == [2, 3]
    assert list(search_histories(tmp_path)) == [*runs, "space darts, init random, seed 0"]


# ------------------------------------------------------------------------------------- plot
def test_plot_param_free_draws_every_run_and_cell():
    collapsing = [{"kind": "search", "space": "darts", "init": "random", "seed": 0}]
    collapsing += [record(e, CONV[:8 - 2 * e] + [["skip_connect", 0]] * (2 * e)) for e in range(1, 4)]
    collapsing[-1]["stopped_early"] = "darts+"
    steady = [record(e, CONV) for e in range(1, 5)] + [{"kind": "step", "loss": 1.0}]
    label = run_label(collapsing)
    assert label == "space darts, init random, seed 0" and run_label(steady) == "run"
    fig, ax = plt.subplots()
    plots.plot_param_free(ax, {label: collapsing, "steady": steady})
    lines = [ln for ln in ax.get_lines() if ln.get_label() and not ln.get_label().startswith("_")]
    assert [ln.get_label() for ln in lines] == [f"{label} (normal)", f"{label} (reduce)",
                                               "steady (normal)", "steady (reduce)"]
    assert list(lines[0].get_ydata()) == [2, 4, 6] and list(lines[0].get_xdata()) == [1, 2, 3]
    assert list(lines[2].get_ydata()) == [0, 0, 0, 0]
    marks = [ln for ln in ax.get_lines() if ln.get_marker() == "x"]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [3]
    fig.canvas.draw()
    plt.close(fig)
    with pytest.raises(ValueError, match="at least one run"):
        plots.plot_param_free(ax, {})
