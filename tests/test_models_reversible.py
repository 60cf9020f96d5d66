"""The reversible HBNet stage (eq. (10), momentum outside the ReLU) against ordinary backprop of the
same computation, and ``optnb bench --suite memory`` on tiny sizes (no timing assertions)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from optnb import cli
from optnb.models.cifar_resnet import BasicBlock
from optnb.models.reversible import reversible_hb_stage
from optnb.train import memory

#: float64 gradients agree to this relative error (per tensor, in norm) for the cases below, whose
#: (1 / beta)^depth amplification stays small; round-off alone is ~1e-15
RTOL = 1e-10


def make_blocks(m: int, channels: int = 8, dtype: torch.dtype = torch.float64, seed: int = 0) -> nn.ModuleList:
    torch.manual_seed(seed)
    blocks = nn.ModuleList(BasicBlock(channels, channels) for _ in range(m)).to(dtype)
    for block in blocks:  # non-trivial affine BN parameters, so that their gradients are tested too
        for bn in (block.bn1, block.bn2):
            nn.init.uniform_(bn.weight, 0.5, 1.5)
            nn.init.uniform_(bn.bias, -0.2, 0.2)
    return blocks


def storing_stage(blocks, prev: Tensor, z: Tensor, betas) -> tuple[Tensor, Tensor]:
    """The reference: (10) with the momentum outside the ReLU, through ordinary autograd."""
    for block, beta in zip(blocks, betas):
        g = block.residual(z)
        g += z  # in place, as in BasicBlock: under autocast the sum keeps the branch's dtype
        g = F.relu(g)
        step = (z - prev) * (beta.to(z.dtype) if isinstance(beta, Tensor) else beta)
        prev, z = z, step + g
    return prev, z


def run(stage, blocks, x: Tensor, betas, weights: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Outputs and the gradients of a loss on both outputs wrt the input, parameters and betas."""
    x = x.clone().requires_grad_()
    prev, z = stage(blocks, x, x, betas)
    loss = (prev * weights[0]).sum() + (z * weights[1]).sum()
    wrt = [x, *blocks.parameters(), *(b for b in betas if isinstance(b, Tensor))]
    return prev.detach(), z.detach(), list(torch.autograd.grad(loss, wrt))


def rel(got: Tensor, want: Tensor) -> float:
    """Relative error in norm; absolute where the exact gradient is 0 (the first block's beta at a
    stage start, where ``x_0 - x_{-1} = 0`` exactly but the reconstructed ``x_{-1}`` is off by
    round-off)."""
    norm = want.norm().item()
    return (got - want).norm().item() / (norm if norm > 0 else 1.0)


