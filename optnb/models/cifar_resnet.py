"""CIFAR ResNet (He et al. [9], option-A shortcuts) and HBNet, the heavy-ball network of eq. (10).

ResNet is gradient descent (1) unrolled: ``z_{k+1} = z_k + F_k(z_k)``, with ``F_k`` the basic
block's branch Conv-BN-ReLU-Conv-BN (the "composite function including two convolution layers" of
Appendix C.1, which replaces the exact negative gradient ``Phi(W z) - z``). HBNet unrolls the
heavy ball (2) instead; mapped back to features that is eq. (10), and with the same relaxation

    z_{k+1} = z_k + F_k(z_k) + beta (z_k - z_{k-1}),        z_{-1} := z_0,

followed, as in ResNet, by the ReLU that closes the block (option ``momentum="inside"``, the
default; the literal (10), momentum after the ReLU, is ``"outside"``, below). ``beta = 0`` is
ResNet exactly. The two models share one module tree (same ``state_dict`` keys), so weights load
across.

Stage boundaries (the stride-2 blocks, where ``z_{k-1}`` lives in the previous resolution) are an
open choice of Appendix C, option ``hb_boundary``:

* ``"restart"`` (default): the downsampling block is a plain ResNet block, and its output starts the
  next stage as ``z_0`` with ``z_{-1} := z_0`` (like the stem output starts the network). So the
  first block after the stem, each downsampling block and the block after it carry no momentum.
* ``"shortcut"``: ``z_{k-1}`` goes through the same parameter-free option-A shortcut ``S`` as
  ``z_k``: the downsampling block adds ``S(z_k) + beta (S(z_k) - S(z_{k-1}))`` and the next block
  uses ``S(z_k)`` as its ``z_{k-1}``. Every block but the first carries momentum.

Both keep parameters and multiply-adds identical to ResNet (the momentum is element-wise).

The other open choices are options too (all keep ResNet's parameters, except ``learnable_beta``,
which adds one scalar per block that carries momentum):

* ``momentum``: where the momentum enters. ``"inside"`` (default) is the form above,
  ``relu(z_k + F_k(z_k) + beta (z_k - z_{k-1}))``. ``"outside"`` is the literal eq. (10) with
  ``Phi(W z_k)`` relaxed to ``relu(z_k + F_k(z_k))`` as in ResNet:

      z_{k+1} = relu(z_k + F_k(z_k)) + beta (z_k - z_{k-1}),

  so the block output is no longer non-negative. At a stage boundary under ``"shortcut"``,
  ``z_k`` and ``z_{k-1}`` are ``S(z_k)`` and ``S(z_{k-1})`` in both forms.
* ``beta_schedule``: ``"constant"`` (default) is the constant momentum of (2). ``"nesterov"`` is
  AGD (3) in HBNet form: the block whose input is ``z_k`` uses
  ``beta_k = theta_k (1 - theta_{k-1}) / theta_{k-1}`` from
  :func:`optnb.theory.algorithms.nesterov_betas` (``theta_{-1} = theta_0 = 1``, so
  ``beta_0 = beta_1 = 0``, then 0.2818, 0.4340, ...). ``k`` counts from the start of the momentum
  chain, and theta restarts where the chain restarts (``z_{-1} := z_0``), as AGDNet restarts it at
  every dense block: at the stem and, under ``hb_boundary="restart"``, at every stage start;
  under ``"shortcut"`` one chain, and one theta sequence, runs through the whole network. The
  ``beta`` argument is ignored under ``"nesterov"``.
* ``learnable_beta``: each block that carries momentum gets its own scalar parameter, initialised
  at its scheduled beta.
* ``reversible`` (needs ``momentum="outside"``): the outside form can be run backwards,
  ``z_{k-1} = z_k - (z_{k+1} - relu(z_k + F_k(z_k))) / beta``, so each maximal run of consecutive
  blocks with an identity shortcut and ``beta != 0`` goes through
  :func:`optnb.models.reversible.reversible_hb_stage`, which does not store their activations.
  The other blocks (downsampling blocks, blocks without momentum, ``beta_k = 0`` blocks of the
  Nesterov schedule) run the ordinary way; with no such run at all (e.g. ``beta = 0``) the model is
  simply not reversible anywhere, which :meth:`CifarHBNet.reversible_blocks` shows. The output is
  that of ``reversible=False``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from optnb.models.errors import ModelOptionError, check_choice, check_finite
from optnb.models.init import init_weights
from optnb.models.reversible import reversible_hb_stage
from optnb.theory.algorithms import nesterov_betas

__all__ = [
    "BETA_SCHEDULES",
    "HB_BOUNDARIES",
    "MOMENTUM_PLACEMENTS",
    "BasicBlock",
    "CifarHBNet",
    "CifarResNet",
    "ShortcutA",
    "add_momentum",
    "add_momentum_outside",
    "blocks_per_stage",
]

HB_BOUNDARIES = ("restart", "shortcut")
MOMENTUM_PLACEMENTS = ("inside", "outside")
BETA_SCHEDULES = ("constant", "nesterov")


def blocks_per_stage(depth: int) -> int:
    """``n`` of a CIFAR ResNet of ``depth = 6 n + 2`` layers (20, 32, 44, 56, 110, ...)."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ModelOptionError(
            f"CIFAR ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), "
            f"got {depth!r}"
        )
    return (depth - 2) // 6


