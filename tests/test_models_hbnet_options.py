"""CIFAR HBNet's open choices as options: ``momentum`` ("inside" / "outside", the literal (10)),
``beta_schedule`` ("constant" / "nesterov", the beta_k of (3)), ``learnable_beta``, ``reversible``
(wiring only, checked with a storing stand-in) and how they compose with ``hb_boundary``.

Tiny models (width 4, depth 14-32) on 2x3x16x16 inputs; numerical claims in float64.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from optnb import models
from optnb.models import cifar_resnet
from optnb.models.cifar_resnet import CifarHBNet, add_momentum
from optnb.models.errors import ModelOptionError
from optnb.theory.algorithms import nesterov_thetas

BOUNDARIES = ("restart", "shortcut")
MOMENTA = ("inside", "outside")
SCHEDULES = ("constant", "nesterov")


def _x(seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _build(name: str = "hbnet14", seed: int = 0, **options) -> nn.Module:
    torch.manual_seed(seed)
    return models.build(name, width=4, **options)


def _combinations():
    """Every valid combination of the options (reversible needs momentum="outside")."""
    for boundary, momentum, schedule, learnable, reversible in itertools.product(
        BOUNDARIES, MOMENTA, SCHEDULES, (False, True), (False, True)
    ):
        if reversible and momentum == "inside":
            continue
        yield {"hb_boundary": boundary, "momentum": momentum, "beta_schedule": schedule,
               "learnable_beta": learnable, "reversible": reversible}


COMBINATIONS = list(_combinations())


def _random_running_stats(model: nn.Module) -> None:
    for bn in model.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)


def _legacy_forward(model: CifarHBNet, x: torch.Tensor) -> torch.Tensor:
    """HBNet's forward before the options existed (momentum inside the ReLU, constant beta)."""
    z, prev = model.stem(x), None
    restart = model.hb_boundary == "restart"
    for block, active in zip(model.blocks(), model.momentum_blocks):
        beta = block.beta if model.learnable_beta and active else model.beta
        prev = prev if active else None
        out = block.residual(z)
        if block.shortcut is not None:
            z = block.shortcut(z)
            prev = None if prev is None else block.shortcut(prev)
        z, prev = add_momentum(out, z, prev, beta).relu_(), z
        if restart and block.shortcut is not None:
            prev = None
    return model.head(z)


# --- momentum placement ------------------------------------------------------------------------


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("learnable", [False, True])
def test_default_is_inside_and_unchanged_bit_for_bit(boundary, learnable):
    default = _build("hbnet20", beta=0.6, hb_boundary=boundary, learnable_beta=learnable)
    inside = _build("hbnet20", beta=0.6, hb_boundary=boundary, learnable_beta=learnable,
                    momentum="inside", beta_schedule="constant", reversible=False)
    legacy = _build("hbnet20", beta=0.6, hb_boundary=boundary, learnable_beta=learnable)
    assert default.momentum == "inside" and default.beta_schedule == "constant"
    x = _x()
    for train in (True, False):  # each model runs once per mode: same running statistics
        for model in (default, inside, legacy):
            model.train(train)
        with torch.no_grad():
            got = default(x)
            assert torch.equal(got, inside(x))
            assert torch.equal(got, _legacy_forward(legacy, x))


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_outside_differs_from_inside_for_nonzero_beta(boundary):
    inside = _build(beta=0.5, hb_boundary=boundary)
    outside = _build(beta=0.5, hb_boundary=boundary, momentum="outside")
    assert list(inside.state_dict()) == list(outside.state_dict())
    with torch.no_grad():
        assert (inside(_x()) - outside(_x())).abs().max() > 1e-4


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("learnable", [False, True])
def test_outside_at_beta0_is_resnet_bit_for_bit(boundary, learnable):
    base = _build("resnet20")
    hb = _build("hbnet20", beta=0.0, hb_boundary=boundary, momentum="outside",
                learnable_beta=learnable)
    hb.load_state_dict(base.state_dict(), strict=not learnable)
    x = _x()
    for train in (True, False):
        base.train(train)
        hb.train(train)
        with torch.no_grad():
            assert torch.equal(base(x), hb(x))


