"""ADMMNet (eq. (13)): its update rule against linearized ADMM (6), the forward written out, the
zero-branch special case, sizes against ResNet, registry, BatchNorm sharing and a training run.

Tiny models (width 4, depth 8-20) on 2x3x32x32 (or 16x16) inputs; numerical claims in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from optnb import data, models
from optnb.models import ModelOptionError, special_cases
from optnb.models.cifar_admmnet import READOUTS, CifarADMMNet, admm_step
from optnb.models.cifar_resnet import CifarResNet, ShortcutA
from optnb.models.special_cases import compare_outputs, paired
from optnb.theory.algorithms import admm_linearized
from optnb.theory.equivalence import Lemma1Cost, propagate_admm
from optnb.train import FitOptions, fit, recipes

#: float64 round-off bound for (13) vs (6), relative to the largest feature
REL_TOL = 1e-12


def _x(seed: int = 0, dtype: torch.dtype = torch.float32, batch: int = 2, size: int = 32
       ) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=gen, dtype=dtype)


def _spd(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n))
    return A @ A.T / n + 0.1 * np.eye(n)


# --- the update rule is (13) = linearized ADMM (6) ----------------------------------------------


@pytest.mark.parametrize("activation", ["tanh", "relu", "softplus"])
def test_admm_step_reproduces_linearized_admm_on_the_lemma1_cost(activation):
    """The model's own ``admm_step`` with ``Phi(W .)`` exact runs (6) on f (x <-> z', y <-> z)."""
    K, n = 12, 5
    cost = Lemma1Cost(_spd(n, seed=1), activation)
    z0 = torch.randn(3, n, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    zp, z, s = z0, z0, torch.zeros_like(z0)
    zps, zs, ss = [zp], [z], [s]
    for _ in range(K):
        zp, z, s = admm_step(cost.layer, zp, z, s)
        zps.append(zp)
        zs.append(z)
        ss.append(s)
    zps, zs, ss = torch.stack(zps), torch.stack(zs), torch.stack(ss)

    it = admm_linearized(cost.grad, cost.to_x(z0), K)
    scale = max(zps.abs().max(), zs.abs().max())
    assert float(scale) > 0.1
    for net, opt in ((zps, cost.to_z(it.x)), (zs, cost.to_z(it.y)), (ss, cost.to_z(it.lam))):
        assert float((net - opt).abs().max()) <= REL_TOL * float(scale)
    # and theory's own network form (13), sum written as a running state there too
    theory_zp, theory_z = propagate_admm(cost.layer, z0, K)
    assert float((zps - theory_zp).abs().max()) <= REL_TOL * float(scale)
    assert float((zs - theory_z).abs().max()) <= REL_TOL * float(scale)
    # s_k is (13)'s sum_{t=1}^k (z'_t - z_t)
    sums = torch.cumsum(zps[1:] - zs[1:], dim=0)
    assert float((ss[1:] - sums).abs().max()) <= REL_TOL * float(scale)


def test_transport_at_a_boundary_is_s_of_the_step():
    """Option A is linear: the step with ``S`` on ``z_k, s_k`` is ``S`` of the untransported step
    (``z'_k`` reaches the new space through the layer); exact, since ``S`` only selects and pads."""
    gen = torch.Generator().manual_seed(0)
    zp, z, s = (torch.randn(2, 4, 8, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    shortcut = ShortcutA(4, 8, stride=2)
    conv = nn.Conv2d(4, 4, 3, padding=1).double()

    def layer(u):
        return torch.tanh(conv(u))

    with torch.no_grad():
        moved = admm_step(lambda u: shortcut(layer(u)), zp, z, s, shortcut)
        then_moved = [shortcut(t) for t in admm_step(layer, zp, z, s)]
    for a, b in zip(moved, then_moved):
        assert a.shape == (2, 8, 4, 4)
        assert torch.equal(a, b)


def _reference(model: CifarADMMNet, x: torch.Tensor) -> torch.Tensor:
    """(13) written out with the explicit sum, every block run on each stream separately."""
    z0 = model.stem(x)
    zps, zs = [z0], [z0]
    for block in model.blocks():
        move = block.shortcut or (lambda t: t)
        total = sum((zps[t] - zs[t] for t in range(1, len(zps))), torch.zeros_like(zs[-1]))
        zp_new = 0.5 * (block(zps[-1]) + move(zs[-1]) - move(total))
        z_new = 0.5 * (block(zs[-1]) + zp_new + move(total))
        zps = [move(t) for t in zps] + [zp_new]
        zs = [move(t) for t in zs] + [z_new]
    out = {"z": zs[-1], "zp": zps[-1], "mean": 0.5 * (zps[-1] + zs[-1])}[model.readout]
    return model.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            shape = m.weight.shape
            m.weight.data = 0.5 + torch.rand(shape, generator=gen, dtype=m.weight.dtype)
            m.bias.data = 0.2 * torch.randn(shape, generator=gen, dtype=m.bias.dtype)
            m.running_mean = 0.1 * torch.randn(shape, generator=gen, dtype=m.running_mean.dtype)
            m.running_var = 0.5 + torch.rand(shape, generator=gen, dtype=m.running_var.dtype)


@pytest.mark.parametrize("readout", READOUTS)
def test_forward_is_equation_13_in_eval_mode(readout):
    """Eval mode: the joint BN pass is ResNet's block on each stream; the forward is (13)."""
    torch.manual_seed(0)
    model = models.build("admmnet14", width=4, readout=readout).double().eval()
    _randomise_bn(model)
    x = _x(dtype=torch.float64)
    with torch.no_grad():
        got, want = model(x), _reference(model, x)
    assert float((got - want).abs().max()) <= 1e-12 * float(want.abs().max())


def test_first_block_is_two_damped_resnet_steps():
    """From ``z'_0 = z_0``, ``s_0 = 0``: ``z'_1 = z_0 + (B z_0 - z_0)/2``, ``z_1 = z_0 + 3 (B z_0 -
    z_0)/4`` with ``B`` ResNet's block (algebra of (13); float64 round-off)."""
    torch.manual_seed(0)
    model = models.build("admmnet8", width=4).double().eval()
    _randomise_bn(model)
    block = next(model.blocks())
    with torch.no_grad():
        z0 = model.stem(_x(dtype=torch.float64))
        zp1, z1, s1 = admm_step(block, z0, z0, torch.zeros_like(z0))
        step = block(z0) - z0
    for got, want in ((zp1, z0 + step / 2), (z1, z0 + 0.75 * step), (s1, -step / 4)):
        assert torch.allclose(got, want, rtol=0, atol=1e-13)


# --- special case and relation to ResNet --------------------------------------------------------


def _zero_branches(model: CifarResNet) -> None:
    for block in model.blocks():
        nn.init.zeros_(block.bn2.weight)
        nn.init.zeros_(block.bn2.bias)


def test_zero_branches_is_resnet_bit_for_bit():
    """F_k = 0 (zero-initialised last BN): every block keeps z' = z, s = 0 exactly, so ADMMNet
    computes ResNet's output bit for bit, in train and eval mode, whatever the readout."""
    torch.manual_seed(0)
    base = models.build("resnet20", width=4)
    _zero_branches(base)
    x = _x()
    for readout in READOUTS:
        admm = models.build("admmnet20", width=4, readout=readout)
        admm.load_state_dict(base.state_dict())
        for train in (True, False):
            result = compare_outputs(base, admm, x, train=train)
            assert result["bitwise_equal"], (readout, train, result)
    with torch.no_grad():
        zp, z, s = admm.propagate(admm.stem(x))
    assert torch.equal(zp, z) and not s.any()


def test_shares_resnet_weights_and_differs_with_live_branches():
    base, admm = paired("resnet20", "admmnet20")
    assert list(base.state_dict()) == list(admm.state_dict())
    for key, value in base.state_dict().items():
        assert torch.equal(value, admm.state_dict()[key]), key
    assert compare_outputs(base, admm, _x())["max_abs_diff"] > 1e-3


# --- sizes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [20, 56, 110])
def test_params_equal_resnet(depth):
    with torch.device("meta"):
        base, admm = models.build(f"resnet{depth}"), models.build(f"admmnet{depth}")
    assert models.count_params(admm) == models.count_params(base)
    assert list(admm.state_dict()) == list(base.state_dict())


def test_macs_are_twice_resnet_less_stem_and_head():
    """Every block runs on both streams; the stem conv and the FC run once (32x32, batch 1)."""
    base, admm = models.measure("resnet20"), models.measure("admmnet20")
    stem, fc = 3 * 16 * 9 * 32 * 32, 64 * 10
    assert admm["macs"] == 2 * base["macs"] - stem - fc
    assert 1.98 < admm["macs"] / base["macs"] < 2.0
    assert admm["params"] == base["params"] == 269_722
    # the side paths of (13): element-wise, about 2 % of the multiply-adds at depth 20
    assert 0 < admm["elementwise"] - base["elementwise"] < 0.02 * admm["macs"]


# --- registry, modes, BatchNorm sharing -----------------------------------------------------------


def test_registry_names_and_baselines():
    for depth in (8, 14, 20, 32, 44, 56, 110):
        name = f"admmnet{depth}"
        assert name in models.names("cifar")
        assert models.baseline_of(name) == f"resnet{depth}"
        assert models.spec(name).family == "admmnet"
    assert models.baseline_of("admmnet") == "resnet"
    with torch.device("meta"):
        net = models.build("admmnet", depth=26, width=4)
    assert isinstance(net, CifarADMMNet) and len(list(net.blocks())) == 12


def test_bad_options_name_the_valid_ones():
    with pytest.raises(ModelOptionError, match="valid choices: 'z', 'zp', 'mean'") as err:
        models.build("admmnet8", readout="x")
    assert "\n" not in str(err.value)
    with pytest.raises(ModelOptionError, match="valid options: .*readout"):
        models.build("admmnet8", beta=0.5)
    with pytest.raises(ModelOptionError, match="depth must be"):
        models.build("admmnet", depth=21)
    with pytest.raises(ModelOptionError, match="width"):
        models.build("admmnet8", width=0)


def test_forward_backward_and_modes():
    torch.manual_seed(0)
    model = models.build("admmnet8")
    x = _x()
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        first, again, single = model(x), model(x), model(x[:1])
    assert torch.equal(first, again)
    assert torch.allclose(single, first[:1], atol=1e-5)  # eval: no coupling across samples


def test_one_bn_pass_per_forward_over_both_streams():
    """Train mode: each block BN sees the 2B samples [z'; z] once; running stats move once."""
    torch.manual_seed(0)
    model = models.build("admmnet14", width=4).train()
    seen: dict[str, list[int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            m.register_forward_hook(lambda mod, inp, out, name=name:
                                    seen.setdefault(name, []).append(inp[0].shape[0]))
    with torch.no_grad():
        model(_x(batch=2))
    assert seen.pop("bn1") == [2]  # the stem runs once on the images
    assert seen and all(batches == [4] for batches in seen.values())
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert int(m.num_batches_tracked) == 1


# --- training through the engine ------------------------------------------------------------------


def test_trains_through_the_engine_on_the_table1_recipe():
    x, y = data.load("synthetic", num_samples=24, image_size=16, seed=1)
    train = data.GpuLoader(x, y, 8, augment=True, padding=2, seed=0,
                           mean=data.MEAN["synthetic"], std=data.STD["synthetic"])
    test = data.make_loader("synthetic", x[:8], y[:8], 8, train=False)
    recipe = recipes.for_model("resnet56", "cifar10").replace(epochs=1, batch_size=8)
    torch.manual_seed(0)
    model = models.build("admmnet8", width=4)
    result = fit(model, train, recipe, test=test, device="cpu",
                 options=FitOptions(steps_per_epoch=3, log_every=1))
    assert result.complete and result.params == models.count_params(model)
    assert math.isfinite(result.final["train_loss"])
    assert math.isfinite(result.final["test_loss"])


# --- the notebook's check (special_cases.admm_step_deviation) ---------------------------------


@pytest.mark.parametrize("activation", ["tanh", "relu", "softplus"])
def test_admm_step_deviation_is_round_off(activation):
    assert special_cases.admm_step_deviation(activation) <= REL_TOL


def test_admm_step_deviation_sees_a_wrong_update(monkeypatch):
    """A planted fault (the multiplier's sign flipped in the second stream) is caught."""
    def flipped(layer, zp, z, s, transport=None):
        zp1, z1, s1 = admm_step(layer, zp, z, s, transport)
        z_bad = z1 - s  # (13) adds s_k / 2 ... this subtracts s_k, i.e. lambda with the wrong sign
        return zp1, z_bad, s + zp1 - z_bad

    monkeypatch.setattr(special_cases, "admm_step", flipped)
    assert special_cases.admm_step_deviation("softplus") > 1e-3
