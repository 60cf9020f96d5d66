r"""The architecture step of the bilevel search (paper §9.3; DARTS §2.3).

.. math::  \min_\alpha L_{val}(w^*(\alpha), \alpha), \quad
           w^*(\alpha) = \arg\min_w L_{train}(w, \alpha)

with alpha standing for all architecture parameters (alphas, and the AGD edge logits beta).

**1st order**: ``g = grad_alpha L_val(w, alpha)`` via ``torch.autograd.grad`` (no weight grads).

**2nd order** (unrolled):

1. virtual step, with the weight optimiser's momentum and weight decay, xi = the *current* weight
   lr, no clipping: ``w' = w - xi (mu m + grad_w L_train(w, alpha) + lambda w)``;
2. ``g_alpha = grad_alpha L_val(w', alpha)`` and ``v = grad_w' L_val(w', alpha)``;
3. the mixed second derivative ``H v = grad^2_{alpha w} L_train(w, alpha) v``, either by DARTS's
   central difference **around the original w** (darts#21),
   ``eps = 0.01 / ||v||``, ``H v ~ [grad_alpha L_train(w + eps v) - grad_alpha L_train(w - eps v)]
   / (2 eps)`` (``hvp="fd"``, always in fp32: eps v is below bf16 resolution), or exactly by double
   backward (``hvp="exact"``);
4. ``grad_alpha <- g_alpha - xi H v``; then the Adam step.

Under ``torchrun`` (``optnb.nas.search``: each rank holds a shard of the global batch) every
gradient these formulas take is the mean over ranks (:func:`rank_mean`): the weight gradient of the
virtual step, ``v``, and the final hypergradient, so both orders give every rank the alphas one
process would get on the global batch.

No model copies: every extra forward is ``torch.func.functional_call`` with replacement weights
and *cloned* buffers, so the model's BN running statistics are untouched by them.
:func:`unrolled_grad_autograd` differentiates the one-step-unrolled objective end to end and is
the test oracle for the formula above.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from optnb.nas.errors import unknown
from optnb.train import compiling, distributed

ORDERS = (1, 2)
HVP_MODES = ("fd", "exact")


def _loss(model: nn.Module, tensors: dict[str, torch.Tensor] | None, x: torch.Tensor,
          y: torch.Tensor) -> torch.Tensor:
    logits = model(x) if tensors is None else functional_call(model, tensors, (x,))
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return F.cross_entropy(logits, y)


@contextlib.contextmanager
def _frozen(params: Iterable[nn.Parameter]) -> Iterator[None]:
    """``requires_grad`` off for ``params`` inside the block."""
    frozen = [p for p in params if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)


def rank_mean(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The mean of each tensor over the ranks of the process group, in one all-reduce (the
    tensors themselves when not distributed)."""
    world = distributed.current().world_size
    if world == 1 or not tensors:
        return list(tensors)
    dtype = tensors[0].dtype
    flat = distributed.all_reduce_sum(torch.cat([t.detach().reshape(-1).to(dtype) for t in tensors])) / world
    out, start = [], 0
    for t in tensors:
        out.append(flat[start:start + t.numel()].view_as(t).to(t.dtype))
        start += t.numel()
    return out


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return dict(model.named_weight_parameters())


def _buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: b.clone() for n, b in model.named_buffers()}


def virtual_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float, momentum: float,
                 weight_decay: float, momentum_buffers: dict[str, torch.Tensor] | None = None,
                 create_graph: bool = False) -> dict[str, torch.Tensor]:
    """``w' = w - lr (mu m + grad_w L_train + lambda w)`` as a name -> tensor dict."""
    weights = _weights(model)
    loss = _loss(model, {**weights, **_buffers(model)}, x, y)
    grads = torch.autograd.grad(loss, list(weights.values()), create_graph=create_graph)
    if not create_graph:  # the oracle (create_graph) is single-process only
        grads = rank_mean(list(grads))
    out = {}
    for (name, w), g in zip(weights.items(), grads):
        w_ = w if create_graph else w.detach()
        step = g + weight_decay * w_
        m = (momentum_buffers or {}).get(name)
        if m is not None:
            step = step + momentum * m
        out[name] = w_ - lr * step
    return out


