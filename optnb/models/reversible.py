"""A constant-memory, reversible stage of HBNet with the momentum outside the closing ReLU.

Within a stage, the literal heavy-ball network (10) computes, block ``b`` after block,

    x_{k+1} = G_b(x_k) + beta_b (x_k - x_{k-1}),        G_b(x) = relu(x + F_b(x)),

with ``F_b`` the basic block's branch Conv-BN-ReLU-Conv-BN (stride 1, identity shortcut). For
``beta_b != 0`` the step is invertible given its output pair,

    x_{k-1} = x_k - (x_{k+1} - G_b(x_k)) / beta_b,

so backpropagation can rebuild every block's input from the stage's last two outputs instead of
storing it (the idea of momentum ResNets, Sander et al. 2021). :func:`reversible_hb_stage` keeps
only the final pair ``(x_{m-1}, x_m)`` for backward: the activation memory of a stage is O(1) in
its number of blocks ``m`` (two feature maps, plus one block's recomputed graph while backward
runs) instead of O(m), for about one extra forward pass of compute.

Round-off caveat: the reconstruction divides by ``beta``, so round-off in ``x_{k+1}`` and in the
recomputed ``G_b(x_k)`` is amplified by ``1 / |beta|`` per block (the backward recursion has the
root ``1 / beta`` of the forward one's ``beta``), and by the gain of ``G_b`` besides. Walking down
``m`` blocks, the reconstructed inputs, hence the gradients, drift by up to about
``eps (L / |beta|)^m`` (``L`` the Lipschitz constant of ``G_b``, >= 1). This is not a loose bound:
on CIFAR HBNet at initialisation (BatchNorm in train mode, batch 8) the measured growth is about
``(1 to 1.3) / beta`` per block, so of n = 9, 18, 36, 72, 144 blocks per stage, float64
gradients stay within 1e-3 of ordinary backprop only up to n = 72 at ``beta = 0.9``, 18 at 0.5 and
9 at 0.1, and float32 is usable only for shallow stages with large ``beta`` (measured by
``optnb bench --suite memory``, :func:`optnb.train.memory.gradient_error`). Prefer float64 or a
large ``beta`` for deep stages.

``beta == 0`` (ResNet) is not invertible: a stage with any ``beta_b == 0`` falls back to ordinary,
storing autograd (same values, O(m) memory) rather than raising, so a learnable ``beta`` that hits
zero does not break training.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = ["reversible_hb_stage"]


class _ResidualBlock(Protocol):
    """What a stage needs of a block (:class:`optnb.models.cifar_resnet.BasicBlock`): the branch
    ``F_b`` as ``residual`` and its module state (parameters, BatchNorm buffers, train/eval)."""

    shortcut: nn.Module | None

    def residual(self, x: Tensor) -> Tensor: ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]: ...

    def modules(self) -> Iterator[nn.Module]: ...


Beta = float | Tensor


def _g(block: _ResidualBlock, x: Tensor) -> Tensor:
    """``G_b(x) = relu(x + F_b(x))`` (the ResNet block with an identity shortcut)."""
    out = block.residual(x)
    out += x
    return out.relu_()


def _momentum(g: Tensor, x: Tensor, prev: Tensor, beta: Beta) -> Tensor:
    """``x_{k+1} = G_b(x_k) + beta (x_k - x_{k-1})``: the momentum outside the ReLU (10).

    The operations (and their order) are those of ``cifar_resnet.add_momentum_outside``, so a
    reversible model's forward equals the ordinary one bit for bit.
    """
    step = torch.sub(x, prev)
    step = step.mul(beta.to(x.dtype)) if isinstance(beta, Tensor) else step.mul_(beta)
    return step.add_(g)  # not g.add_: relu_ keeps g for its backward


def _storing_stage(blocks: Sequence[_ResidualBlock], prev: Tensor, z: Tensor,
                   betas: Sequence[Beta]) -> tuple[Tensor, Tensor]:
    """The same computation through ordinary autograd (stores every block's activations)."""
    for block, beta in zip(blocks, betas):
        prev, z = z, _momentum(_g(block, z), z, prev, beta)
    return prev, z


def _is_zero(betas: Sequence[Beta]) -> bool:
    """Whether some ``beta`` is exactly 0 (one device sync for all tensor betas)."""
    if any(not isinstance(b, Tensor) and b == 0 for b in betas):
        return True
    tensors = [b.detach().reshape(-1) for b in betas if isinstance(b, Tensor)]
    if not tensors:
        return False
    return bool(torch.cat([t.to(tensors[0].device) for t in tensors]).eq(0).any())


@contextmanager
def _replay(block: nn.Module, modes: list[bool], autocast: tuple[str, bool, torch.dtype]) -> Iterator[None]:
    """Recompute ``block`` as forward ran it: with the autocast state and the train/eval flags it
    had then (so train-mode BatchNorm uses the batch statistics of its input again), and its buffers
    left untouched (so running statistics are updated once per forward, not again)."""
    modules = list(block.modules())
    now = [m.training for m in modules]
    saved = [(buf, buf.clone()) for buf in block.buffers()]
    for m, mode in zip(modules, modes):
        m.training = mode
    device, enabled, dtype = autocast
    try:
        with torch.autocast(device, dtype=dtype, enabled=enabled):
            yield
    finally:
        for m, mode in zip(modules, now):
            m.training = mode
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


class _ReversibleHBStage(torch.autograd.Function):
    """Forward without a graph; backward reconstructs each block's input and backpropagates
    through one recomputed block at a time. ``tensors`` are the distinct parameters and tensor
    betas of the stage (passed as inputs so that autograd routes their gradients)."""

    @staticmethod
    def forward(ctx: Any, plan: _Plan, prev: Tensor, z: Tensor, *tensors: Tensor) -> tuple[Tensor, Tensor]:
        ctx.plan = plan
        ctx.modes = [[m.training for m in block.modules()] for block in plan.blocks]
        device = z.device.type
        ctx.autocast = (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        for block, beta in zip(plan.blocks, plan.betas):
            prev, z = z, _momentum(_g(block, z), z, prev, beta)
        ctx.save_for_backward(prev, z)
        return prev, z

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_prev: Tensor, grad_z: Tensor) -> tuple[Tensor | None, ...]:
        plan: _Plan = ctx.plan
        # (x_k, x_{k+1}), walking k down from m - 1; detached, else the recomputation would
        # reach back into this very node
        x, x_next = (t.detach() for t in ctx.saved_tensors)
        grad_x, grad_next = grad_prev, grad_z
        grads: list[Tensor | None] = [None] * len(plan.tensors)
        for j in reversed(range(len(plan.blocks))):
            block, beta, modes = plan.blocks[j], plan.betas[j], ctx.modes[j]
            wrt = plan.wrt[j]
            with torch.enable_grad(), _replay(block, modes, ctx.autocast):
                xk = x.detach().requires_grad_()
                g = _g(block, xk)
                b = beta.detach() if isinstance(beta, Tensor) else beta
                x_prev = (x - (x_next - g.detach()) / b).requires_grad_()
                out = _momentum(g, xk, x_prev, beta)
                got = torch.autograd.grad(out, [xk, x_prev, *(plan.tensors[i] for i in wrt)], grad_next,
                                          allow_unused=True)
            for i, grad in zip(wrt, got[2:]):
                if grad is not None:
                    grads[i] = grad if grads[i] is None else grads[i] + grad
            x, x_next = x_prev.detach(), x
            grad_x, grad_next = got[1], grad_x + got[0]
            del got, out, g, xk  # free this block's graph before the next one is built
        return (None, grad_x, grad_next, *grads)


class _Plan:
    """The stage as ``forward`` needs it: blocks, betas, the distinct tensors that receive
    gradients, and for each block the indices (into ``tensors``) of the ones it uses."""

    def __init__(self, blocks: Sequence[_ResidualBlock], betas: Sequence[Beta]) -> None:
        self.blocks, self.betas = list(blocks), list(betas)
        self.tensors: list[Tensor] = []
        index: dict[int, int] = {}
        beta_ids = {id(b) for b in self.betas if isinstance(b, Tensor)}

        def slot(t: Tensor) -> int:
            if id(t) not in index:
                index[id(t)] = len(self.tensors)
                self.tensors.append(t)
            return index[id(t)]

        self.wrt: list[list[int]] = []
        for block, beta in zip(self.blocks, self.betas):
            # a block's own learnable beta (CifarHBNet's ``block.beta``) is routed as a beta only
            used = [p for p in block.parameters() if p.requires_grad and id(p) not in beta_ids]
            if isinstance(beta, Tensor) and beta.requires_grad:
                used.append(beta)
            self.wrt.append(list(dict.fromkeys(slot(t) for t in used)))


def reversible_hb_stage(blocks: Sequence[_ResidualBlock], prev: Tensor, z: Tensor,
                        betas: Sequence[float | Tensor]) -> tuple[Tensor, Tensor]:
    """Run the heavy-ball blocks (10) ``x_{k+1} = relu(x_k + F_b(x_k)) + beta_b (x_k - x_{k-1})``
    from ``(x_{-1}, x_0) = (prev, z)`` and return the last pair ``(x_{m-1}, x_m)``.

    ``blocks`` are stride-1 :class:`~optnb.models.cifar_resnet.BasicBlock` s without shortcut;
    ``betas`` one per block, floats or tensors (a tensor that requires grad gets its gradient: the
    learnable-beta case). ``prev`` may be ``z`` (``x_{-1} := x_0``, a stage start).

    Memory: only the final pair is saved for backward (O(1) activations in the number of blocks),
    and backward reconstructs each ``x_{k-1}`` from ``(x_k, x_{k+1})``, recomputes ``G_b(x_k)``
    and backpropagates through that one block. Gradients equal those of ordinary backprop up to
    round-off amplified by ``1 / |beta|`` per block (see the module docstring). Train-mode
    BatchNorm recomputes with the batch statistics of the reconstructed input and updates its
    running statistics once, in forward; eval mode uses the running statistics. Autocast is
    replayed too, but its low precision (bfloat16: eps = 2^-8) makes the reconstruction drift
    within a few blocks: run reversible stages in float32 or float64. The branch must be
    deterministic (no dropout: the recomputation does not replay random numbers).

    Falls back to ordinary (storing) autograd when some ``beta`` is exactly 0 (not invertible),
    and just runs forward when no graph is needed (grad disabled, or nothing requires grad).
    """
    blocks, betas = list(blocks), list(betas)
    if len(blocks) != len(betas):
        raise ValueError(f"one beta per block: got {len(blocks)} blocks and {len(betas)} betas")
    for i, block in enumerate(blocks):
        if getattr(block, "shortcut", None) is not None:
            raise ValueError(f"block {i} has a shortcut (stride or width change): it cannot be inverted "
                             "from its output; run it outside the reversible stage")
    if not blocks:
        return prev, z
    plan = _Plan(blocks, betas)
    needs_graph = torch.is_grad_enabled() and (prev.requires_grad or z.requires_grad or bool(plan.tensors))
    if not needs_graph or _is_zero(betas):
        return _storing_stage(blocks, prev, z, betas)
    return _ReversibleHBStage.apply(plan, prev, z, *plan.tensors)
