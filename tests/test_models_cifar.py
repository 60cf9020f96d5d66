"""CIFAR ResNet/HBNet (eq. (10)) and DenseNet/AGDNet (eq. (12)): the special cases, the
momentum and coefficient placement, boundary options, learnable variants and initialisation.

Tiny models (width 4-16, depth 8-22) on 2x3x32x32 inputs; numerical claims in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from optnb import models
from optnb.models.cifar_densenet import agd_coefficients
from optnb.models.cifar_resnet import ShortcutA
from optnb.models.scaled_norm import ScaledBatchNorm2d
from optnb.models.special_cases import bn_cancels_prescaling, compare_outputs, paired
from optnb.theory.algorithms import cumulative_coefficients, h_coefficients


def _x(seed: int = 0, dtype: torch.dtype = torch.float32, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --- HBNet -------------------------------------------------------------------------------------


@pytest.mark.parametrize("boundary", ["restart", "shortcut"])
def test_hbnet_beta0_is_resnet_bit_for_bit(boundary):
    base, hb = paired("resnet20", "hbnet20", beta=0.0, hb_boundary=boundary)
    assert list(base.state_dict()) == list(hb.state_dict())
    for train in (True, False):
        result = compare_outputs(base, hb, _x(), train=train)
        assert result["bitwise_equal"], result


@pytest.mark.parametrize("boundary", ["restart", "shortcut"])
def test_beta_changes_the_output_in_train_mode(boundary):
    base, hb = paired("resnet20", "hbnet20", beta=0.3, hb_boundary=boundary)
    assert compare_outputs(base, hb, _x())["max_abs_diff"] > 1e-3


def test_boundary_modes_differ_and_shortcut_carries_more_momentum():
    _, restart = paired("resnet20", "hbnet20", beta=0.5, hb_boundary="restart")
    _, shortcut = paired("resnet20", "hbnet20", beta=0.5, hb_boundary="shortcut")
    # n = 3: restart skips block 0 of each stage and block 1 of stages 2-3 -> 2 + 1 + 1
    assert restart.momentum_blocks == (False, True, True, False, False, True, False, False, True)
    assert shortcut.momentum_blocks == (False, True, True) + (True,) * 6
    assert compare_outputs(restart, shortcut, _x())["max_abs_diff"] > 1e-3


def _hb_reference(model, x: torch.Tensor) -> torch.Tensor:
    """Eq. (10) relaxed, written out: z_{k+1} = relu(S z_k + F_k(z_k) + beta (S z_k - S z_{k-1}))."""
    beta = model.beta
    zs = [F.relu(model.bn1(model.conv1(x)))]
    prev = zs[0]  # z_{-1} := z_0
    for block in model.blocks():
        z = zs[-1]
        branch = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(z)))))
        if block.shortcut is None:
            new = F.relu(z + branch + beta * (z - prev))
            prev = z
        elif model.hb_boundary == "restart":
            new = F.relu(block.shortcut(z) + branch)
            prev = new  # the next stage starts with z_{-1} := z_0
        else:
            s, sp = block.shortcut(z), block.shortcut(prev)
            new = F.relu(s + branch + beta * (s - sp))
            prev = s
        zs.append(new)
    return model.fc(torch.flatten(F.adaptive_avg_pool2d(zs[-1], 1), 1))


@pytest.mark.parametrize("boundary", ["restart", "shortcut"])
def test_hbnet_forward_is_equation_10(boundary):
    torch.manual_seed(1)
    model = models.build("hbnet14", width=4, beta=0.7, hb_boundary=boundary).double().eval()
    for bn in model.modules():  # non-trivial running statistics for eval mode
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    x = _x(dtype=torch.float64)
    with torch.no_grad():
        got, want = model(x), _hb_reference(model, x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_option_a_shortcut_is_linear_and_parameter_free():
    s = ShortcutA(4, 8, 2)
    a, b = torch.randn(2, 4, 8, 8, dtype=torch.float64), torch.randn(2, 4, 8, 8, dtype=torch.float64)
    out = s(a + 0.3 * (a - b))
    torch.testing.assert_close(out, s(a) + 0.3 * (s(a) - s(b)), rtol=0, atol=1e-15)
    assert out.shape == (2, 8, 4, 4) and not list(s.parameters())
    assert torch.equal(out[:, 4:], torch.zeros_like(out[:, 4:]))


def test_learnable_beta_adds_one_scalar_per_momentum_block_and_trains():
    base = models.build("resnet20", width=4)
    for boundary, expected in (("restart", 4), ("shortcut", 8)):
        hb = models.build("hbnet20", width=4, learnable_beta=True, beta=0.2, hb_boundary=boundary)
        assert hb.num_momentum_parameters == expected == sum(hb.momentum_blocks)
        assert models.count_params(hb) == models.count_params(base) + expected
        hb(_x()).square().mean().backward()
        grads = [p.grad for n, p in hb.named_parameters() if n.endswith(".beta")]
        assert len(grads) == expected and all(g is not None and g.abs() > 0 for g in grads)


def test_fixed_beta_adds_no_parameters():
    assert models.count_params(models.build("hbnet20", width=4)) == models.count_params(
        models.build("resnet20", width=4))


# --- AGDNet ------------------------------------------------------------------------------------


def test_agdnet_ones_is_densenet_bit_for_bit():
    base, agd = paired("densenet22", "agdnet22", coefficients="ones")
    assert list(base.state_dict()) == list(agd.state_dict())
    for train in (True, False):
        assert compare_outputs(base, agd, _x(), train=train)["bitwise_equal"]


def test_agd_coefficients_change_the_output_in_train_mode():
    base, agd = paired("densenet22", "agdnet22")
    assert compare_outputs(base, agd, _x())["max_abs_diff"] > 1e-3
    _, const = paired("densenet22", "agdnet22", beta=0.9)  # constant momentum: other coefficients
    assert compare_outputs(agd, const, _x())["max_abs_diff"] > 1e-3


def test_coefficients_before_bn_would_be_a_noop_ours_are_not():
    """The trap of appendix note 5.4: scaling the concatenation before BN changes nothing."""
    assert bn_cancels_prescaling(1.282) < 1e-4  # only through BN's eps
    torch.manual_seed(0)
    net = models.build("densenet", depth=13, init_channels=8).train()  # 3 layers per block
    x = _x()
    block = net.block1
    cat = net.conv0(x)
    cat = torch.cat([cat, block[0](cat)], 1)
    cat = torch.cat([cat, block[1](cat)], 1)  # input of layer 2: [y0 (8), g0 (12), g1 (12)]
    c = agd_coefficients(3)[2]  # c_{2,0} = 1, c_{2,1} = 1 + beta_2
    scale = torch.cat([torch.ones(8), torch.full((12,), c[0]), torch.full((12,), c[1])])
    scale = scale[None, :, None, None].float()
    pre = block[2].norm(cat * scale)  # coefficients applied BEFORE BN
    torch.testing.assert_close(pre, block[2].norm(cat), rtol=0, atol=1e-4)
    agd = models.build("agdnet", depth=13, init_channels=8)
    agd.load_state_dict(net.state_dict())
    post = agd.block1[2].norm(cat)  # ours: after BN
    torch.testing.assert_close(post, block[2].norm(cat) * scale)
    assert (post - block[2].norm(cat)).abs().max() > 0.1


@pytest.mark.parametrize("train", [True, False])
def test_scaled_norm_is_bn_times_chunk_coefficients(train):
    torch.manual_seed(0)
    scaled = ScaledBatchNorm2d([3, 2, 2], [1.5, -0.25]).double().train(train)
    plain = nn.BatchNorm2d(7).double().train(train)
    with torch.no_grad():
        for bn in (scaled, plain):
            bn.weight.copy_(torch.linspace(0.5, 2.0, 7))
            bn.bias.copy_(torch.linspace(-1.0, 1.0, 7))
            bn.running_mean.copy_(torch.linspace(-0.2, 0.3, 7))
            bn.running_var.copy_(torch.linspace(0.5, 1.5, 7))
    x = torch.randn(4, 7, 3, 3, dtype=torch.float64)
    c = torch.tensor([1, 1, 1, 1.5, 1.5, -0.25, -0.25], dtype=torch.float64)[None, :, None, None]
    torch.testing.assert_close(scaled(x), plain(x) * c, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(scaled.running_mean, plain.running_mean, rtol=0, atol=0)
    assert int(scaled.num_batches_tracked) == int(plain.num_batches_tracked)


def test_agd_coefficients_come_from_the_theory_module():
    m = 6
    table = agd_coefficients(m)
    np.testing.assert_allclose(table, cumulative_coefficients(m), rtol=0, atol=0)
    # c_{k,j} = sum of the increments h_{i,j} of (5), i = j+1..k (float64)
    H = h_coefficients(m)
    for k in range(1, m + 1):
        for j in range(k):
            assert math.isclose(table[k, j], H[j + 1 : k + 1, j].sum(), rel_tol=1e-12)
    assert math.isclose(table[2, 1], 1.2818, abs_tol=1e-4)  # 1 + beta_2 (appendix note 3.2)
    net = models.build("agdnet22")
    for k in range(1, 6):  # layers 1..5 of a 6-layer block
        np.testing.assert_allclose(net.block2[k].norm.coefficients.double().numpy(),
                                   table[k, :k], rtol=1e-6)
    np.testing.assert_allclose(net.trans1.norm.coefficients.double().numpy(), table[6, :6],
                               rtol=1e-6)
    np.testing.assert_allclose(net.norm.coefficients.double().numpy(), table[6, :6], rtol=1e-6)
    assert type(net.block1[0].norm) is nn.BatchNorm2d  # layer 0 reads y_0 alone


def test_learnable_coefficients_count_and_gradients():
    dense = models.build("densenet22")
    agd = models.build("agdnet22", learnable_coefficients=True)
    per_block = 6 * 7 // 2  # consumers k = 1..6 (layers 1-5 and the transition/head)
    assert agd.num_coefficient_parameters == 3 * per_block
    assert models.count_params(agd) == models.count_params(dense) + 3 * per_block
    agd(_x()).square().mean().backward()
    grads = [p.grad for n, p in agd.named_parameters() if n.endswith("coefficients")]
    assert len(grads) == 18 and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_dropout_option_acts_in_train_mode_only():
    net = models.build("densenet10", dropout=0.5)
    x = _x()
    torch.manual_seed(0)
    a = net.train()(x)
    torch.manual_seed(1)
    b = net(x)
    assert (a - b).abs().max() > 1e-4
    net.eval()
    assert torch.equal(net(x), net(x))


# --- initialisation (Section 8) ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["hbnet20", "agdnet22"])
def test_init_kaiming_convs_xavier_fc(name):
    torch.manual_seed(0)
    net = models.build(name)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    big = max(convs, key=lambda m: m.weight.numel())
    fan_out = big.out_channels * big.kernel_size[0] * big.kernel_size[1]
    assert math.isclose(float(big.weight.detach().std()), math.sqrt(2.0 / fan_out), rel_tol=0.05)
    fc = net.fc
    bound = math.sqrt(6.0 / (fc.in_features + fc.out_features))  # Xavier uniform
    assert float(fc.weight.detach().abs().max()) <= bound
    assert float(fc.weight.detach().abs().max()) > 0.8 * bound > 1.0 / math.sqrt(fc.in_features)
    assert torch.equal(fc.bias, torch.zeros_like(fc.bias))
    assert all(torch.equal(m.weight, torch.ones_like(m.weight))
               for m in net.modules() if isinstance(m, nn.BatchNorm2d))


def test_any_width_and_classes_train_one_step():
    net = models.build("hbnet8", width=4, num_classes=100)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = _x(batch=4), torch.tensor([0, 1, 2, 99])
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    opt.step()
    assert net(x).shape == (4, 100) and math.isfinite(loss.item())


def _finite_difference(model, param, x, eps=1e-6):
    """Central difference of the mean squared logits w.r.t. one scalar entry of ``param``."""
    with torch.no_grad():
        param.add_(eps)
        up = model(x).square().mean()
        param.sub_(2 * eps)
        down = model(x).square().mean()
        param.add_(eps)
    return float((up - down) / (2 * eps))


@pytest.mark.parametrize("name,options,key", [
    ("hbnet14", {"learnable_beta": True, "beta": 0.4, "hb_boundary": "shortcut"}, "layer2.0.beta"),
    ("agdnet", {"depth": 13, "learnable_coefficients": True}, "block2.2.norm.coefficients"),
])
def test_learnable_scalar_gradients_match_finite_differences(name, options, key):
    """Autograd through the in-place momentum / folded BN scaling, float64, rtol 1e-5."""
    torch.manual_seed(0)
    kwargs = {"width": 4} if name.startswith("hbnet") else {"init_channels": 4, "growth_rate": 4}
    model = models.build(name, **kwargs, **options).double().eval()
    for bn in model.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_var.uniform_(0.5, 2.0)
    param = dict(model.named_parameters())[key]
    x = _x(dtype=torch.float64)
    model(x).square().mean().backward()
    analytic = float(param.grad.reshape(-1)[0])
    numeric = _finite_difference(model, param.reshape(-1)[0:1], x)
    assert abs(analytic) > 1e-6  # a real gradient, not a trivially matching zero
    assert math.isclose(analytic, numeric, rel_tol=1e-5), (analytic, numeric)
