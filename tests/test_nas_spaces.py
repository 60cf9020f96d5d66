"""Search spaces and the supernet (optnb.nas.spaces, grouped.py): paper eqs. (15)-(21)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from optnb.nas.edges import Edge, space_edges
from optnb.nas.errors import NasError, UnknownNameError
from optnb.nas.network import count_parameters
from optnb.nas.operations import DARTS_PRIMITIVES, PRIMITIVES
from optnb.nas.spaces import SearchNetwork, init_alphas


def tiny(space: str, **kw) -> SearchNetwork:
    return SearchNetwork(space, C=4, layers=3, **kw)


@pytest.fixture(scope="module")
def darts16() -> SearchNetwork:
    return SearchNetwork("darts", C=16, num_classes=10, layers=8)


@pytest.fixture(scope="module")
def agd() -> SearchNetwork:
    return tiny("agd")


def test_golden_darts_supernet_parameter_count(darts16):
    assert darts16.primitives == DARTS_PRIMITIVES
    assert count_parameters(darts16) == 1_930_618


def test_reduction_cells_at_one_and_two_thirds(darts16):
    assert [i for i, c in enumerate(darts16.cells) if c.reduction] == [2, 5]
    assert darts16.reduction_indices == (2, 5)
    assert [c.multiplier * c.ops[0].ops[1][1].num_features for c in darts16.cells][-1] == 256


def test_edges_of_each_space():
    darts = space_edges("darts")
    assert len(darts) == 14 and darts[:5] == (Edge(0, 0), Edge(0, 1), Edge(1, 0), Edge(1, 1),
                                              Edge(1, 2))
    assert space_edges("agd") == darts
    hb = space_edges("hb")  # eq. (15): x_t = o1(x_{t-1}) + o2(x_{t-1}) + o(x_{t-2})
    assert len(hb) == 12
    assert hb[:3] == (Edge(0, 1, "o1"), Edge(0, 1, "o2"), Edge(0, 0, "o"))
    assert hb[9:] == (Edge(3, 4, "o1"), Edge(3, 4, "o2"), Edge(3, 3, "o"))


def test_strided_ops_in_reduction_cells():
    net = tiny("hb")
    reduce = net.cells[1]
    assert reduce.reduction
    strided = [e for e, op in zip(reduce.edges, reduce.ops) if op.stride == 2]
    assert strided == [Edge(0, 1, "o1"), Edge(0, 1, "o2"), Edge(0, 0, "o"), Edge(1, 1, "o")]
    assert all(op.stride == 1 for op in net.cells[0].ops)


def test_default_primitives_and_bn_is_affine_free_in_cells(agd):
    assert agd.primitives == PRIMITIVES
    net = agd
    bns = [m for n, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns[0].affine  # the stem BN
    assert not any(bn.affine for bn in bns[1:])


def test_arch_parameters_are_registered_parameters(agd, darts16):
    net = agd
    arch = {id(p) for p in net.arch_parameters()}
    names = [n for n, p in net.named_parameters() if id(p) in arch]
    assert names == ["alphas_normal", "alphas_reduce", "edge_logits_normal", "edge_logits_reduce"]
    assert {"alphas_normal", "edge_logits_reduce"} <= set(net.state_dict())
    assert net.alphas_normal.shape == (14, 9) and net.edge_logits_normal.shape == (14,)
    assert len(darts16.arch_parameters()) == 2
    assert not {id(p) for p in net.weight_parameters()} & arch


def test_path_weights_are_a_softmax_per_node(agd, darts16):
    net = copy.deepcopy(agd)
    net.init_arch("random", scale=1.0, generator=torch.Generator().manual_seed(0))
    p = net.path_weights("normal")
    sums = [p[s].sum().item() for s in net.node_slices]
    assert [s.stop - s.start for s in net.node_slices] == [2, 3, 4, 5]
    assert sums == pytest.approx([1.0] * 4, abs=1e-6)
    w = net.mixing_weights("normal")
    alpha = torch.softmax(net.alphas_normal, -1)
    assert torch.allclose(w, alpha * p[:, None])
    assert darts16.path_weights() is None


def test_hb_init_is_a_logit_bias_on_identity_and_negative_identity():
    alphas = init_alphas("hb", PRIMITIVES, init="hb", hb_init_logit=5.0,
                         generator=torch.Generator().manual_seed(0))
    w = torch.softmax(alphas.double(), -1)
    skip, neg = PRIMITIVES.index("skip_connect"), PRIMITIVES.index("neg_skip_connect")
    expected = math.exp(5) / (math.exp(5) + 8)  # 0.9488 with 9 ops
    for row, edge in enumerate(space_edges("hb")):
        if edge.slot == "o2":
            assert w[row, skip].item() == pytest.approx(expected, abs=1e-2)
        elif edge.slot == "o":
            assert w[row, neg].item() == pytest.approx(expected, abs=1e-2)
        else:  # o1 random: nearly uniform
            assert w[row].max().item() < 0.12
    with pytest.raises(NasError, match="needs space='hb'"):
        init_alphas("darts", DARTS_PRIMITIVES, init="hb")
    with pytest.raises(UnknownNameError, match="valid choices: random, zeros, hb"):
        init_alphas("hb", PRIMITIVES, init="ones")
    assert torch.equal(init_alphas("agd", PRIMITIVES, init="zeros"), torch.zeros(14, 9))


def test_hb_init_gives_eq_18_at_large_bias():
    """With o2 -> identity and o -> negative identity, node t = F(x_{t-1}) + x_{t-1} - x_{t-2}."""
    torch.manual_seed(0)
    net = tiny("hb").double()
    net.init_arch("hb", hb_init_logit=60.0)  # numerically one-hot
    cell = net.cells[0]
    s0, s1 = torch.randn(2, 12, 8, 8).double(), torch.randn(2, 12, 8, 8).double()
    w = net.mixing_weights("normal")
    x0, x1 = cell.preprocess0(s0), cell.preprocess1(s1)
    node0 = cell.ops[0](x1, w[0]) + x1 - x0
    out = cell(s0, s1, w)
    assert torch.allclose(out[:, :4], node0, atol=1e-10)


def test_unknown_space_and_small_networks_raise():
    with pytest.raises(UnknownNameError, match="unknown search space 'nasnet'.*darts, hb, agd"):
        SearchNetwork("nasnet")
    with pytest.raises(NasError, match="layers must be >= 3"):
        SearchNetwork("darts", C=4, layers=2)
    with pytest.raises(UnknownNameError, match="unknown operation"):
        SearchNetwork("darts", C=4, layers=3, primitives=("none", "conv_9x9"))


@pytest.mark.parametrize("space", ["hb", "agd"])  # darts = agd's topology without path weights
def test_grouped_mixed_ops_equal_naive_in_value_gradient_and_bn_stats(space):
    torch.manual_seed(0)
    naive = tiny(space, grouped=False).double()
    naive.init_arch("random", scale=1.0)
    grouped = copy.deepcopy(naive)
    for cell in grouped.cells:
        cell.grouped = True
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    ya, yb = naive(x), grouped(x)
    assert torch.allclose(ya, yb, atol=1e-12, rtol=0)
    (ya ** 2).sum().backward()
    (yb ** 2).sum().backward()
    for (name, pa), pb in zip(naive.named_parameters(), grouped.parameters()):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-10, rtol=1e-9), name
    for (name, ba), bb in zip(naive.named_buffers(), grouped.buffers()):
        assert torch.equal(ba, bb), name
    naive.eval()
    grouped.eval()
    assert torch.allclose(naive(x), grouped(x), atol=1e-12, rtol=0)


def test_skipping_none_equals_computing_it():
    torch.manual_seed(0)
    net = tiny("darts", grouped=False).double()
    net.init_arch("random", scale=1.0)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    assert net.primitives[0] == "none"
    y_skip = net(x)
    net.skip_none = False
    assert torch.allclose(net(x), y_skip, atol=1e-13, rtol=0)


def test_detach_arch_gives_no_alpha_graph(agd):
    net = copy.deepcopy(agd)
    net(torch.randn(2, 3, 8, 8), detach_arch=True).sum().backward()
    assert all(p.grad is None for p in net.arch_parameters())
    net(torch.randn(2, 3, 8, 8)).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.arch_parameters())


def test_hb_last_node_output_ablation():
    net = SearchNetwork("hb", C=4, layers=3, cell_output="last")
    assert net.multiplier == 1
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    assert net.genotype().normal_concat == [5]
