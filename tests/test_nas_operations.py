"""Operations of paper Table 3 (optnb.nas.operations): names, DARTS definitions, negative identity."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from optnb.nas import operations as ops
from optnb.nas.errors import UnknownNameError


def test_primitives_are_darts_order_plus_negative_identity_last():
    assert ops.DARTS_PRIMITIVES == ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
                                    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
    assert (*ops.DARTS_PRIMITIVES, "neg_skip_connect") == ops.PRIMITIVES
    assert len(ops.PRIMITIVES) == 9  # Table 3


@pytest.mark.parametrize("name", ops.PRIMITIVES)
@pytest.mark.parametrize("stride", [1, 2])
def test_every_op_keeps_channels_and_applies_stride(name, stride):
    op = ops.build_op(name, 4, stride)
    y = op(torch.randn(2, 4, 8, 8))
    assert y.shape == (2, 4, 8 // stride, 8 // stride)


def test_definitions_match_darts():
    sep = ops.build_op("sep_conv_5x5", 4, 2)
    convs = [m for m in sep.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(5, 5), (1, 1), (5, 5), (1, 1)]
    assert [c.stride for c in convs] == [(2, 2), (1, 1), (1, 1), (1, 1)]  # only the first strided
    assert all(c.bias is None for c in convs)
    dil = ops.build_op("dil_conv_3x3", 4, 1)
    dw = next(m for m in dil.modules() if isinstance(m, nn.Conv2d))
    assert dw.dilation == (2, 2) and dw.padding == (2, 2) and dw.groups == 4
    avg = ops.build_op("avg_pool_3x3", 4, 1)
    assert isinstance(avg, nn.AvgPool2d) and avg.count_include_pad is False
    assert isinstance(ops.build_op("skip_connect", 4, 1), ops.Identity)
    assert isinstance(ops.build_op("skip_connect", 4, 2), ops.FactorizedReduce)


def test_search_form_has_affine_free_bn_and_bn_after_pools():
    pool = ops.build_search_op("max_pool_3x3", 4, 1)
    assert isinstance(pool, nn.Sequential) and isinstance(pool[1], nn.BatchNorm2d)
    for name in ops.PRIMITIVES:
        for stride in (1, 2):
            bns = [m for m in ops.build_search_op(name, 4, stride).modules()
                   if isinstance(m, nn.BatchNorm2d)]
            assert all(not bn.affine for bn in bns), name
    tracked = ops.build_search_op("sep_conv_3x3", 4, 1, track_running_stats=False)
    assert all(m.running_mean is None for m in tracked.modules() if isinstance(m, nn.BatchNorm2d))


def test_none_is_zero_of_the_strided_shape():
    x = torch.randn(2, 3, 7, 7)
    assert torch.equal(ops.build_op("none", 3, 2)(x), torch.zeros(2, 3, 4, 4))


def test_identity_and_negative_identity_cancel_exactly_at_stride_1():
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    skip, neg = ops.build_op("skip_connect", 4, 1), ops.build_op("neg_skip_connect", 4, 1)
    assert torch.equal(0.3 * skip(x) + 0.3 * neg(x), torch.zeros_like(x))
    assert sum(p.numel() for p in neg.parameters()) == 0


def test_negative_identity_at_stride_2_is_negated_factorized_reduce():
    torch.manual_seed(0)
    fr, neg = ops.build_op("skip_connect", 4, 2), ops.build_op("neg_skip_connect", 4, 2)
    neg.load_state_dict(fr.state_dict())
    x = torch.randn(2, 4, 8, 8)
    assert torch.allclose(neg(x), -fr(x))
    # BN is odd-symmetric: negated conv weights give the same function (module docstring)
    flipped = ops.build_op("skip_connect", 4, 2)
    flipped.load_state_dict({k: -v if "conv" in k else v for k, v in fr.state_dict().items()})
    assert torch.allclose(flipped(x), neg(x), atol=1e-5)


def test_parameter_free_set():
    for name in ops.PARAMETER_FREE:
        assert sum(p.numel() for p in ops.build_op(name, 4, 1).parameters()) == 0
    assert "sep_conv_3x3" not in ops.PARAMETER_FREE


def test_unknown_op_and_bad_stride_raise_clear_errors():
    with pytest.raises(UnknownNameError, match="unknown operation 'conv_7x7'.*neg_skip_connect"):
        ops.build_op("conv_7x7", 4, 1)
    with pytest.raises(KeyError):  # UnknownNameError is also a KeyError
        ops.check_op("identity")
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        ops.build_op("skip_connect", 4, 3)


def test_drop_path_exemption_is_by_module_type():
    assert ops.is_drop_path_exempt(ops.build_op("skip_connect", 4, 1))
    assert not ops.is_drop_path_exempt(ops.build_op("skip_connect", 4, 2))  # FR is dropped
    assert ops.is_drop_path_exempt(ops.build_op("neg_skip_connect", 4, 1))
    assert not ops.is_drop_path_exempt(ops.build_op("neg_skip_connect", 4, 1),
                                       exempt_negative=False)