def _outside_reference(model: CifarHBNet, x: torch.Tensor) -> torch.Tensor:
    """Eq. (10) literally: z_{k+1} = relu(S z_k + F_k(z_k)) + beta_k (S z_k - S z_{k-1})."""
    z = F.relu(model.bn1(model.conv1(x)))
    prev = z  # z_{-1} := z_0
    for block, beta in zip(model.blocks(), model.block_betas()):
        if block.shortcut is None:
            s, sp = z, prev
        elif model.hb_boundary == "restart":  # plain block; its output is the next z_0 = z_{-1}
            z = F.relu(block.shortcut(z) + block.residual(z))
            prev = z
            continue
        else:
            s, sp = block.shortcut(z), block.shortcut(prev)
        z, prev = F.relu(s + block.residual(z)) + beta * (s - sp), s
    return model.fc(torch.flatten(F.adaptive_avg_pool2d(z, 1), 1))


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_outside_is_literal_equation_10_float64(boundary, schedule):
    model = _build("hbnet32", beta=0.7, hb_boundary=boundary, momentum="outside",
                   beta_schedule=schedule).double().eval()
    _random_running_stats(model)
    x = _x(dtype=torch.float64)
    with torch.no_grad():
        got, want = model(x), _outside_reference(model, x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert any(b != 0 for b in model.block_betas())


# --- beta schedule -----------------------------------------------------------------------------


def _theta_betas(num: int) -> np.ndarray:
    """beta_k = theta_k (1 - theta_{k-1}) / theta_{k-1}, theta_{-1} = 1, from the theory module."""
    theta = nesterov_thetas(num)
    before = np.concatenate([[1.0], theta[:-1]])
    return theta * (1.0 - before) / before


def test_nesterov_betas_follow_theta_and_restart_per_stage():
    model = models.build("hbnet32", width=4, beta_schedule="nesterov")  # n = 5 blocks per stage
    got = np.array(model.block_betas(), dtype=np.float64)
    b = _theta_betas(5)
    # stage 1 is one chain from the stem (z_0 .. z_4); stages 2, 3 restart after their
    # plain downsampling block (its output is z_0), so they see beta_0 .. beta_3
    want = np.concatenate([b, [0.0], b[:4], [0.0], b[:4]])
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)
    assert got[0] == got[1] == 0.0 and abs(got[2] - 0.2818) < 1e-4 and abs(got[3] - 0.4340) < 1e-4
    np.testing.assert_array_equal(got[6:10], got[11:15])  # the restart: same values per stage


def test_nesterov_under_shortcut_runs_one_chain():
    model = models.build("hbnet32", width=4, beta_schedule="nesterov", hb_boundary="shortcut")
    np.testing.assert_allclose(model.block_betas(), _theta_betas(15), rtol=1e-15, atol=0)


def test_constant_block_betas_are_beta_where_momentum_acts():
    model = models.build("hbnet20", width=4, beta=0.3)
    assert model.block_betas() == tuple(0.3 if a else 0.0 for a in model.momentum_blocks)


@pytest.mark.parametrize("momentum", MOMENTA)
def test_nesterov_ignores_beta(momentum):
    a = _build("hbnet32", beta=0.1, beta_schedule="nesterov", momentum=momentum)
    b = _build("hbnet32", beta=0.9, beta_schedule="nesterov", momentum=momentum)
    assert a.block_betas() == b.block_betas()
    with torch.no_grad():
        assert torch.equal(a(_x()), b(_x()))
        constant = _build("hbnet32", beta=0.1, momentum=momentum)
        assert (constant(_x()) - a(_x())).abs().max() > 1e-4


def test_learnable_nesterov_starts_at_the_schedule():
    fixed = models.build("hbnet32", width=4, beta_schedule="nesterov")
    learned = models.build("hbnet32", width=4, beta_schedule="nesterov", learnable_beta=True)
    np.testing.assert_allclose(learned.block_betas(), fixed.block_betas(), rtol=1e-6, atol=0)
    with torch.no_grad():
        learned.layer1[3].beta.fill_(0.25)
    assert learned.block_betas()[3] == 0.25


# --- parameters, gradients, errors -------------------------------------------------------------


@pytest.mark.parametrize("options", COMBINATIONS, ids=lambda o: "-".join(map(str, o.values())))
def test_parameter_counts_match_resnet(options):
    base = models.count_params(models.build("resnet14", width=4))
    hb = models.build("hbnet14", width=4, **options)
    # n = 2: restart -> only layer1.1 carries momentum; shortcut -> every block but the first
    expected = {"restart": 1, "shortcut": 5}[options["hb_boundary"]]
    assert sum(hb.momentum_blocks) == expected
    extra = expected if options["learnable_beta"] else 0
    assert hb.num_momentum_parameters == extra
    assert models.count_params(hb) == base + extra


@pytest.mark.parametrize("options", COMBINATIONS, ids=lambda o: "-".join(map(str, o.values())))
def test_every_combination_runs_forward_and_backward(options):
    model = _build(**options).train()
    out = model(_x())
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    if options["learnable_beta"]:
        betas = [block.beta for block, active in zip(model.blocks(), model.momentum_blocks)
                 if active]
        assert len(betas) == model.num_momentum_parameters
        assert all(b.grad is not None and b.grad.abs() > 0 for b in betas)


def test_learnable_beta_gradients_for_every_momentum_block_hbnet32():
    for options in ({"hb_boundary": "shortcut", "momentum": "outside"},
                    {"hb_boundary": "restart", "beta_schedule": "nesterov"}):
        model = _build("hbnet32", learnable_beta=True, **options)
        model(_x()).square().mean().backward()
        named = {n: p for n, p in model.named_parameters() if n.endswith(".beta")}
        assert len(named) == model.num_momentum_parameters == sum(model.momentum_blocks)
        assert all(p.grad is not None and p.grad.abs() > 0 for p in named.values()), named


