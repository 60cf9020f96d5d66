"""Derive rules on hand-made weights (optnb.nas.derive): darts, agd (alpha*beta, beta), hb."""

from __future__ import annotations

import numpy as np
import pytest

from optnb.nas.derive import derive, derive_cell
from optnb.nas.errors import NasError, UnknownNameError
from optnb.nas.operations import DARTS_PRIMITIVES, PRIMITIVES

P8, P9 = DARTS_PRIMITIVES, PRIMITIVES


def op(name: str, prims=P8) -> int:
    return prims.index(name)


def uniform(rows: int, prims=P8) -> np.ndarray:
    return np.full((rows, len(prims)), 1.0 / len(prims))


def test_darts_rule_excludes_none_keeps_top2_edges_in_score_order():
    w = uniform(14)
    # node 0 (rows 0, 1): 'none' dominates row 0, yet only non-none ops count
    w[0, op("none")] = 0.9
    w[0, op("sep_conv_3x3")] = 0.2
    w[1, op("max_pool_3x3")] = 0.3
    # node 1 (rows 2..4): edge from state 2 strongest, then state 0
    w[4, op("dil_conv_5x5")] = 0.5
    w[2, op("skip_connect")] = 0.4
    gene = derive_cell("darts", w, P8)
    assert gene[:2] == [("max_pool_3x3", 1), ("sep_conv_3x3", 0)]
    assert gene[2:4] == [("dil_conv_5x5", 2), ("skip_connect", 0)]
    assert all(name != "none" for name, _ in gene)


def test_darts_rule_ties_go_to_the_lower_index():
    w = uniform(14)  # every edge and op tied
    gene = derive_cell("darts", w, P8)
    # lowest two edges of each node, first non-none op (max_pool_3x3)
    assert gene == [("max_pool_3x3", 0), ("max_pool_3x3", 1)] * 4
    w[5, op("sep_conv_5x5")] = w[5, op("avg_pool_3x3")] = 0.3  # node 2: row 5 = edge from 0
    assert derive_cell("darts", w, P8)[4] == ("avg_pool_3x3", 0)


def test_agd_rule_ranks_edges_by_alpha_times_path_weight():
    w = uniform(14, P9)
    w[0, op("sep_conv_3x3", P9)] = 0.5  # node 0: edge 0 has the strongest op ...
    w[1, op("dil_conv_3x3", P9)] = 0.3
    p = np.full(14, 0.25)
    p[0], p[1] = 0.1, 0.9  # ... but a weak path weight
    gene = derive_cell("agd", w, P9, path_weights=p)
    assert gene[:2] == [("dil_conv_3x3", 1), ("sep_conv_3x3", 0)]  # 0.27 > 0.05
    # node 1 (rows 2..4): alpha*beta picks rows 2 and 3; beta alone picks 4 and 3
    w[2, op("sep_conv_5x5", P9)] = 0.9
    w[3, op("avg_pool_3x3", P9)] = 0.8
    p[2:5] = [0.3, 0.33, 0.37]
    assert derive_cell("agd", w, P9, path_weights=p)[2:4] == [("sep_conv_5x5", 0),
                                                               ("avg_pool_3x3", 1)]
    by_beta = derive_cell("agd", w, P9, rule="beta", path_weights=p)
    assert [i for _, i in by_beta[2:4]] == [2, 1]
    assert derive_cell("agd", w, P9, rule="darts")[2:4] == [("sep_conv_5x5", 0),
                                                             ("avg_pool_3x3", 1)]
    with pytest.raises(NasError, match="needs the agd path weights"):
        derive_cell("agd", w, P9)


def test_hb_per_slot_keeps_one_op_per_slot_and_the_wiring():
    w = uniform(12, P9)
    w[0, op("sep_conv_3x3", P9)] = 0.4  # o1 of node 0
    w[1, op("skip_connect", P9)] = 0.9  # o2
    w[2, op("neg_skip_connect", P9)] = 0.8  # o
    w[2, op("none", P9)] = 0.95  # none never wins
    gene = derive_cell("hb", w, P9)
    assert len(gene) == 12
    assert gene[:3] == [("sep_conv_3x3", 1), ("skip_connect", 1), ("neg_skip_connect", 0)]
    assert [i for _, i in gene] == [1, 1, 0, 2, 2, 1, 3, 3, 2, 4, 4, 3]


def test_hb_pooled_ranks_every_op_of_the_node():
    w = uniform(12, P9)
    w[0, op("sep_conv_3x3", P9)] = 0.6
    w[0, op("sep_conv_5x5", P9)] = 0.5  # two picks from o1
    w[1, op("dil_conv_3x3", P9)] = 0.4
    w[2, op("neg_skip_connect", P9)] = 0.3  # x_{t-2} loses
    gene = derive_cell("hb", w, P9, rule="pooled")
    assert gene[:3] == [("sep_conv_3x3", 1), ("sep_conv_5x5", 1), ("dil_conv_3x3", 1)]
    # ties: slot order then op order -> first non-none ops of o1
    assert gene[3:6] == [("max_pool_3x3", 2), ("avg_pool_3x3", 2), ("skip_connect", 2)]


def test_derive_builds_a_valid_genotype_and_checks_rules():
    g = derive("hb", uniform(12, P9), uniform(12, P9), P9, rule="per_slot")
    assert g.normal_concat == [2, 3, 4, 5] and len(g.reduce) == 12
    g = derive("hb", uniform(12, P9), uniform(12, P9), P9, cell_output="last")
    assert g.normal_concat == [5]
    with pytest.raises(UnknownNameError, match="derive rule for space 'darts'.*darts"):
        derive_cell("darts", uniform(14), P8, rule="pooled")
    with pytest.raises(NasError, match=r"shape \(3, 8\), expected \(14, 8\)"):
        derive_cell("darts", uniform(3), P8)
