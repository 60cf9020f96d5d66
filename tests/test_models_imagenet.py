"""ImageNet variants on torchvision's ResNet/DenseNet: special cases at a small resolution
(2x3x32x32; the 224x224 sizes are counted on the meta device in test_models_sizes.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchvision.models import resnet as tv_resnet

from optnb import models
from optnb.models.scaled_norm import ScaledBatchNorm2d
from optnb.models.special_cases import compare_outputs, paired


def _x(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("depth,boundary", [(34, "shortcut"), (50, "restart")])
def test_hbnet_beta0_is_torchvision_resnet_bit_for_bit(depth, boundary):
    base, hb = paired(f"resnet{depth}", f"hbnet{depth}", beta=0.0, hb_boundary=boundary)
    assert isinstance(base, tv_resnet.ResNet) and isinstance(hb, tv_resnet.ResNet)
    assert list(base.state_dict()) == list(hb.state_dict())
    assert compare_outputs(base, hb, _x())["bitwise_equal"]


@pytest.mark.parametrize("boundary", ["restart", "shortcut"])
def test_hbnet_beta_changes_the_output(boundary):
    base, hb = paired("resnet34", "hbnet34", beta=0.4, hb_boundary=boundary)
    assert compare_outputs(base, hb, _x())["max_abs_diff"] > 1e-3


def _meta(name: str, **options) -> nn.Module:
    with torch.device("meta"):
        return models.build(name, **options)


def test_hbnet_momentum_blocks_and_learnable_count():
    restart = _meta("hbnet50", learnable_beta=True)
    # blocks per stage 3, 4, 6, 3; every stage opens with a projecting block -> restart skips
    # that block and the next: (3-2) + (4-2) + (6-2) + (3-2) = 8
    assert restart.num_momentum_parameters == 8
    shortcut = _meta("hbnet50", learnable_beta=True, hb_boundary="shortcut")
    assert shortcut.num_momentum_parameters == 16 - 4  # all non-projecting blocks
    base = models.count_params(_meta("resnet50"))
    assert models.count_params(shortcut) == base + 12


def test_stride_in_1x1_moves_the_stride_only():
    v1 = models.build("resnet50")
    v15 = _meta("resnet50", stride_in_1x1=False)
    assert models.count_params(v1) == models.count_params(v15)
    assert v1.layer2[0].conv1.stride == (2, 2) and v1.layer2[0].conv2.stride == (1, 1)
    assert v15.layer2[0].conv1.stride == (1, 1) and v15.layer2[0].conv2.stride == (2, 2)
    assert v1(_x()).shape == (2, 1000)


def test_agdnet121_ones_is_densenet121_and_agd_differs():
    base, ones = paired("densenet121", "agdnet121", coefficients="ones")
    assert list(base.state_dict()) == list(ones.state_dict())
    assert compare_outputs(base, ones, _x())["bitwise_equal"]
    _, agd = paired("densenet121", "agdnet121")
    assert compare_outputs(base, agd, _x())["max_abs_diff"] > 1e-3


def test_agdnet121_coefficients_sit_on_every_consumer():
    net = _meta("agdnet121", learnable_coefficients=True)
    scaled = [m for m in net.modules() if isinstance(m, ScaledBatchNorm2d)]
    # layers 1.. of each block (5 + 11 + 23 + 15) plus 3 transitions and norm5
    assert len(scaled) == 54 + 4
    assert isinstance(net.features.norm5, ScaledBatchNorm2d)
    assert isinstance(net.features.denseblock1.denselayer1.norm1, nn.BatchNorm2d)
    assert not isinstance(net.features.denseblock1.denselayer1.norm1, ScaledBatchNorm2d)
    blocks = (6, 12, 24, 16)
    assert net.num_coefficient_parameters == sum(m * (m + 1) // 2 for m in blocks)
    assert models.count_params(net) == 7_978_856 + net.num_coefficient_parameters


def test_imagenet_init_is_section_8():
    torch.manual_seed(0)
    net = models.build("resnet34")
    bound = math.sqrt(6.0 / (512 + 1000))
    w = net.fc.weight.detach()
    assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.9 * bound
    assert torch.equal(net.fc.bias, torch.zeros(1000))
    conv = net.layer4[0].conv2
    assert math.isclose(float(conv.weight.detach().std()), math.sqrt(2.0 / (512 * 9)),
                        rel_tol=0.02)