@pytest.mark.parametrize("option,value,valid", [
    ("momentum", "between", "'inside', 'outside'"),
    ("beta_schedule", "theta", "'constant', 'nesterov'"),
])
def test_bad_choices_name_the_valid_ones(option, value, valid):
    with pytest.raises(ModelOptionError, match=f"{option}='{value}' is not valid; valid choices: {valid}"):
        models.build("hbnet8", width=4, **{option: value})


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_reversible_must_be_a_bool(value):
    with pytest.raises(ModelOptionError, match="reversible must be True or False"):
        models.build("hbnet8", width=4, reversible=value)


def test_reversible_needs_momentum_outside():
    message = r"reversible=True needs momentum='outside' \(the closing ReLU inside is not invertible\)"
    with pytest.raises(ModelOptionError, match=message):
        models.build("hbnet8", width=4, reversible=True)


def test_new_options_reach_the_registry():
    options = models.valid_options("hbnet56")
    assert {"momentum", "beta_schedule", "reversible", "learnable_beta", "hb_boundary"} <= set(options)


# --- reversible wiring (with a storing stand-in for reversible_hb_stage) -------------------------


@pytest.fixture
def stand_in(monkeypatch):
    """Replace ``reversible_hb_stage`` by the plain recursion and record every call."""
    calls: list[tuple[list[nn.Module], list[float]]] = []

    def plain(blocks, prev, z, betas):
        calls.append((list(blocks), [float(b.detach()) if torch.is_tensor(b) else b for b in betas]))
        for block, beta in zip(blocks, betas):
            prev, z = z, torch.relu(z + block.residual(z)) + beta * (z - prev)
        return prev, z

    monkeypatch.setattr(cifar_resnet, "reversible_hb_stage", plain)
    return calls


def _runs(model: CifarHBNet) -> list[list[str]]:
    names = {id(m): n for n, m in model.named_modules()}
    flags = model.reversible_blocks()
    runs, current = [], []
    for block, flag in zip(model.blocks(), flags):
        if flag:
            current.append(names[id(block)])
        elif current:
            runs, current = [*runs, current], []
    return runs + ([current] if current else [])


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("learnable", [False, True])
def test_reversible_equals_plain_outside_bit_for_bit(stand_in, boundary, schedule, learnable):
    options = {"beta": 0.4, "hb_boundary": boundary, "beta_schedule": schedule,
               "learnable_beta": learnable, "momentum": "outside"}
    plain = _build("hbnet32", **options)
    rev = _build("hbnet32", reversible=True, **options)
    x = _x()
    for model in (plain, rev):
        model(x).square().mean().backward()
    assert stand_in, "no block ran reversibly"
    with torch.no_grad():
        assert torch.equal(plain(x), rev(x))
    for (name, p), q in zip(plain.named_parameters(), rev.parameters()):
        assert torch.equal(p.grad, q.grad), name
    names = {id(m): n for n, m in rev.named_modules()}
    recorded = [[names[id(b)] for b in blocks] for blocks, _ in stand_in]
    assert recorded[: len(recorded) // 2] == _runs(rev)  # forward ran twice: backward, then check
    betas = dict(zip((names[id(b)] for b in rev.blocks()), rev.block_betas()))
    for blocks, values in stand_in:
        assert values == [betas[names[id(b)]] for b in blocks] and 0.0 not in values


def test_reversible_runs_skip_downsampling_and_zero_beta_blocks():
    # nesterov, restart, n = 5: stage 1 has beta_0 = beta_1 = 0 in layer1.0-1; stages 2-3 have
    # the plain downsampling block, then z_0 (no momentum), beta_1 = 0, beta_2, beta_3
    model = models.build("hbnet32", width=4, momentum="outside", beta_schedule="nesterov",
                         reversible=True)
    assert _runs(model) == [["layer1.2", "layer1.3", "layer1.4"], ["layer2.3", "layer2.4"],
                            ["layer3.3", "layer3.4"]]
    shortcut = models.build("hbnet32", width=4, momentum="outside", reversible=True,
                            hb_boundary="shortcut")
    assert _runs(shortcut) == [[f"layer{s}.{b}" for b in range(1, 5)] for s in (1, 2, 3)]
    assert not any(models.build("hbnet32", width=4, momentum="inside").reversible_blocks())


def test_reversible_with_beta0_runs_nothing_reversibly_and_is_resnet(stand_in):
    base = _build("resnet20")
    hb = _build("hbnet20", beta=0.0, momentum="outside", reversible=True)
    assert not any(hb.reversible_blocks())
    with torch.no_grad():
        assert torch.equal(base(_x()), hb(_x()))
    assert not stand_in
