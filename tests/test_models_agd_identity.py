"""AGDNet, stated honestly: with fixed coefficients it is a DenseNet with scaled BN affine
parameters (eq. (12) on DenseNet's skeleton), so the coefficients change only the initialisation
and the training dynamics. Float64; "bit for bit" means ``torch.equal``."""

from __future__ import annotations

import pytest
import torch

from optnb import models
from optnb.models.cifar_densenet import NORM_INITS, CifarDenseNet
from optnb.models.scaled_norm import ScaledBatchNorm2d
from optnb.models.special_cases import densenet_twin


def _x(batch: int = 4, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 32, 32, generator=gen, dtype=torch.float64)


def _trained_looking(name: str, **options) -> torch.nn.Module:
    """``name`` in float64 with every parameter moved off its initial value (BN gammas != 1)."""
    torch.manual_seed(0)
    net = models.build(name, **options).double()
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return net


@pytest.mark.parametrize("options", [{}, {"beta": 0.9}, {"learnable_coefficients": True}],
                         ids=["theta-schedule", "constant-beta", "learnable"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_agdnet_is_densenet_with_scaled_bn_affine_parameters(options, train):
    agd = _trained_looking("agdnet22", **options)
    twin = densenet_twin(agd)
    assert type(twin) is CifarDenseNet
    assert models.count_params(twin) == models.count_params(models.build("densenet22"))
    agd.train(train)
    twin.train(train)
    with torch.no_grad():
        assert torch.equal(agd(_x()), twin(_x()))
    if train:  # batch statistics do not depend on the affine parameters: the same running stats
        theirs = dict(twin.named_buffers())
        stats = [n for n, _ in agd.named_buffers() if n.endswith(("running_mean", "running_var"))]
        assert len(stats) == 2 * 21
        for name in stats:
            assert torch.equal(agd.get_buffer(name), theirs[name]), name


def test_the_coefficients_scale_the_gradient_of_gamma():
    """d loss / d gamma_stored = c * d loss / d gamma_effective: AGDNet trains its consumer BN
    parameters at a rescaled learning rate (what the coefficients change besides the init)."""
    agd = _trained_looking("agdnet22")
    twin = densenet_twin(agd)
    for net in (agd, twin):
        net(_x()).square().mean().backward()
    checked = 0
    for name, module in agd.named_modules():
        if isinstance(module, ScaledBatchNorm2d):
            scale = module.channel_scale().double()
            other = twin.get_submodule(name)
            torch.testing.assert_close(module.weight.grad, scale * other.weight.grad,
                                       rtol=1e-12, atol=1e-15)
            torch.testing.assert_close(module.bias.grad, scale * other.bias.grad,
                                       rtol=1e-12, atol=1e-15)
            checked += 1
    assert checked == 3 * (6 - 1) + 0 + 3  # layers 1..5 of each block, 2 transitions, the head


def test_densenet_with_agd_init_starts_as_agdnet():
    """Same seed, same conv weights: ``norm_init="agd"`` is AGDNet's function at initialisation."""
    torch.manual_seed(0)
    agd = models.build("agdnet22").double()
    torch.manual_seed(0)
    dense = models.build("densenet22", norm_init="agd").double()
    for train in (True, False):
        agd.train(train)
        dense.train(train)
        with torch.no_grad():
            assert torch.equal(agd(_x()), dense(_x()))
    assert models.count_params(dense) == models.count_params(models.build("densenet22"))
    gammas = dense.block2[4].norm.weight.detach()
    assert gammas[: dense.block_inputs[1]].eq(1).all() and gammas.max() > 1.0


def test_standard_norm_init_is_the_default_densenet_bit_for_bit():
    torch.manual_seed(0)
    a = models.build("densenet22")
    torch.manual_seed(0)
    b = models.build("densenet22", norm_init="standard")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_norm_init_is_a_densenet_option_only():
    with pytest.raises(models.ModelOptionError, match="norm_init.*standard.*agd"):
        models.build("densenet22", norm_init="gamma")
    assert "norm_init" in models.valid_options("densenet40")
    assert "norm_init" not in models.valid_options("agdnet40")  # AGDNet has the real thing
    assert NORM_INITS == ("standard", "agd")
