"""Stability of a search across seeds (optnb.nas.stability): Kendall's tau-b, chosen ops, the
group statistics on hand-made alphas worked out by hand, every refusal, reading run folders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from optnb.nas.errors import NasError  # noqa: E402
from optnb.nas.spaces import default_primitives  # noqa: E402
from optnb.nas.stability import (  # noqa: E402
    SeedSearch,
    StabilityError,
    chosen_ops,
    kendall_tau,
    plot_edge_tau,
    read_search,
    stability,
)

P = ("none", "skip_connect", "sep_conv_3x3", "max_pool_3x3")
Q = [0.25] * 4  # a constant row: no ranking, tau undefined

# 3 seeds, a "darts" cell of 1 node (2 edges) x the 4 ops of P.
NORMAL = [
    [[0.1, 0.2, 0.3, 0.4], [0.4, 0.2, 0.2, 0.2]],  # seed 0
    [[0.1, 0.2, 0.4, 0.3], [0.1, 0.3, 0.3, 0.3]],  # seed 1
    [[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]],  # seed 2
]
# edge 0: seeds 0 and 2 are identical (tau 1); seed 1 swaps the last two ops: 5 of 6 pairs
#   concordant, 1 discordant -> tau(0,1) = tau(1,2) = 4/6 = 2/3; mean (2/3 + 1 + 2/3) / 3 = 7/9.
#   chosen: max_pool (0.4), sep_conv (0.4), max_pool -> not all agree; pairs agree 0/1/0.
# edge 1: op 0 (none) vs the tied ops 1..3: only the 3 pairs with op 0 are untied, in x and in y.
#   seed 0 and 2 put none first, seed 1 last: tau(0,1) = -3/3 = -1, tau(0,2) = 1, tau(1,2) = -1;
#   mean -1/3. none is the largest weight in seeds 0 and 2 but never chosen; the three tied
#   ops -> the first, skip_connect, in every seed -> all agree.
# mean_tau = (7/9 - 1/3) / 2 = 2/9; agreement = 1/2 (edge 1); pairwise: (0,1) 1/2, (0,2) 1,
#   (1,2) 1/2 -> 2/3.
REDUCE = [
    [[0.1, 0.2, 0.3, 0.4], Q],  # seed 0
    [[0.4, 0.3, 0.2, 0.1], Q],  # seed 1
    [Q, Q],  # seed 2
]
# edge 0: seed 2 constant, so only pair (0,1) is defined: reversed -> tau -1 -> edge tau -1.
# edge 1: constant in every seed -> no defined pair -> nan; mean_tau over defined edges = -1.
# chosen: edge 0 max_pool, skip_connect (0.3), skip_connect (all tied: first non-none);
#   edge 1 skip_connect everywhere. agreement 1/2; pairwise (0,1) 1/2, (0,2) 1/2, (1,2) 1 -> 2/3.
SIZES = (3.1, 3.3, 3.8)


def make(seed: int, normal=None, reduce=None, space: str = "darts", primitives=P, params_m: float | None = 3.0,
         init: str | None = "random") -> SeedSearch:
    normal = NORMAL[seed % 3] if normal is None else normal
    reduce = REDUCE[seed % 3] if reduce is None else reduce
    return SeedSearch(seed=seed, space=space, primitives=tuple(primitives), init=init, params_m=params_m,
                      alphas={"normal": np.asarray(normal, dtype=np.float64),
                              "reduce": np.asarray(reduce, dtype=np.float64)}, run_id=f"run-{seed}")


def group(sizes=SIZES):
    return [make(s, params_m=p) for s, p in zip(range(3), sizes)]


# --- kendall_tau ---------------------------------------------------------------------------------

def test_kendall_tau_hand_worked():
    x = [0.3, 0.1, 0.5, 0.2]
    assert kendall_tau(x, x) == 1.0
    assert kendall_tau(x, [-v for v in x]) == -1.0
    assert math.isnan(kendall_tau([0.2] * 4, x)) and math.isnan(kendall_tau(x, [0.2] * 4))
    assert math.isnan(kendall_tau([1.0], [2.0]))
    # ties: pairs (0,1) (0,2) (0,3) (1,3) concordant; (1,2) tied in x, (2,3) tied in y
    # -> 4 / sqrt(5 * 5) = 0.8 (tau-a would give 4/6)
    assert kendall_tau([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8, abs=1e-15)
    # one swap of adjacent values among 4: (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(2 / 3, abs=1e-15)


def test_kendall_tau_matches_scipy_tau_b():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    checked_ties = 0
    for trial in range(300):
        n = int(rng.integers(2, 11))
        if trial % 2:  # few distinct values: many ties
            x, y = rng.integers(0, 3, n).astype(np.float64), rng.integers(0, 3, n).astype(np.float64)
        else:
            x, y = rng.random(n), rng.random(n)
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            assert math.isnan(kendall_tau(x, y))
            continue
        checked_ties += len(np.unique(x)) < n
        expected = stats.kendalltau(x, y, variant="b").statistic
        assert kendall_tau(x, y) == pytest.approx(expected, abs=1e-12)
    assert checked_ties > 50


def test_kendall_tau_refuses_mismatched_lengths():
    with pytest.raises(StabilityError, match="one length"):
        kendall_tau([1, 2, 3], [1, 2])
    assert issubclass(StabilityError, NasError) and issubclass(StabilityError, ValueError)


# --- chosen_ops ----------------------------------------------------------------------------------

def test_chosen_ops_skips_none_and_takes_the_first_of_ties():
    alpha = [[0.9, 0.01, 0.05, 0.04],  # none largest: sep_conv
             [0.1, 0.3, 0.3, 0.3],  # three-way tie: first non-none
             [0.1, 0.2, 0.35, 0.35],  # tie of the last two: sep_conv
             [0.25, 0.25, 0.25, 0.25]]  # all tied, none included: skip_connect
    assert chosen_ops(alpha, P) == ["sep_conv_3x3", "skip_connect", "sep_conv_3x3", "skip_connect"]
    # without a none op the argmax is plain
    assert chosen_ops([[0.1, 0.9]], ("skip_connect", "max_pool_3x3")) == ["max_pool_3x3"]


def test_chosen_ops_refusals():
    with pytest.raises(StabilityError, match=r"do not match 4 primitives"):
        chosen_ops([[0.5, 0.5]], P)
    with pytest.raises(StabilityError, match="every primitive is 'none'"):
        chosen_ops([[1.0]], ("none",))


# --- stability on hand-made alphas ---------------------------------------------------------------

def test_stability_normal_cell_by_hand():
    st = stability(group())
    assert st.seeds == (0, 1, 2) and st.space == "darts" and st.init == "random" and st.primitives == P
    np.testing.assert_allclose(st.edge_tau["normal"], [7 / 9, -1 / 3], rtol=0, atol=1e-15)
    assert st.edge_tau["normal"].dtype == np.float64
    assert st.mean_tau["normal"] == pytest.approx(2 / 9, abs=1e-15)
    assert st.agreement["normal"] == 0.5
    assert st.pairwise_agreement["normal"] == pytest.approx(2 / 3, abs=1e-15)
    assert st.chosen["normal"] == (("max_pool_3x3", "skip_connect"), ("sep_conv_3x3", "skip_connect"),
                                   ("max_pool_3x3", "skip_connect"))


def test_stability_undefined_pairs_are_left_out():
    st = stability(group())
    tau = st.edge_tau["reduce"]
    assert tau[0] == -1.0 and math.isnan(tau[1])
    assert st.mean_tau["reduce"] == -1.0
    assert st.agreement["reduce"] == 0.5
    assert st.pairwise_agreement["reduce"] == pytest.approx(2 / 3, abs=1e-15)
    assert st.chosen["reduce"][2] == ("skip_connect", "skip_connect")


def test_stability_identical_seeds_agree_fully():
    st = stability([make(0), make(5, normal=NORMAL[0], reduce=REDUCE[0])])
    np.testing.assert_array_equal(st.edge_tau["normal"], [1.0, 1.0])
    assert st.mean_tau["normal"] == 1.0 and st.agreement["normal"] == 1.0 and st.pairwise_agreement["normal"] == 1.0


def test_agreement_needs_every_seed_pairwise_does_not():
    # edge 0 chosen ops: sep, sep, max (2 of 3 pairs differ); edge 1: skip everywhere
    a = [[0.1, 0.2, 0.6, 0.1], [0.1, 0.6, 0.2, 0.1]]
    b = [[0.1, 0.2, 0.5, 0.2], [0.1, 0.5, 0.2, 0.2]]
    c = [[0.1, 0.2, 0.1, 0.6], [0.1, 0.7, 0.1, 0.1]]
    st = stability([make(0, normal=a), make(1, normal=b), make(2, normal=c)])
    assert st.agreement["normal"] == 0.5
    # pairs: (0,1) 2/2, (0,2) 1/2, (1,2) 1/2 -> 2/3
    assert st.pairwise_agreement["normal"] == pytest.approx(2 / 3, abs=1e-15)


def test_params_spread_uses_sample_std():
    st = stability(group())
    assert st.params_m == SIZES
    assert st.params_min_m == 3.1 and st.params_max_m == 3.8
    assert st.params_mean_m == pytest.approx(3.4, abs=1e-12)
    # deviations -0.3, -0.1, 0.4: squares sum 0.26, / (3 - 1) -> sqrt(0.13); population would be sqrt(0.26/3)
    assert st.params_std_m == pytest.approx(math.sqrt(0.13), abs=1e-12)
    assert st.spread_m == pytest.approx(0.7, abs=1e-12)


def test_params_spread_with_unknown_sizes():
    st = stability(group((3.1, None, 3.8)))
    assert st.params_m == (3.1, None, 3.8)
    assert st.params_mean_m == pytest.approx(3.45, abs=1e-12)
    assert st.params_std_m == pytest.approx(0.35 * math.sqrt(2), abs=1e-12)  # 2 * 0.35^2 / 1
    one = stability(group((None, 3.3, None)))
    assert one.params_min_m == one.params_max_m == 3.3 and one.spread_m == 0.0 and one.params_std_m is None
    none = stability(group((None, None, None)))
    assert none.params_mean_m is None and none.spread_m is None and none.params_std_m is None
    assert "size unknown" in str(none)


def test_summary_rows_and_str():
    st = stability(group())
    row = st.summary()
    assert row["seeds"] == "0,1,2" and row["n_seeds"] == 3 and row["space"] == "darts"
    assert row["mean_tau_normal"] == pytest.approx(2 / 9, abs=1e-15)
    assert row["agreement_reduce (fraction of edges)"] == 0.5
    assert row["params_spread (M)"] == pytest.approx(0.7, abs=1e-12)
    assert row["params_std (M, ddof=1)"] == pytest.approx(math.sqrt(0.13), abs=1e-12)
    assert all(isinstance(v, (str, int, float)) for v in row.values())
    rows = st.rows()
    assert [(r["kind"], r["edge"]) for r in rows] == [("normal", 0), ("normal", 1), ("reduce", 0), ("reduce", 1)]
    assert rows[0]["mean_tau"] == pytest.approx(7 / 9) and rows[0]["agree"] is False
    assert rows[1]["agree"] is True and rows[0]["op (seed 1)"] == "sep_conv_3x3"
    text = str(st)
    assert "space darts, init random, seeds 0, 1, 2" in text and "50% of edges" in text and "sample std" in text


@pytest.mark.parametrize("searches, message", [
    ([], "at least 2 seeds, got 0"),
    ([make(0)], "at least 2 seeds, got 1"),
    ([make(0), make(1), make(0)], "seed 0 appears more than once"),
    ([make(0), make(1, space="hb")], "mixed spaces: darts, hb"),
    ([make(0), make(1, init="hb")], "mixed initialisations: random, hb"),
    ([make(0), make(1, primitives=P[::-1])], "mixed primitives"),
    ([make(0), make(1, normal=[[0.1, 0.2, 0.3, 0.4]])], r"alpha_normal of seed 1 has shape \(1, 4\)"),
    ([make(0), make(1, reduce=np.ones((2, 3)))], r"alpha_reduce of seed 1 has shape \(2, 3\)"),
])
def test_stability_refusals(searches, message):
    with pytest.raises(StabilityError, match=message) as info:
        stability(searches)
    assert "\n" not in str(info.value)


def test_stability_refuses_a_missing_cell_kind():
    s = make(1)
    broken = SeedSearch(seed=1, space="darts", primitives=P, alphas={"normal": s.alphas["normal"]},
                        params_m=None, run_id="x", init="random")
    with pytest.raises(StabilityError, match="expected normal, reduce"):
        stability([make(0), broken])


# --- plot ----------------------------------------------------------------------------------------

def test_plot_edge_tau():
    st = stability(group())
    other = stability([make(0), make(1)])
    fig, ax = plt.subplots()
    try:
        plot_edge_tau(ax, {"darts/random": st, "two seeds": other}, kind="normal")
        lines = ax.get_lines()
        assert len(lines) == 3  # two groups + the zero line
        np.testing.assert_allclose(lines[0].get_ydata(), st.edge_tau["normal"])
        assert list(lines[0].get_xdata()) == [0, 1] and lines[0].get_marker() == "o"
        assert list(lines[2].get_ydata()) == [0.0, 0.0]
        assert ax.get_ylim() == (-1.05, 1.05) and ax.get_xlabel() and "tau" in ax.get_ylabel()
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["darts/random (3 seeds)", "two seeds (2 seeds)"]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["c_{k-2}->0", "c_{k-1}->0"]
        with pytest.raises(StabilityError, match="valid choices: normal, reduce"):
            plot_edge_tau(ax, {"a": st}, kind="both")
        with pytest.raises(StabilityError, match="at least one group"):
            plot_edge_tau(ax, {})
    finally:
        plt.close(fig)


# --- read_search ---------------------------------------------------------------------------------

def write_run(root: Path, name: str, seed: int | None = 0, epochs=None, primitives=P, space="darts", steps=1,
              params_m: float | None = 3.3, result: bool = True, start: bool = True, result_seed: int | None = None):
    run = root / name
    run.mkdir(parents=True)
    records = []
    if start:
        records.append({"kind": "search", "space": space, "init": "random", "steps": steps,
                        "primitives": None if primitives is None else list(primitives),
                        **({} if seed is None else {"seed": seed})})
    for e, (normal, reduce) in enumerate(epochs or []):
        records.append({"kind": "epoch", "epoch": e + 1, "alpha_normal": normal, "alpha_reduce": reduce})
    records.append({"kind": "end", "complete": True})
    text = "".join(json.dumps(r) + "\n" for r in records)
    (run / "metrics.jsonl").write_text(text + '{"kind": "epo', encoding="utf-8")  # a torn last line
    if result:
        sidecar = {"run_id": f"08_nas_search-{name}", "parameters": {"SEED": result_seed if result_seed is not None
                                                                     else seed},
                   "results": {} if params_m is None else {"params_m": {"value": params_m, "unit": "M"}}}
        (run / "result.json").write_text(json.dumps(sidecar), encoding="utf-8")
    return run


def test_read_search_takes_the_last_epoch(tmp_path):
    first = [[[0.25] * 4] * 2, [[0.25] * 4] * 2]
    run = write_run(tmp_path, "a", seed=2, epochs=[first, [NORMAL[2], REDUCE[2]]])
    s = read_search(run)
    assert (s.seed, s.space, s.init, s.primitives, s.params_m) == (2, "darts", "random", P, 3.3)
    assert s.run_id == "08_nas_search-a"
    assert s.alphas["normal"].dtype == np.float64
    np.testing.assert_array_equal(s.alphas["normal"], NORMAL[2])
    np.testing.assert_array_equal(s.alphas["reduce"], REDUCE[2])


def test_read_search_defaults(tmp_path):
    # primitives null -> the space's default; no result.json -> size unknown, run id = folder name
    k = len(default_primitives("hb"))
    w = np.full((3, k), 1 / k).tolist()
    s = read_search(write_run(tmp_path, "b", primitives=None, space="hb", epochs=[[w, w]], result=False))
    assert s.primitives == default_primitives("hb") and s.params_m is None and s.run_id == "b"
    # no seed in the log: the sidecar's SEED
    s = read_search(write_run(tmp_path, "c", seed=None, result_seed=7, epochs=[[NORMAL[0], REDUCE[0]]]))
    assert s.seed == 7


def test_read_search_then_stability_equals_direct(tmp_path):
    runs = [write_run(tmp_path, f"r{s}", seed=s, epochs=[[NORMAL[s], REDUCE[s]]], params_m=SIZES[s])
            for s in range(3)]
    st = stability([read_search(r) for r in runs])
    direct = stability(group())
    np.testing.assert_array_equal(st.edge_tau["normal"], direct.edge_tau["normal"])
    assert st.summary() == direct.summary()
    assert st.run_ids == ("08_nas_search-r0", "08_nas_search-r1", "08_nas_search-r2")


def test_read_search_broken_folders(tmp_path):
    good = [[NORMAL[0], REDUCE[0]]]
    cases = [
        (tmp_path / "missing", "no search log"),
        (write_run(tmp_path, "nostart", start=False, epochs=good), "no start record"),
        (write_run(tmp_path, "noepoch", epochs=[]), "no epoch record"),
        (write_run(tmp_path, "shape", epochs=[[[[0.5, 0.5]] * 2, REDUCE[0]]]),
         r"alpha_normal of epoch 1 has shape \(2, 2\).*needs \(2, 4\)"),
        (write_run(tmp_path, "rows", steps=2, epochs=good), r"alpha_normal of epoch 1 has shape \(2, 4\)"),
        (write_run(tmp_path, "ragged", epochs=[[NORMAL[0], [[0.1, 0.9], [0.2]]]]), "alpha_reduce of epoch 1"),
        (write_run(tmp_path, "noseed", seed=None, result=False, epochs=good), "no integer seed"),
    ]
    bad_json = write_run(tmp_path, "badjson", epochs=good)
    (bad_json / "result.json").write_text("{not json", encoding="utf-8")
    cases.append((bad_json, "not a readable JSON file"))
    for run, message in cases:
        with pytest.raises(StabilityError, match=message) as info:
            read_search(run)
        assert "\n" not in str(info.value), run
