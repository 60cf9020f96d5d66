"""Evaluation networks (optnb.nas.network): goldens, auxiliary head, drop path, any arity."""

from __future__ import annotations

import pytest
import torch

from optnb.nas import genotypes as G
from optnb.nas.network import (
    EvalCell,
    NetworkCIFAR,
    NetworkImageNet,
    count_parameters,
    drop_masks,
    drop_path_schedule,
)
from optnb.nas.operations import FactorizedReduce, Identity, NegIdentity

HB_TEXT = ("Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 1), ('neg_skip_connect', 0), "
           "('dil_conv_3x3', 2), ('skip_connect', 2), ('neg_skip_connect', 1), "
           "('sep_conv_5x5', 3), ('skip_connect', 3), ('neg_skip_connect', 2), "
           "('max_pool_3x3', 4), ('skip_connect', 4), ('neg_skip_connect', 3)], "
           "normal_concat=range(2, 6), reduce=[('max_pool_3x3', 1), ('sep_conv_3x3', 1), "
           "('neg_skip_connect', 0), ('avg_pool_3x3', 2), ('skip_connect', 2), "
           "('neg_skip_connect', 1), ('sep_conv_3x3', 3), ('skip_connect', 3), "
           "('neg_skip_connect', 2), ('dil_conv_5x5', 4), ('skip_connect', 4), "
           "('neg_skip_connect', 3)], reduce_concat=range(2, 6))")


@pytest.fixture(scope="module")
def darts_v2() -> NetworkCIFAR:
    with torch.device("meta"):
        return NetworkCIFAR(G.get("DARTS_V2"), C=36, num_classes=10, layers=20, auxiliary=True)


def test_golden_darts_v2_parameters_without_auxiliary_head(darts_v2):
    assert count_parameters(darts_v2) == 3_349_342
    assert count_parameters(darts_v2, exclude_auxiliary=False) - 3_349_342 == 476_426


def test_reductions_at_6_and_13_and_aux_after_the_second(darts_v2):
    assert [i for i, c in enumerate(darts_v2.cells) if c.reduction] == [6, 13]
    assert darts_v2.aux_index == 13
    conv = darts_v2.auxiliary_head.features[2]
    assert conv.in_channels == 576  # 4 nodes x 144 channels after the second reduction


def test_auxiliary_head_sees_8x8_and_only_in_training():
    torch.manual_seed(0)
    net = NetworkCIFAR(G.get("DARTS_V2"), C=4, layers=3, auxiliary=True)
    seen = {}
    net.auxiliary_head.register_forward_hook(lambda m, i, o: seen.update(shape=i[0].shape))
    logits, aux = net(torch.randn(2, 3, 32, 32))
    assert logits.shape == aux.shape == (2, 10)
    assert seen["shape"][-2:] == (8, 8)
    net.eval()
    assert net(torch.randn(2, 3, 32, 32))[1] is None


def test_imagenet_mobile_network():
    with torch.device("meta"):
        net = NetworkImageNet(G.get("DARTS_V2"), C=48, num_classes=1000, layers=14)
    assert 4.7e6 < count_parameters(net) < 4.75e6  # DARTS reports 4.7 M
    small = NetworkImageNet(G.get("DARTS_V2"), C=8, num_classes=5, layers=3, auxiliary=False)
    assert small(torch.randn(2, 3, 64, 64))[0].shape == (2, 5)


def test_arity_3_genotype_compiles_and_runs():
    g = G.parse(HB_TEXT)
    net = NetworkCIFAR(g, C=4, layers=3, auxiliary=False)
    cell = net.cells[0]
    assert cell.arity == 3 and cell.steps == 4 and len(cell.ops) == 12
    assert isinstance(cell.ops[1], Identity) and isinstance(cell.ops[2], NegIdentity)
    assert isinstance(net.cells[1].ops[2], FactorizedReduce)  # strided neg-skip in reduce cells
    assert net(torch.randn(2, 3, 16, 16))[0].shape == (2, 10)


def test_drop_masks_preserve_the_expectation():
    gen = torch.Generator().manual_seed(0)
    y = drop_masks(2, 5, 2000, 0.2, torch.device("cpu"), generator=gen)
    assert y.shape == (2, 5, 2000)
    assert set(torch.unique(y).tolist()) == {0.0, 1.25}
    assert y.mean().item() == pytest.approx(1.0, abs=0.02)  # 5 sigma is about 0.014
    before = gen.get_state()
    assert torch.equal(drop_masks(2, 5, 3, 0.0, torch.device("cpu"), generator=gen), torch.ones(2, 5, 3))
    assert torch.equal(gen.get_state(), before)  # p = 0 draws nothing
    assert drop_path_schedule(0, 600) == 0.0
    assert drop_path_schedule(300, 600) == pytest.approx(0.1)


@pytest.mark.parametrize("exempt_negative, dropped_negative", [(True, False), (False, True)])
def test_drop_path_skips_identity_and_optionally_negative_identity(exempt_negative,
                                                                   dropped_negative):
    g = G.parse(HB_TEXT)
    cell = EvalCell(g, 4, 4, 4, reduction=False, reduction_prev=False,
                    exempt_negative=exempt_negative)
    assert cell.exempt[1] is True  # identity
    assert cell.exempt[2] is (not dropped_negative)
    assert cell.exempt[0] is False  # sep conv
    reduce = EvalCell(g, 4, 4, 4, reduction=True, reduction_prev=False)
    assert reduce.exempt[2] is False  # stride-2 neg-skip is a FactorizedReduce: dropped
    # with p close to 1 every non-exempt path is almost surely dropped: only id/-id survive
    cell.train()
    torch.manual_seed(0)
    s0, s1 = torch.randn(64, 4, 4, 4), torch.randn(64, 4, 4, 4)
    with torch.no_grad():
        out = cell(s0, s1, drop_masks(1, len(cell.ops), 64, 0.999999, torch.device("cpu"))[0])
        x0, x1 = cell.preprocess0(s0), cell.preprocess1(s1)
    node0 = out[:, :4]
    expected = x1 if dropped_negative else x1 - x0
    assert torch.allclose(node0, expected, atol=1e-4)


def test_op_scales_keep_fixed_path_weights():
    torch.manual_seed(0)
    g = G.get("DARTS_V2")
    scales = {"normal": [0.5] * 8, "reduce": [1.0] * 8}
    plain = NetworkCIFAR(g, C=4, layers=3, auxiliary=False).eval()
    scaled = NetworkCIFAR(g, C=4, layers=3, auxiliary=False, op_scales=scales).eval()
    scaled.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 16, 16)
    assert not torch.allclose(plain(x)[0], scaled(x)[0])
    assert count_parameters(plain) == count_parameters(scaled)
