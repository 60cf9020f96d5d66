"""CIFAR ResNet (He et al. [9], option-A shortcuts) and HBNet, the heavy-ball network of eq. (10).

ResNet is gradient descent (1) unrolled: ``z_{k+1} = z_k + F_k(z_k)``, with ``F_k`` the basic
block's branch Conv-BN-ReLU-Conv-BN (the "composite function including two convolution layers" of
Appendix C.1, which replaces the exact negative gradient ``Phi(W z) - z``). HBNet unrolls the
heavy ball (2) instead; mapped back to features that is eq. (10), and with the same relaxation

    z_{k+1} = z_k + F_k(z_k) + beta (z_k - z_{k-1}),        z_{-1} := z_0,

followed, as in ResNet, by the ReLU that closes the block. ``beta = 0`` is ResNet exactly. The two
models share one module tree (same ``state_dict`` keys), so weights load across.

Stage boundaries (the stride-2 blocks, where ``z_{k-1}`` lives in the previous resolution) are an
open choice of Appendix C, option ``hb_boundary``:

* ``"restart"`` (default): the downsampling block is a plain ResNet block, and its output starts the
  next stage as ``z_0`` with ``z_{-1} := z_0`` (like the stem output starts the network). So the
  first block after the stem, each downsampling block and the block after it carry no momentum.
* ``"shortcut"``: ``z_{k-1}`` goes through the same parameter-free option-A shortcut ``S`` as
  ``z_k``: the downsampling block adds ``S(z_k) + beta (S(z_k) - S(z_{k-1}))`` and the next block
  uses ``S(z_k)`` as its ``z_{k-1}``. Every block but the first carries momentum.

Both keep parameters and multiply-adds identical to ResNet (the momentum is element-wise).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from optnb.models.errors import ModelOptionError, check_choice, check_finite
from optnb.models.init import init_weights

__all__ = [
    "HB_BOUNDARIES",
    "BasicBlock",
    "CifarHBNet",
    "CifarResNet",
    "ShortcutA",
    "add_momentum",
    "blocks_per_stage",
]

HB_BOUNDARIES = ("restart", "shortcut")


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
        self, z: Tensor, prev: Tensor | None, beta: float | Tensor
    ) -> tuple[Tensor, Tensor]:
        """One heavy-ball block (10): ``relu(F(z) + S(z) + beta (S(z) - S(prev)))``.

        Returns the output and the ``z_{k-1}`` for the next block (``S(z)``, in the new space).
        """
        out = self.residual(z)
        if self.shortcut is not None:
            z = self.shortcut(z)
            prev = None if prev is None else self.shortcut(prev)
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

    ``beta`` is fixed by default (eq. (2) has a constant momentum). ``learnable_beta=True`` gives
    every block that carries momentum its own scalar ``beta`` parameter (``layerS.B.beta``),
    initialised at ``beta``; :attr:`num_momentum_parameters` reports how many were added.
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
    ) -> None:
        beta = check_finite("beta", beta)
        if not isinstance(learnable_beta, bool):
            raise ModelOptionError(f"learnable_beta must be True or False, got {learnable_beta!r}")
        check_choice("hb_boundary", hb_boundary, HB_BOUNDARIES)
        super().__init__(depth, num_classes, width, in_channels)
        self.beta, self.learnable_beta, self.hb_boundary = beta, learnable_beta, hb_boundary
        self.momentum_blocks = self._momentum_mask()
        if learnable_beta:
            for block, active in zip(self.blocks(), self.momentum_blocks):
                if active:
                    block.beta = nn.Parameter(torch.tensor(self.beta))

    def _momentum_mask(self) -> tuple[bool, ...]:
        """Which blocks see ``z_{k-1} != z_k`` (carry a momentum term), in forward order."""
        mask, have_prev = [], False
        for block in self.blocks():
            restart = block.shortcut is not None and self.hb_boundary == "restart"
            mask.append(have_prev and not restart)
            have_prev = not restart
        return tuple(mask)

    @property
    def num_momentum_parameters(self) -> int:
        """Scalars added to ResNet's parameters (0 unless ``learnable_beta``)."""
        return sum(self.momentum_blocks) if self.learnable_beta else 0

    def extra_repr(self) -> str:
        return (
            f"beta={self.beta}, learnable_beta={self.learnable_beta}, "
            f"hb_boundary={self.hb_boundary!r}, momentum_blocks={sum(self.momentum_blocks)}"
        )

    def forward(self, x: Tensor) -> Tensor:
        z, prev = self.stem(x), None  # z_{-1} := z_0
        restart = self.hb_boundary == "restart"
        for block, active in zip(self.blocks(), self.momentum_blocks):
            beta = block.beta if self.learnable_beta and active else self.beta
            z, prev = block.forward_hb(z, prev if active else None, beta)
            if restart and block.shortcut is not None:
                prev = None  # the next stage starts afresh: z_{-1} := z_0
        return self.head(z)


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelOptionError(f"{name} must be a positive int, got {value!r}")