def _conv3x3(in_planes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)


class ShortcutA(nn.Module):
    """He et al.'s option A: subsample by ``stride`` and zero-pad the new channels (at the end).

    Parameter-free and linear, so ``S(z + beta (z - z')) = S(z) + beta (S(z) - S(z'))``.
    """

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride, self.extra = stride, planes - in_planes

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x


def add_momentum(out: Tensor, z: Tensor, prev: Tensor | None, beta: float | Tensor) -> Tensor:
    """``out += z + beta (z - prev)`` in place; ``prev=None`` means ``z_{k-1} = z_k`` (no momentum).

    A float ``beta`` costs one extra fused multiply-add pass over ``out`` and no allocation; at
    ``beta = 0`` the result is bit-identical to ResNet's ``out += z``. A tensor ``beta`` (learnable)
    goes through ``torch.lerp(z, prev, -beta) = z + beta (z - prev)``.
    """
    if prev is None:
        return out.add_(z)
    if isinstance(beta, Tensor):
        return out.add_(torch.lerp(z, prev, (-beta).to(z.dtype)))
    return out.add_(z, alpha=1.0 + beta).sub_(prev, alpha=beta)


def add_momentum_outside(out: Tensor, z: Tensor, prev: Tensor | None, beta: float | Tensor) -> Tensor:
    """``relu(out + z) + beta (z - prev)``, the literal (10); ``prev=None``: ResNet's ``relu(out + z)``.

    ``out`` is overwritten. A float ``beta = 0`` skips the momentum, so the result is ResNet's
    bit for bit.
    """
    out = out.add_(z).relu_()
    if prev is None or (not isinstance(beta, Tensor) and beta == 0.0):
        return out
    step = torch.sub(z, prev)
    step = step.mul(beta.to(z.dtype)) if isinstance(beta, Tensor) else step.mul_(beta)
    return step.add_(out)  # not out.add_: relu_ keeps its result for the backward pass