def mixed_hvp_fd(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 v: dict[str, torch.Tensor], r: float = 0.01) -> list[torch.Tensor]:
    """DARTS's central difference of ``grad_alpha L_train`` around the current w along v.

    ``eps = r / ||v||`` (DARTS: r = 0.01). ReLU and max-pool kinks make ``grad_alpha L_train``
    only piecewise smooth: once ``w +- eps v`` straddles kinks, the quotient carries O(1) errors
    whatever eps is, which a tiny float64 net shows at r = 1e-4 already. The float64 tests
    therefore use r = 1e-6, where the quotient matches the exact product to ~1e-8.
    """
    arch = model.arch_parameters()
    weights = {n: w.detach() for n, w in _weights(model).items()}
    norm = torch.sqrt(sum((t.float() ** 2).sum() for t in v.values()))
    eps = r / norm.clamp_min(1e-12)
    grads = []
    for sign in (1.0, -1.0):
        shifted = {n: w + sign * eps * v[n] for n, w in weights.items()}
        loss = _loss(model, {**shifted, **_buffers(model)}, x, y)
        grads.append(torch.autograd.grad(loss, arch))
    return [(gp - gm) / (2.0 * eps) for gp, gm in zip(*grads)]


def mixed_hvp_exact(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    v: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """``grad^2_{alpha w} L_train(w, alpha) v`` by double backward."""
    arch = model.arch_parameters()
    weights = _weights(model)
    loss = _loss(model, {**weights, **_buffers(model)}, x, y)
    grad_w = torch.autograd.grad(loss, list(weights.values()), create_graph=True)
    return list(torch.autograd.grad(grad_w, arch, grad_outputs=[v[n] for n in weights],
                                    allow_unused=False))


def unrolled_grad(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
                  x_val: torch.Tensor, y_val: torch.Tensor, lr: float, momentum: float,
                  weight_decay: float, momentum_buffers: dict[str, torch.Tensor] | None = None,
                  hvp: str = "fd", fd_radius: float = 0.01) -> tuple[list[torch.Tensor], torch.Tensor]:
    """DARTS's 2nd-order hypergradient (steps 1-4 of the module docstring) and ``L_val(w')``."""
    if hvp not in HVP_MODES:
        raise unknown("hvp mode", hvp, HVP_MODES)
    arch = model.arch_parameters()
    w_prime = {n: t.requires_grad_() for n, t in
               virtual_step(model, x_train, y_train, lr, momentum, weight_decay,
                            momentum_buffers).items()}
    loss = _loss(model, {**w_prime, **_buffers(model)}, x_val, y_val)
    grads = torch.autograd.grad(loss, [*arch, *w_prime.values()])
    g_alpha, v = grads[:len(arch)], dict(zip(w_prime, rank_mean(list(grads[len(arch):]))))
    if hvp == "fd":
        hv = mixed_hvp_fd(model, x_train, y_train, v, fd_radius)
    else:
        hv = mixed_hvp_exact(model, x_train, y_train, v)
    return [g - lr * h for g, h in zip(g_alpha, hv)], loss.detach()


def unrolled_grad_autograd(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
                           x_val: torch.Tensor, y_val: torch.Tensor, lr: float, momentum: float,
                           weight_decay: float,
                           momentum_buffers: dict[str, torch.Tensor] | None = None
                           ) -> list[torch.Tensor]:
    """Oracle: ``d/d alpha L_val(w'(alpha), alpha)`` differentiated through the virtual step."""
    w_prime = virtual_step(model, x_train, y_train, lr, momentum, weight_decay, momentum_buffers,
                           create_graph=True)
    loss = _loss(model, {**w_prime, **_buffers(model)}, x_val, y_val)
    return list(torch.autograd.grad(loss, model.arch_parameters()))


def momentum_state(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, torch.Tensor]:
    """The SGD momentum buffers by weight name (empty before the first step)."""
    out = {}
    for name, p in model.named_weight_parameters():
        buf = optimizer.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            out[name] = buf
    return out


class Architect:
    """One architecture step per iteration: hypergradient, then ``arch_optimizer.step()``.

    ``fast=False`` reproduces the DARTS code's first-order step (``loss.backward()``, which also
    fills the weights' ``.grad``); ``fast=True`` (default) asks autograd for the architecture
    gradients only. ``autocast`` is a context factory (bf16) used for the 1st-order forward only;
    the 2nd-order path always runs in the model's own precision (fp32).
    """

    def __init__(self, model: nn.Module, arch_optimizer: torch.optim.Optimizer,
                 weight_optimizer: torch.optim.Optimizer, order: int = 1, hvp: str = "fd",
                 fast: bool = True, fd_radius: float = 0.01,
                 autocast: Callable[[], contextlib.AbstractContextManager] | None = None) -> None:
        if order not in ORDERS:
            raise unknown("search order", order, ORDERS)
        if hvp not in HVP_MODES:
            raise unknown("hvp mode", hvp, HVP_MODES)
        self.model, self.arch_optimizer, self.weight_optimizer = model, arch_optimizer, weight_optimizer
        self.order, self.hvp, self.fast, self.fd_radius = order, hvp, fast, fd_radius
        self.autocast = autocast or contextlib.nullcontext
        self._compiled_val_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    def val_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``L_val(w, alpha)`` of a batch, the 1st-order objective."""
        with self.autocast():
            return _loss(self.model, None, x, y)

    def compile(self, spec: bool | str) -> None:
        """Compile the 1st-order architecture step's forward and loss. The 2nd-order step stays
        eager: its ``functional_call`` passes with perturbed weight copies are not one graph."""
        if self.order == 1 and compiling.compile_kwargs(spec) is not None:
            self._compiled_val_loss = compiling.compile_function(self.val_loss, spec)

    def hypergradient(self, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
                      y_val: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(grads for model.arch_parameters(), L_val)``."""
        arch = self.model.arch_parameters()
        if self.order == 1 and self._compiled_val_loss is not None:
            # a compiled backward computes the gradient of every input that requires one: freeze
            # the weights, so it computes the architecture gradients only (as ``fast`` does eagerly)
            with _frozen(self.model.weight_parameters()):
                loss = self._compiled_val_loss(x_val, y_val)
                # a copy: under CUDA graphs the next replay (the weight step) overwrites graph outputs
                return list(torch.autograd.grad(loss, arch)), loss.detach().clone()
        if self.order == 1:
            loss = self.val_loss(x_val, y_val)
            if self.fast:
                return list(torch.autograd.grad(loss, arch)), loss.detach()
            self.model.zero_grad(set_to_none=True)
            loss.backward()
            return [p.grad for p in arch], loss.detach()
        group = self.weight_optimizer.param_groups[0]
        return unrolled_grad(self.model, x_train, y_train, x_val, y_val, lr=group["lr"],
                             momentum=group.get("momentum", 0.0),
                             weight_decay=group.get("weight_decay", 0.0),
                             momentum_buffers=momentum_state(self.weight_optimizer, self.model),
                             hvp=self.hvp, fd_radius=self.fd_radius)

    def step(self, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor,
             y_val: torch.Tensor) -> torch.Tensor:
        """Set ``.grad`` of every architecture parameter (the mean over ranks under ``torchrun``)
        and take one optimiser step; returns this rank's ``L_val``."""
        grads, loss = self.hypergradient(x_train, y_train, x_val, y_val)
        grads = rank_mean(list(grads))
        for p, g in zip(self.model.arch_parameters(), grads):
            p.grad = g
        self.arch_optimizer.step()
        return loss