def pair(m: int, dtype: torch.dtype = torch.float64, seed: int = 0):
    """Two identical stages, an input and loss weights."""
    a, b = make_blocks(m, dtype=dtype, seed=seed), make_blocks(m, dtype=dtype, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(4, 8, 8, 8, generator=gen, dtype=torch.float64).to(dtype)
    weights = (torch.randn(x.shape, generator=gen, dtype=torch.float64).to(dtype),
               torch.randn(x.shape, generator=gen, dtype=torch.float64).to(dtype))
    return a, b, x, weights


@pytest.mark.parametrize("beta, m", [(0.9, 6), (0.5, 5), (0.3, 4), (0.1, 3), (-0.5, 3), (0.5, 1)])
def test_forward_bit_exact_and_gradients_match_backprop(beta, m):
    rev_blocks, ref_blocks, x, w = pair(m)
    p1, z1, g1 = run(reversible_hb_stage, rev_blocks, x, [beta] * m, w)
    p2, z2, g2 = run(storing_stage, ref_blocks, x, [beta] * m, w)
    assert torch.equal(p1, p2) and torch.equal(z1, z2)
    errors = [rel(a, b) for a, b in zip(g1, g2)]
    assert max(errors) < RTOL, errors


def test_learnable_and_mixed_betas_get_their_gradients():
    rev_blocks, ref_blocks, x, w = pair(4)
    values = (0.7, 0.4, 0.6, 0.8)
    rev_betas = [nn.Parameter(torch.tensor(v, dtype=torch.float64)) for v in values[:3]] + [values[3]]
    ref_betas = [nn.Parameter(torch.tensor(v, dtype=torch.float64)) for v in values[:3]] + [values[3]]
    p1, z1, g1 = run(reversible_hb_stage, rev_blocks, x, rev_betas, w)
    p2, z2, g2 = run(storing_stage, ref_blocks, x, ref_betas, w)
    assert torch.equal(z1, z2) and torch.equal(p1, p2)
    assert len(g1) == 1 + 4 * 6 + 3
    assert max(rel(a, b) for a, b in zip(g1, g2)) < RTOL


def test_a_blocks_own_beta_parameter_is_not_counted_twice():
    """CifarHBNet keeps a learnable beta as ``block.beta``: a parameter of the block and a beta."""
    rev_blocks, ref_blocks, x, w = pair(3)
    for blocks in (rev_blocks, ref_blocks):
        for block in blocks:
            block.beta = nn.Parameter(torch.tensor(0.6, dtype=torch.float64))
    _, _, g1 = run(reversible_hb_stage, rev_blocks, x, [b.beta for b in rev_blocks], w)
    _, _, g2 = run(storing_stage, ref_blocks, x, [b.beta for b in ref_blocks], w)
    assert max(rel(a, b) for a, b in zip(g1, g2)) < RTOL


def test_running_statistics_are_updated_once():
    rev_blocks, ref_blocks, x, w = pair(4)
    run(reversible_hb_stage, rev_blocks, x, [0.5] * 4, w)
    run(storing_stage, ref_blocks, x, [0.5] * 4, w)
    for a, b in zip(rev_blocks.modules(), ref_blocks.modules()):
        if isinstance(a, nn.BatchNorm2d):
            assert a.num_batches_tracked.item() == 1
            assert torch.equal(a.running_mean, b.running_mean) and torch.equal(a.running_var, b.running_var)
            assert not torch.equal(a.running_mean, torch.zeros_like(a.running_mean))


def test_eval_mode_uses_running_statistics():
    rev_blocks, ref_blocks, x, w = pair(4)
    for blocks in (rev_blocks, ref_blocks):  # distinct, non-default running statistics
        with torch.no_grad():
            for i, bn in enumerate(m for m in blocks.modules() if isinstance(m, nn.BatchNorm2d)):
                bn.running_mean.fill_(0.01 * i)
                bn.running_var.fill_(1.0 + 0.1 * i)
        blocks.eval()
    before = [t.clone() for t in rev_blocks.buffers()]
    p1, z1, g1 = run(reversible_hb_stage, rev_blocks, x, [0.5] * 4, w)
    p2, z2, g2 = run(storing_stage, ref_blocks, x, [0.5] * 4, w)
    assert torch.equal(z1, z2) and torch.equal(p1, p2)
    assert max(rel(a, b) for a, b in zip(g1, g2)) < RTOL
    assert all(torch.equal(a, b) for a, b in zip(before, rev_blocks.buffers()))


def test_autocast_is_replayed_in_the_recomputation():
    rev_blocks, ref_blocks, x, w = pair(1, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        p1, z1, g1 = run(reversible_hb_stage, rev_blocks, x, [0.5], w)
        p2, z2, g2 = run(storing_stage, ref_blocks, x, [0.5], w)
    assert torch.equal(z1, z2) and torch.equal(p1, p2)
    # x_0 is saved exactly, so the recomputed bfloat16 block is the forward's: identical gradients
    assert all(torch.equal(a, b) for a, b in zip(g1[1:], g2[1:]))


def test_without_grad_it_just_runs_forward():
    rev_blocks, ref_blocks, x, _ = pair(3)
    with torch.no_grad():
        p1, z1 = reversible_hb_stage(rev_blocks, x, x, [0.5] * 3)
        p2, z2 = storing_stage(ref_blocks, x, x, [0.5] * 3)
    assert z1.grad_fn is None and torch.equal(z1, z2) and torch.equal(p1, p2)
    assert reversible_hb_stage([], x, x, []) == (x, x)


def saved_bytes(fn) -> int:
    """Bytes of the distinct activations saved for backward while ``fn`` runs."""
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        if not isinstance(t, nn.Parameter):
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def test_only_the_final_pair_is_saved():
    x = torch.randn(4, 8, 8, 8, dtype=torch.float64, requires_grad=True)
    stored = []
    for m in (2, 8):
        blocks = make_blocks(m)
        assert saved_bytes(lambda b=blocks, m=m: reversible_hb_stage(b, x, x, [0.5] * m)) == 2 * x.nbytes
        stored.append(saved_bytes(lambda b=blocks, m=m: storing_stage(b, x, x, [0.5] * m)))
    assert stored[1] > 3 * stored[0]


@pytest.mark.parametrize("zero", [0.0, "tensor"])
def test_beta_zero_falls_back_to_ordinary_autograd(zero):
    """beta = 0 is not invertible: the stage runs (and stores) the ordinary way, same results."""
    rev_blocks, ref_blocks, x, w = pair(3)
    z0 = torch.tensor(0.0, dtype=torch.float64, requires_grad=True) if zero == "tensor" else 0.0
    z1_ = torch.tensor(0.0, dtype=torch.float64, requires_grad=True) if zero == "tensor" else 0.0
    p1, z1, g1 = run(reversible_hb_stage, rev_blocks, x, [0.5, z0, 0.5], w)
    p2, z2, g2 = run(storing_stage, ref_blocks, x, [0.5, z1_, 0.5], w)
    assert torch.equal(z1, z2) and torch.equal(p1, p2)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))  # the very same computation
    xg = x.clone().requires_grad_()
    assert saved_bytes(lambda: reversible_hb_stage(rev_blocks, xg, xg, [0.5, z0, 0.5])) > 4 * x.nbytes