class BasicBlock(nn.Module):
    """``relu(F(z) + S(z))`` with ``F`` = Conv3x3-BN-ReLU-Conv3x3-BN and ``S`` identity or option A."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        needs_shortcut = stride != 1 or in_planes != planes
        self.shortcut = ShortcutA(in_planes, planes, stride) if needs_shortcut else None

    def residual(self, z: Tensor) -> Tensor:
        """The branch ``F_k(z)`` (the relaxed negative gradient of Appendix C)."""
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(z)), inplace=True)))

    def forward(self, z: Tensor) -> Tensor:
        out = self.residual(z)
        out += z if self.shortcut is None else self.shortcut(z)
        return out.relu_()

    def forward_hb(
        self, z: Tensor, prev: Tensor | None, beta: float | Tensor, outside: bool = False
    ) -> tuple[Tensor, Tensor]:
        """One heavy-ball block (10): ``relu(F(z) + S(z) + beta (S(z) - S(prev)))``, or with
        ``outside=True`` the literal ``relu(F(z) + S(z)) + beta (S(z) - S(prev))``.

        Returns the output and the ``z_{k-1}`` for the next block (``S(z)``, in the new space).
        """
        out = self.residual(z)
        if self.shortcut is not None:
            z = self.shortcut(z)
            prev = None if prev is None else self.shortcut(prev)
        if outside:
            return add_momentum_outside(out, z, prev, beta), z
        return add_momentum(out, z, prev, beta).relu_(), z


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet: 3x3 conv (``width``), three stages of ``n`` basic blocks with
    ``width``, ``2 width``, ``4 width`` channels (16/32/64 by default), global pooling, FC."""

    def __init__(
        self, depth: int = 56, num_classes: int = 10, width: int = 16, in_channels: int = 3
    ) -> None:
        super().__init__()
        n = blocks_per_stage(depth)
        _check_positive("num_classes", num_classes)
        _check_positive("width", width)
        _check_positive("in_channels", in_channels)
        self.depth, self.n = depth, n
        self.conv1 = _conv3x3(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._stage(width, width, n, stride=1)
        self.layer2 = self._stage(width, 2 * width, n, stride=2)
        self.layer3 = self._stage(2 * width, 4 * width, n, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)
        init_weights(self)

    @staticmethod
    def _stage(in_planes: int, planes: int, n: int, stride: int) -> nn.Sequential:
        blocks = [BasicBlock(in_planes, planes, stride)]
        blocks += [BasicBlock(planes, planes) for _ in range(n - 1)]
        return nn.Sequential(*blocks)

    def blocks(self) -> Iterator[BasicBlock]:
        """All residual blocks in forward order."""
        for stage in (self.layer1, self.layer2, self.layer3):
            yield from stage

    def stem(self, x: Tensor) -> Tensor:
        return F.relu(self.bn1(self.conv1(x)), inplace=True)

    def head(self, z: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(z), 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.layer3(self.layer2(self.layer1(self.stem(x)))))


class CifarHBNet(CifarResNet):
    """HBNet (10) on the CIFAR ResNet skeleton; ``beta = 0`` is :class:`CifarResNet` exactly.

    Options (each an open choice of the paper, see the module docstring):

    * ``momentum``: ``"inside"`` (default) puts the momentum inside the closing ReLU,
      ``relu(z + F(z) + beta (z - z_prev))``; ``"outside"`` is the literal eq. (10),
      ``relu(z + F(z)) + beta (z - z_prev)``.
    * ``beta_schedule``: ``"constant"`` (default, eq. (2)) uses ``beta`` in every block that carries
      momentum; ``"nesterov"`` uses the ``beta_k`` of AGD (3) (``beta`` is then ignored).
    * ``learnable_beta=True`` gives every block that carries momentum its own scalar ``beta``
      parameter (``layerS.B.beta``), initialised at the block's scheduled value;
      :attr:`num_momentum_parameters` reports how many were added.
    * ``hb_boundary``: what happens at the stride-2 blocks (``"restart"`` or ``"shortcut"``).
    * ``reversible=True`` (needs ``momentum="outside"``) runs each maximal run of consecutive
      identity-shortcut blocks with nonzero beta through :func:`reversible_hb_stage`, which does
      not store their activations; the output is that of ``reversible=False``.

    :meth:`block_betas` lists the beta each block uses, :meth:`reversible_blocks` which blocks run
    reversibly.
    """

    def __init__(
        self,
        depth: int = 56,
        num_classes: int = 10,
        width: int = 16,
        in_channels: int = 3,
        beta: float = 0.5,
        learnable_beta: bool = False,
        hb_boundary: str = "restart",
        momentum: str = "inside",
        beta_schedule: str = "constant",
        reversible: bool = False,
    ) -> None:
        beta = check_finite("beta", beta)
        _check_bool("learnable_beta", learnable_beta)
        check_choice("hb_boundary", hb_boundary, HB_BOUNDARIES)
        check_choice("momentum", momentum, MOMENTUM_PLACEMENTS)
        check_choice("beta_schedule", beta_schedule, BETA_SCHEDULES)
        _check_bool("reversible", reversible)
        if reversible and momentum != "outside":
            raise ModelOptionError(
                "reversible=True needs momentum='outside' (the closing ReLU inside is not "
                f"invertible), got momentum={momentum!r}"
            )
        super().__init__(depth, num_classes, width, in_channels)
        self.beta, self.learnable_beta, self.hb_boundary = beta, learnable_beta, hb_boundary
        self.momentum, self.beta_schedule, self.reversible = momentum, beta_schedule, reversible
        self.chain_positions = self._chain_positions()
        self.momentum_blocks = tuple(k is not None and k > 0 for k in self.chain_positions)
        self.scheduled_betas = self._scheduled_betas()
        if learnable_beta:
            for block, active, b in zip(self.blocks(), self.momentum_blocks, self.scheduled_betas):
                if active:
                    block.beta = nn.Parameter(torch.tensor(b))

    def _chain_positions(self) -> tuple[int | None, ...]:
        """The index ``k`` of each block's input ``z_k`` in its momentum chain, in forward order.

        A chain starts (``k = 0``, ``z_{-1} := z_0``) at the stem output and, under
        ``hb_boundary="restart"``, at the output of every downsampling block, which itself is a
        plain ResNet block outside every chain (``None``). Under ``"shortcut"`` one chain runs
        through the whole network. A block carries momentum iff ``k > 0``.
        """
        positions: list[int | None] = []
        k = 0
        for block in self.blocks():
            if block.shortcut is not None and self.hb_boundary == "restart":
                positions.append(None)
                k = 0
            else:
                positions.append(k)
                k += 1
        return tuple(positions)

    def _scheduled_betas(self) -> tuple[float, ...]:
        """The (initial) beta of each block: ``beta`` or the ``beta_k`` of (3), 0 without momentum.

        ``beta_k = theta_k (1 - theta_{k-1}) / theta_{k-1}`` from
        :func:`optnb.theory.algorithms.nesterov_betas`, ``k`` the block's position in its chain
        (theta restarts with the chain, as AGDNet restarts it per dense block).
        """
        if self.beta_schedule == "nesterov":
            known = [k for k in self.chain_positions if k is not None]
            table = nesterov_betas(max(known) + 1)
            values = [0.0 if k is None else float(table[k]) for k in self.chain_positions]
        else:
            values = [self.beta if k is not None and k > 0 else 0.0 for k in self.chain_positions]
        return tuple(v if active else 0.0 for v, active in zip(values, self.momentum_blocks))

    @property
    def num_momentum_parameters(self) -> int:
        """Scalars added to ResNet's parameters (0 unless ``learnable_beta``)."""
        return sum(self.momentum_blocks) if self.learnable_beta else 0

    def _betas(self) -> list[float | Tensor]:
        """The beta each block multiplies ``z_k - z_{k-1}`` by: a float, or its parameter."""
        return [
            block.beta if self.learnable_beta and active else b
            for block, active, b in zip(self.blocks(), self.momentum_blocks, self.scheduled_betas)
        ]

    def block_betas(self) -> tuple[float, ...]:
        """The beta each block uses now, in forward order (0.0 where it carries no momentum)."""
        return tuple(float(b.detach()) if isinstance(b, Tensor) else b for b in self._betas())

    def _is_reversible(self, block: BasicBlock, active: bool, beta: float | Tensor) -> bool:
        # z_{k-1} = (z_{k+1} - relu(z_k + F(z_k))) / beta: identity shortcut and beta != 0 needed
        return self.reversible and active and block.shortcut is None and bool(beta != 0)

    def reversible_blocks(self) -> tuple[bool, ...]:
        """Which blocks run without storing activations (all False unless ``reversible``)."""
        return tuple(
            self._is_reversible(block, active, b)
            for block, active, b in zip(self.blocks(), self.momentum_blocks, self._betas())
        )

    def extra_repr(self) -> str:
        beta = "nesterov" if self.beta_schedule == "nesterov" else self.beta
        return (
            f"beta={beta}, learnable_beta={self.learnable_beta}, "
            f"hb_boundary={self.hb_boundary!r}, momentum={self.momentum!r}, "
            f"reversible={self.reversible}, momentum_blocks={sum(self.momentum_blocks)}"
        )

    def forward(self, x: Tensor) -> Tensor:
        z, prev = self.stem(x), None  # z_{-1} := z_0
        restart, outside = self.hb_boundary == "restart", self.momentum == "outside"
        run: list[tuple[BasicBlock, float | Tensor]] = []  # pending reversible blocks
        for block, active, beta in zip(self.blocks(), self.momentum_blocks, self._betas()):
            if self._is_reversible(block, active, beta):
                run.append((block, beta))
                continue
            if run:
                prev, z = _reversible_run(run, prev, z)
                run = []
            z, prev = block.forward_hb(z, prev if active else None, beta, outside)
            if restart and block.shortcut is not None:
                prev = None  # the next stage starts afresh: z_{-1} := z_0
        if run:
            prev, z = _reversible_run(run, prev, z)
        return self.head(z)


def _reversible_run(
    run: list[tuple[BasicBlock, float | Tensor]], prev: Tensor | None, z: Tensor
) -> tuple[Tensor, Tensor]:
    blocks, betas = zip(*run)
    if prev is None:  # cannot happen: the first block of a run carries momentum
        raise RuntimeError("a reversible run must start after z_{k-1} exists")
    return reversible_hb_stage(blocks, prev, z, betas)


def _check_bool(name: str, value: bool) -> None:
    if not isinstance(value, bool):
        raise ModelOptionError(f"{name} must be True or False, got {value!r}")


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelOptionError(f"{name} must be a positive int, got {value!r}")
