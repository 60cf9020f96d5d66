"""Partial channels and edge normalisation (PC-DARTS, optnb.nas.partial) in the three spaces.

The oracle is PC-DARTS's ``model_search.py`` written out literally (slice, every op including
``none``, cat with the bypass, 2x2 max-pool on strided edges, its view/transpose shuffle, betas per
node multiplying the edge output) over the supernet's own modules; float64 throughout.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
import torch.nn.functional as F

from optnb.nas import genotypes as G
from optnb.nas.errors import NasError
from optnb.nas.network import NetworkCIFAR, count_parameters
from optnb.nas.operations import PRIMITIVES
from optnb.nas.params import check_search
from optnb.nas.partial import (
    bypass,
    channel_shuffle,
    channel_unshuffle,
    partial_mixed,
    split_channels,
)
from optnb.nas.search import RECIPES, BilevelStep, SearchConfig, build_model, recipe
from optnb.nas.spaces import MixedOp, SearchNetwork
from optnb.specs import ParameterError
from optnb.train import StepOutput

TOL = 1e-12  # float64, values
GRAD_TOL = 1e-10  # float64, gradients (longer chains of sums)


def _pc_darts_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w)
    return torch.transpose(x, 1, 2).contiguous().view(b, -1, h, w)


def reference_forward(net: SearchNetwork, x: torch.Tensor) -> torch.Tensor:
    """PC-DARTS's Network/Cell/MixedOp forward over ``net``'s modules (agd/path: eq. (20))."""
    k, mode = net.partial_channels, net.edge_normalization
    s0 = s1 = net.stem(x)
    for cell in net.cells:
        kind = "reduce" if cell.reduction else "normal"
        alphas = F.softmax(getattr(net, f"alphas_{kind}"), dim=-1)
        betas = None
        if mode != "off":
            logits = getattr(net, f"edge_logits_{kind}")
            betas = torch.cat([F.softmax(logits[s], dim=-1) for s in net.node_slices])
        states = [cell.preprocess0(s0), cell.preprocess1(s1)]
        for rows in net.node_slices:
            node = 0
            for i in range(rows.start, rows.stop):
                h = states[cell.edges[i].source]
                w = alphas[i] * betas[i] if mode == "path" else alphas[i]
                xtemp, xtemp2 = h[:, : h.shape[1] // k], h[:, h.shape[1] // k:]
                temp1 = sum(w[j] * op(xtemp) for j, op in enumerate(cell.ops[i].ops))
                if temp1.shape[2] != h.shape[2] and k > 1:  # PC-DARTS's code pools 0 channels at K=1
                    xtemp2 = F.max_pool2d(xtemp2, 2, 2)
                elif k == 1:
                    xtemp2 = xtemp2[:, :, : temp1.shape[2], : temp1.shape[3]]
                out = _pc_darts_shuffle(torch.cat([temp1, xtemp2], dim=1), k)
                node = node + (betas[i] * out if mode == "edge" else out)
            states.append(node)
        s0, s1 = s1, torch.cat(states[-cell.multiplier:], dim=1)
    return net.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))


def _net(space: str, k: int = 1, mode: str = "auto", grouped: bool = True, seed: int = 0) -> SearchNetwork:
    torch.manual_seed(seed)
    net = SearchNetwork(space, C=4, layers=3, partial_channels=k, edge_normalization=mode,
                        grouped=grouped).double()
    net.init_arch("random", scale=0.5, generator=torch.Generator().manual_seed(seed + 1))
    return net


def _batch(seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 10, (4,), generator=g)


def _grads(net: SearchNetwork, forward, x, y) -> dict[str, torch.Tensor]:
    net.zero_grad(set_to_none=True)
    F.cross_entropy(forward(x), y).backward()
    return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


# ------------------------------------------------------------------ shuffle and bypass
@pytest.mark.parametrize("groups", [1, 2, 4])
def test_channel_shuffle_is_a_permutation_and_unshuffle_its_inverse(groups):
    c = 8
    x = torch.arange(c, dtype=torch.float64).view(1, c, 1, 1).expand(2, c, 3, 3).contiguous()
    y = channel_shuffle(x, groups)
    perm = y[0, :, 0, 0].long().tolist()
    assert sorted(perm) == list(range(c))  # a permutation
    per = c // groups
    assert perm == [g * per + j for j in range(per) for g in range(groups)]  # j*groups+g <- g*per+j
    assert torch.equal(y, _pc_darts_shuffle(x, groups))  # PC-DARTS's own function
    assert torch.equal(channel_unshuffle(y, groups), x)
    assert torch.equal(channel_shuffle(channel_unshuffle(x, groups), groups), x)


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_mixed_op_keeps_shapes_and_gradients_reach_both_parts(stride):
    torch.manual_seed(0)
    k, c = 4, 8
    mixed = MixedOp(c // k, stride, ("none", "max_pool_3x3", "sep_conv_3x3", "skip_connect")).double()
    x = torch.randn(2, c, 8, 8, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64, requires_grad=True)
    out = partial_mixed(x, mixed, w, k, stride)
    assert out.shape == (2, c, 8 // stride, 8 // stride)
    out.pow(2).sum().backward()
    assert x.grad[:, : c // k].abs().sum() > 0  # the 1/K part, through the ops
    assert x.grad[:, c // k:].abs().sum() > 0   # the bypass
    assert w.grad[1:].abs().min() > 0 and w.grad[0] == 0  # `none` adds exactly zero
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mixed.parameters())
    # the bypass channels land, unchanged (stride 1) or 2x2-max-pooled (stride 2), where the
    # shuffle puts them
    _, rest = split_channels(x.detach(), k)
    expected = rest if stride == 1 else F.max_pool2d(rest, 2, 2)
    unshuffled = channel_unshuffle(out.detach(), k)
    assert torch.equal(unshuffled[:, c // k:], expected)
    assert torch.equal(bypass(rest, stride), expected)


def test_partial_mixed_op_with_k1_is_the_mixed_op_bitwise():
    torch.manual_seed(0)
    mixed = MixedOp(4, 1, PRIMITIVES).double()
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    w = F.softmax(torch.randn(len(mixed.ops), dtype=torch.float64), -1)
    assert torch.equal(partial_mixed(x, mixed, w, 1, 1), mixed(x, w))


# ------------------------------------------------------------------ the supernet against the oracle
@pytest.mark.parametrize("space,mode,k", [
    ("darts", "off", 4), ("darts", "edge", 4), ("hb", "off", 4), ("hb", "edge", 4), ("agd", "path", 4),
    ("agd", "edge", 4), ("hb", "off", 2), ("darts", "off", 1), ("hb", "edge", 1), ("agd", "path", 1)])
def test_supernet_equals_pc_darts_reference_values_and_gradients(space, mode, k):
    x, y = _batch()
    for grouped in (True, False):
        net = _net(space, k, mode, grouped)
        got = net(x)
        want = reference_forward(net, x)
        assert got.shape == (4, 10)
        assert (got - want).abs().max() < TOL
        g_net, g_ref = _grads(net, net, x, y), _grads(net, functools.partial(reference_forward, net), x, y)
        assert g_net.keys() == g_ref.keys()
        for name in g_ref:
            assert (g_net[name] - g_ref[name]).abs().max() < GRAD_TOL, name
        assert {"alphas_normal", "alphas_reduce"} <= g_net.keys()
        if mode != "off":
            assert g_net["edge_logits_normal"].abs().sum() > 0  # the betas are in the graph


@pytest.mark.parametrize("space", ["darts", "hb", "agd"])
def test_k1_is_the_full_supernet_same_names_same_logits(space):
    """K = 1 (the default): the DARTS loop without any split (the oracle with k = 1), and the
    same parameter names at every K, so checkpoints and goldens keep their meaning."""
    x, _ = _batch()
    full = _net(space)
    assert full.partial_channels == 1
    assert (full(x) - reference_forward(full, x)).abs().max() < TOL
    assert [n for n, _ in _net(space, 4).named_parameters()] == [n for n, _ in full.named_parameters()]
    assert list(_net(space, 4).state_dict()) == list(full.state_dict())


def test_golden_count_holds_and_partial_channels_shrink_the_ops():
    with torch.device("meta"):
        full = SearchNetwork("darts", C=16, layers=8)
        pc = SearchNetwork("darts", C=16, layers=8, partial_channels=4)
    assert count_parameters(full) == 1_930_618
    assert count_parameters(pc) < count_parameters(full) / 2
    assert pc.cells[0].ops[0].ops[4].op[1].in_channels == 4  # sep_conv on C/K = 16/4 channels


def test_edge_and_path_agree_at_k1_and_differ_with_a_bypass():
    x, _ = _batch()
    edge, path = _net("agd", 1, "edge"), _net("agd", 1, "path")
    assert (edge(x) - path(x)).abs().max() < TOL
    edge4, path4 = _net("agd", 4, "edge"), _net("agd", 4, "path")
    assert (edge4(x) - path4(x)).abs().max() > 1e-6  # only `edge` scales the bypass


def test_edge_normalisation_adds_betas_to_darts_and_hb():
    for space, rows in (("darts", 14), ("hb", 12)):
        assert len(_net(space).arch_parameters()) == 2
        net = _net(space, 2, "edge")
        names = [n for n, _ in net.named_parameters() if n.startswith("edge_logits")]
        assert names == ["edge_logits_normal", "edge_logits_reduce"]
        p = net.path_weights("normal")
        assert p.shape == (rows,)
        for s in net.node_slices:  # softmax over the edges entering each node
            assert abs(p[s].sum().item() - 1.0) < TOL
    with pytest.raises(NasError, match="agd"):
        SearchNetwork("agd", C=4, layers=3, edge_normalization="off")
    with pytest.raises(NasError, match="valid"):
        SearchNetwork("darts", C=4, layers=3, edge_normalization="betas")


def test_edge_normalised_darts_genotype_ranks_edges_by_alpha_times_beta():
    net = _net("darts", 2, "edge")
    with torch.no_grad():
        for kind in ("normal", "reduce"):
            getattr(net, f"alphas_{kind}").zero_()
            getattr(net, f"edge_logits_{kind}").zero_()
        conv = net.primitives.index("sep_conv_3x3")
        # node 0: edge 0 has the stronger op, edge 1 the much larger beta -> edge 1 wins with beta
        net.alphas_normal[0, conv] = 2.0
        net.alphas_normal[1, conv] = 1.0
        net.edge_logits_normal[1] = 3.0
        # node 1 (edges 2, 3, 4): equal alphas, beta decides: edges 4 then 2
        net.edge_logits_normal[4], net.edge_logits_normal[2] = 2.0, 1.0
    normal = net.genotype().normal
    assert normal[0] == ("sep_conv_3x3", 1) and normal[1] == ("sep_conv_3x3", 0)
    assert [i for _, i in normal[2:4]] == [2, 0]


# ------------------------------------------------------------------ configuration, warm-up, recipe
def test_config_validation_is_one_clear_error():
    with pytest.raises(NasError, match="divide the channel count C=16; valid: 1, 2, 4, 8, 16"):
        SearchConfig(partial_channels=3).checked()
    with pytest.raises(NasError, match=">= 1"):
        SearchConfig(partial_channels=0).checked()
    with pytest.raises(NasError, match="arch_warmup_epochs"):
        SearchConfig(epochs=5, arch_warmup_epochs=5).checked()
    with pytest.raises(NasError, match="edge normalization"):
        SearchConfig(edge_normalization="yes").checked()
    assert SearchConfig(space="agd").checked().edge_normalization == "path"
    assert SearchConfig(space="hb").checked().edge_normalization == "off"


def test_identity_keeps_old_checkpoints_resumable():
    for space in ("darts", "hb", "agd"):
        ident = SearchConfig(space=space).checked().identity()
        assert not {"partial_channels", "edge_normalization", "arch_warmup_epochs"} & ident.keys()
    ident = SearchConfig(space="hb", partial_channels=4, edge_normalization="edge").checked().identity()
    assert ident["partial_channels"] == 4 and ident["edge_normalization"] == "edge"


def test_notebook_check_needs_k_to_divide_the_profiles_width():
    check_search({"PROFILE": "smoke", "PARTIAL_CHANNELS": 4})
    check_search({"PROFILE": "paper", "PARTIAL_CHANNELS": 8})
    with pytest.raises(ParameterError, match="C=4 of profile 'smoke'; valid: 1, 2, 4"):
        check_search({"PROFILE": "smoke", "PARTIAL_CHANNELS": 8})


def test_pc_darts_recipe():
    r = recipe("pc_darts").checked()
    assert (r.partial_channels, r.edge_normalization, r.batch_size, r.lr, r.arch_lr) == (4, "edge", 256, 0.1, 6e-4)
    assert (r.arch_weight_decay, r.epochs, r.arch_warmup_epochs, r.lr_min) == (1e-3, 50, 15, 0.001)
    assert RECIPES["darts"] == SearchConfig()
    with pytest.raises(NasError, match="pc_darts"):
        recipe("pcdarts")


class _Architect:
    def __init__(self) -> None:
        self.calls = 0

    def step(self, *batches):
        self.calls += 1
        return torch.zeros(())


class _Weights:
    def __call__(self, x, y):
        return StepOutput(loss=torch.zeros(()), logits=torch.zeros(1, 10), extra={})


def test_warm_up_epochs_take_no_architecture_steps():
    arch = _Architect()
    val = [(torch.zeros(1), torch.zeros(1))] * 4
    step = BilevelStep(None, arch, _Weights(), val, "darts", arch_warmup_epochs=2)
    for epoch in range(3):
        record = step.start_epoch(epoch)
        assert record == {"arch_steps": epoch >= 2}
        out = step(torch.zeros(1), torch.zeros(1))
        assert ("search_val_loss" in out.extra) == (epoch >= 2)
    assert arch.calls == 1
    assert BilevelStep(None, arch, _Weights(), val, "darts").start_epoch(0) == {}


# ------------------------------------------------------------------ the published cell
def test_pc_darts_cifar_has_the_published_3_63m_parameters():
    assert G.get("PC_DARTS_cifar") == G.get("PC_DARTS") == G.normalize(G.PC_DARTS_cifar)
    assert G.PC_DARTS_cifar.normal_concat == range(2, 6)  # verbatim, as in yuhuixu1993/PC-DARTS
    assert G.PC_DARTS_cifar.normal[0] == ("sep_conv_3x3", 1) and G.PC_DARTS_cifar.reduce[-1] == ("sep_conv_3x3", 2)
    with torch.device("meta"):
        net = NetworkCIFAR(G.get("PC_DARTS_cifar"), C=36, num_classes=10, layers=20, auxiliary=True)
    n = count_parameters(net)  # DARTS's convention: the auxiliary head is not counted
    assert n == 3_634_678 and round(n / 1e6, 2) == 3.63
    assert count_parameters(net, exclude_auxiliary=False) - n == 476_426


def test_smaller_k_config_builds_through_build_model():
    cfg = dataclasses.replace(SearchConfig(space="hb", init="hb", C=4, layers=3), partial_channels=2).checked()
    model = build_model(cfg)
    assert model.partial_channels == 2 and model.cells[0].partial_channels == 2
    # the HB init (eq. 18) logits do not depend on K
    ref = build_model(dataclasses.replace(cfg, partial_channels=1))
    assert torch.equal(model.alphas_normal, ref.alphas_normal)
