"""The architect (optnb.nas.architect): 1st order, 2nd order vs an exact autograd oracle (float64)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from optnb.nas import architect as A
from optnb.nas.errors import UnknownNameError
from optnb.nas.spaces import SearchNetwork

KW = {"lr": 0.025, "momentum": 0.9, "weight_decay": 3e-4}


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    net = SearchNetwork("agd", C=4, layers=3).double()
    net.init_arch("random", scale=0.5)
    gen = torch.Generator().manual_seed(1)
    batch = [torch.randn(4, 3, 8, 8, generator=gen, dtype=torch.float64),
             torch.randint(0, 10, (4,), generator=gen),
             torch.randn(4, 3, 8, 8, generator=gen, dtype=torch.float64),
             torch.randint(0, 10, (4,), generator=gen)]
    momentum = {n: 0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64)
                for n, p in net.named_weight_parameters()}
    return net, batch, momentum


@pytest.fixture(scope="module")
def oracle(setup):
    net, (x, y, xv, yv), mom = setup
    return A.unrolled_grad_autograd(net, x, y, xv, yv, momentum_buffers=mom, **KW)


def flat(grads) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads])


def rel(a, b) -> float:
    return ((flat(a) - flat(b)).norm() / flat(b).norm()).item()




def test_second_order_fd_matches_exact_hypergradient_in_float64(setup, oracle):
    net, (x, y, xv, yv), mom = setup
    exact, _ = A.unrolled_grad(net, x, y, xv, yv, momentum_buffers=mom, hvp="exact", **KW)
    fd, _ = A.unrolled_grad(net, x, y, xv, yv, momentum_buffers=mom, hvp="fd", fd_radius=1e-6,
                            **KW)
    assert rel(exact, oracle) < 1e-10
    assert rel(fd, oracle) < 1e-5
    first = torch.autograd.grad(F.cross_entropy(net(xv), yv), net.arch_parameters())
    assert rel(first, oracle) > 1e-2  # the 2nd-order correction is not negligible here


def test_divide_bug_and_noop_virtual_step_are_caught(setup, oracle):
    net, (x, y, xv, yv), mom = setup
    w_prime = {n: t.requires_grad_() for n, t in
               A.virtual_step(net, x, y, momentum_buffers=mom, **KW).items()}
    loss = A._loss(net, {**w_prime, **A._buffers(net)}, xv, yv)
    grads = torch.autograd.grad(loss, [*net.arch_parameters(), *w_prime.values()])
    n_arch = len(net.arch_parameters())
    g_alpha, v = grads[:n_arch], dict(zip(w_prime, grads[n_arch:]))
    hv = A.mixed_hvp_fd(net, x, y, v, r=1e-6)
    eps = 1e-6 / torch.sqrt(sum((t ** 2).sum() for t in v.values()))
    bad_divide = [h * (2 * eps) / 2 * eps for h in hv]  # "/ 2.*eps" instead of "/ (2.*eps)"
    assert rel([g - 0.025 * h for g, h in zip(g_alpha, bad_divide)], oracle) > 1e-3
    # a virtual step that does nothing: w' = w
    noop = A.unrolled_grad(net, x, y, xv, yv, lr=0.0, momentum=0.9, weight_decay=3e-4,
                           momentum_buffers=mom, hvp="exact")[0]
    assert rel(noop, oracle) > 1e-3


def test_virtual_step_includes_momentum_and_weight_decay(setup):
    net, (x, y, _, _), mom = setup
    name, w = next(iter(net.named_weight_parameters()))
    loss = F.cross_entropy(net(x), y)
    g = torch.autograd.grad(loss, [w])[0]
    w_prime = A.virtual_step(net, x, y, momentum_buffers=mom, **KW)[name]
    expected = w.detach() - 0.025 * (0.9 * mom[name] + g + 3e-4 * w.detach())
    assert torch.allclose(w_prime, expected, atol=1e-14, rtol=0)


def test_extra_forwards_leave_bn_statistics_untouched(setup):
    net, (x, y, xv, yv), mom = setup
    before = {n: b.clone() for n, b in net.named_buffers()}
    A.unrolled_grad(net, x, y, xv, yv, momentum_buffers=mom, **KW)
    assert all(torch.equal(before[n], b) for n, b in net.named_buffers())


@pytest.mark.parametrize("order", [1, 2])
def test_arch_step_sets_finite_alpha_and_beta_grads_and_moves_them(setup, order):
    net, (x, y, xv, yv), _ = setup
    net = copy.deepcopy(net)
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(net.arch_parameters(), lr=3e-4, betas=(0.5, 0.999),
                             weight_decay=1e-3)
    before = [p.detach().clone() for p in net.arch_parameters()]
    arch = A.Architect(net, a_opt, w_opt, order=order)
    loss = arch.step(x, y, xv, yv)
    assert torch.isfinite(loss)
    for p, b in zip(net.arch_parameters(), before):  # edge logits included (the detach bug)
        assert p.grad is not None and torch.isfinite(p.grad).all()
        assert not torch.equal(p.detach(), b)
    assert all(p.grad is None for p in net.weight_parameters())  # no weight grads computed


def test_first_order_fast_and_darts_style_agree(setup):
    net, (x, y, xv, yv), _ = setup
    opt = torch.optim.SGD(net.weight_parameters(), lr=0.1)
    fast, _ = A.Architect(net, opt, opt, fast=True).hypergradient(x, y, xv, yv)
    slow, _ = A.Architect(net, opt, opt, fast=False).hypergradient(x, y, xv, yv)
    assert rel(fast, slow) < 1e-14
    assert all(p.grad is not None for p in net.weight_parameters())  # backward() filled them
    net.zero_grad(set_to_none=True)


def test_bad_order_and_hvp_mode():
    net = SearchNetwork("darts", C=4, layers=3)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(UnknownNameError, match="valid choices: 1, 2"):
        A.Architect(net, opt, opt, order=3)
    with pytest.raises(UnknownNameError, match="valid choices: fd, exact"):
        A.Architect(net, opt, opt, hvp="lanczos")