def test_reconstruction_error_grows_as_beta_shrinks():
    """The documented caveat, in float32: the error of the gradients grows as 1/beta does."""
    errors = {}
    for beta in (0.9, 0.5, 0.1):
        rev_blocks, ref_blocks, x, w = pair(6, dtype=torch.float32)
        _, _, g1 = run(reversible_hb_stage, rev_blocks, x, [beta] * 6, w)
        _, _, g2 = run(storing_stage, ref_blocks, x, [beta] * 6, w)
        errors[beta] = max(rel(a, b) for a, b in zip(g1, g2))
    assert errors[0.9] < 1e-4, errors  # usable
    assert errors[0.9] < errors[0.1] and errors[0.5] < errors[0.1], errors
    assert errors[0.1] > 100 * errors[0.9], errors


@pytest.mark.parametrize("training", [True, False])
def test_gradcheck(training):
    torch.manual_seed(0)
    blocks = nn.ModuleList(BasicBlock(2, 2) for _ in range(2)).double().train(training)
    prev = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    z = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    beta = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)

    def f(prev: Tensor, z: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
        return reversible_hb_stage(blocks, prev, z, [beta, 0.4])

    assert torch.autograd.gradcheck(f, (prev, z, beta), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_bad_stages_raise():
    x = torch.randn(2, 4, 4, 4)
    with pytest.raises(ValueError, match="one beta per block"):
        reversible_hb_stage([BasicBlock(4, 4)], x, x, [0.5, 0.5])
    with pytest.raises(ValueError, match="has a shortcut"):
        reversible_hb_stage([BasicBlock(4, 8, stride=2)], x, x, [0.5])


TINY = memory.MemorySizes(n=(4, 8, 12), batch=2, image=8, width=4, beta=0.5, warmup=0, steps=1,
                          error_n=(3,), error_betas=(0.5, 0.9), error_batch=2)


def test_bench_memory_suite(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(memory, "sizes_for", lambda quick: TINY)
    argv = ["bench", "--suite", "memory", "--quick", "--device", "cpu", "--seed", "3", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    report = json.loads((tmp_path / "memory-latest.json").read_text())
    assert report["seed"] == 3 and report["sizes"]["n"] == [4, 8, 12]
    rows = report["memory"]
    assert [r["depth"] for r in rows] == [26, 50, 74]
    rev = [r["reversible_saved_bytes"] for r in rows]
    ordinary = [r["ordinary_saved_bytes"] for r in rows]
    assert max(rev) <= 1.02 * min(rev), rev  # flat in depth (exactly equal, in fact)
    depth_ratio = rows[-1]["depth"] / rows[0]["depth"]
    assert 0.8 * depth_ratio <= ordinary[-1] / ordinary[0] <= 1.25 * depth_ratio, ordinary
    assert ordinary[2] - ordinary[1] == ordinary[1] - ordinary[0]  # exactly affine in n
    assert all(r["ordinary_peak_bytes"] > 0 and r["reversible_peak_bytes"] > 0 for r in rows)
    assert rows[-1]["reversible_peak_bytes"] < rows[-1]["ordinary_peak_bytes"]
    errors = report["gradient_error"]
    assert {(r["dtype"], r["beta"], r["n"]) for r in errors} == {
        (d, b, 3) for d in ("float64", "float32") for b in (0.5, 0.9)}
    assert all(r["rel_err"] < 1e-12 for r in errors if r["dtype"] == "float64")
    assert all("floor" in r for r in errors if r["dtype"] == "float32")
    out = capsys.readouterr().out
    assert "| 12 | 74 |" in out and "| float32 | 0.9 |" in out and "memory-latest.json" in out


def test_bench_memory_rejects_epoch(tmp_path, capsys):
    assert cli.main(["bench", "--suite", "memory", "--epoch", "--out", str(tmp_path)]) == 2
    assert "--epoch" in capsys.readouterr().err
