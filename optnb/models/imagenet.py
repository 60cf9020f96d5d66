"""ImageNet models of Table 2 on torchvision's ResNet and DenseNet (``weights=None``, no downloads).

* ``resnet(depth)`` / ``HBResNet``: ResNet-34 (basic blocks), -50 and -101 (bottlenecks). HBNet adds
  ``beta (z_k - z_{k-1})`` to each block's identity path before the closing ReLU, as on CIFAR
  (eq. (10), see :mod:`optnb.models.cifar_resnet`). Stage boundaries carry a 1x1 projection ``P``;
  applying ``P`` to ``z_{k-1}`` too would add ~0.3 GMACs to ResNet-50, which Table 2 rules out.
  ``hb_boundary="restart"`` (default) makes the projecting block and the one after it plain;
  ``"shortcut"`` feeds the extrapolated point ``z_k + beta (z_k - z_{k-1})`` to the existing
  projection and uses its output as the next block's ``z_{k-1}`` (no extra FLOPs).
* ``stride_in_1x1`` (bottleneck nets, default True): the stride-2 of a downsampling bottleneck sits
  on its first 1x1 conv, as in He et al.'s original ResNet ("v1"), instead of on the 3x3 conv
  (torchvision's "v1.5"). Same parameters; 3.86 / 7.57 GMACs for ResNet-50 / -101 against 4.09 /
  7.80 for v1.5. Table 2 prints 3.86 / 7.58, so the paper's models are v1.
* ``densenet121`` / ``agdnet121``: torchvision's DenseNet-121 (growth 32, bottleneck, compression
  0.5); AGDNet weights each chunk of the normalised concatenation by the cumulative AGD
  coefficient, as on CIFAR (:mod:`optnb.models.cifar_densenet`).

Initialisation follows Section 8 (:func:`optnb.models.init.init_weights`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torchvision.models import densenet as tv_densenet
from torchvision.models import resnet as tv_resnet

from optnb.models.cifar_densenet import AGD_COEFFICIENTS, install_agd_coefficients
from optnb.models.cifar_resnet import HB_BOUNDARIES, add_momentum
from optnb.models.errors import ModelOptionError, check_choice, check_finite
from optnb.models.init import init_weights

__all__ = ["HBResNet", "agdnet121", "densenet121", "hbnet", "resnet"]

_LAYOUT = {
    34: (tv_resnet.BasicBlock, (3, 4, 6, 3)),
    50: (tv_resnet.Bottleneck, (3, 4, 6, 3)),
    101: (tv_resnet.Bottleneck, (3, 4, 23, 3)),
}


def _layout(depth: int) -> tuple[type[nn.Module], tuple[int, ...]]:
    if depth not in _LAYOUT:
        valid = ", ".join(map(str, _LAYOUT))
        raise ModelOptionError(f"ImageNet ResNet depth must be one of {valid}, got {depth!r}")
    return _LAYOUT[depth]


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ModelOptionError(f"{name} must be True or False, got {value!r}")
    return value


def _check_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelOptionError(f"num_classes must be a positive int, got {num_classes!r}")
    return num_classes


def _move_stride_to_1x1(model: tv_resnet.ResNet) -> None:
    for block in model.modules():
        if isinstance(block, tv_resnet.Bottleneck) and block.conv2.stride != (1, 1):
            block.conv1.stride, block.conv2.stride = block.conv2.stride, (1, 1)


def _blocks(model: tv_resnet.ResNet) -> Iterator[nn.Module]:
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        yield from stage


def _residual(block: nn.Module, z: Tensor) -> Tensor:
    """The branch of a torchvision basic or bottleneck block (without the shortcut)."""
    out = block.relu(block.bn1(block.conv1(z)))
    out = block.bn2(block.conv2(out))
    if isinstance(block, tv_resnet.Bottleneck):
        out = block.bn3(block.conv3(block.relu(out)))
    return out


class HBResNet(tv_resnet.ResNet):
    """torchvision's ResNet with the heavy-ball identity path (10); ``beta = 0`` is ResNet.

    Same module tree and ``state_dict`` keys as ``torchvision.models.ResNet``; with
    ``learnable_beta`` each block that carries momentum gets a scalar ``beta`` parameter.
    """

    def __init__(
        self,
        block: type[nn.Module],
        layers: tuple[int, ...],
        num_classes: int = 1000,
        beta: float = 0.5,
        learnable_beta: bool = False,
        hb_boundary: str = "restart",
    ) -> None:
        beta = check_finite("beta", beta)
        _check_bool("learnable_beta", learnable_beta)
        check_choice("hb_boundary", hb_boundary, HB_BOUNDARIES)
        super().__init__(block, list(layers), num_classes=num_classes)
        self.beta, self.learnable_beta, self.hb_boundary = beta, learnable_beta, hb_boundary
        mask, have_prev = [], False
        for blk in _blocks(self):
            restart = blk.downsample is not None and self.hb_boundary == "restart"
            mask.append(have_prev and blk.downsample is None)
            have_prev = not restart
        self.momentum_blocks = tuple(mask)
        if learnable_beta:
            for blk, active in zip(_blocks(self), mask):
                if active:
                    blk.beta = nn.Parameter(torch.tensor(self.beta))

    @property
    def num_momentum_parameters(self) -> int:
        return sum(self.momentum_blocks) if self.learnable_beta else 0

    def extra_repr(self) -> str:
        return (
            f"beta={self.beta}, learnable_beta={self.learnable_beta}, "
            f"hb_boundary={self.hb_boundary!r}, momentum_blocks={sum(self.momentum_blocks)}"
        )

    def _forward_impl(self, x: Tensor) -> Tensor:
        z = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        prev: Tensor | None = None  # z_{-1} := z_0
        for blk in _blocks(self):
            out = _residual(blk, z)
            if blk.downsample is None:
                beta = blk.beta if self.learnable_beta and prev is not None else self.beta
                z, prev = add_momentum(out, z, prev, beta).relu_(), z
                continue
            if self.hb_boundary == "shortcut" and prev is not None:
                beta = self.beta  # boundary blocks have no learnable beta
                z_in = torch.lerp(z, prev, -beta)  # z + beta (z - prev)
            else:
                z_in = z
            identity = blk.downsample(z_in)
            z = out.add_(identity).relu_()
            prev = identity if self.hb_boundary == "shortcut" else None
        return self.fc(torch.flatten(self.avgpool(z), 1))


def resnet(depth: int, num_classes: int = 1000, stride_in_1x1: bool = True) -> tv_resnet.ResNet:
    """torchvision ResNet-``depth`` (34, 50, 101), initialised as in Section 8."""
    block, layers = _layout(depth)
    model = tv_resnet.ResNet(block, list(layers), num_classes=_check_classes(num_classes))
    if _check_bool("stride_in_1x1", stride_in_1x1):
        _move_stride_to_1x1(model)
    return init_weights(model)


def hbnet(
    depth: int,
    num_classes: int = 1000,
    stride_in_1x1: bool = True,
    beta: float = 0.5,
    learnable_beta: bool = False,
    hb_boundary: str = "restart",
) -> HBResNet:
    """HBNet-``depth`` (34, 50, 101) on torchvision's ResNet; same weights layout as ``resnet``."""
    block, layers = _layout(depth)
    model = HBResNet(
        block, layers, _check_classes(num_classes), beta, learnable_beta, hb_boundary
    )
    if _check_bool("stride_in_1x1", stride_in_1x1):
        _move_stride_to_1x1(model)
    return init_weights(model)


def densenet121(num_classes: int = 1000, dropout: float = 0.0) -> tv_densenet.DenseNet:
    """torchvision DenseNet-121 (``drop_rate=dropout``), initialised as in Section 8."""
    dropout = check_finite("dropout", dropout)
    if not 0.0 <= dropout < 1.0:
        raise ModelOptionError(f"dropout must be in [0, 1), got {dropout!r}")
    model = tv_densenet.densenet121(
        weights=None, num_classes=_check_classes(num_classes), drop_rate=dropout
    )
    return init_weights(model)


def agdnet121(
    num_classes: int = 1000,
    dropout: float = 0.0,
    coefficients: str = "agd",
    beta: float | None = None,
    learnable_coefficients: bool = False,
) -> tv_densenet.DenseNet:
    """AGDNet-121: DenseNet-121 whose ``norm1`` / transition ``norm`` / ``norm5`` weight the
    chunks of the normalised concatenation by ``c_{k,j}`` (θ restarted per block).

    ``model.num_coefficient_parameters`` counts the learnable scalars (0 unless learnable).
    """
    check_choice("coefficients", coefficients, AGD_COEFFICIENTS)
    beta = None if beta is None else check_finite("beta", beta)
    _check_bool("learnable_coefficients", learnable_coefficients)
    model = densenet121(num_classes, dropout)
    feats, growth, channels, added = model.features, 32, 64, 0
    for b in range(1, 5):
        block = getattr(feats, f"denseblock{b}")
        after = getattr(feats, f"transition{b}") if b < 4 else feats
        layers = list(block.values())
        consumers = [*layers, after]
        names = ["norm1"] * len(layers) + ["norm" if b < 4 else "norm5"]
        added += install_agd_coefficients(
            consumers, channels, growth, coefficients, beta, learnable_coefficients, names
        )
        channels += len(layers) * growth
        if b < 4:
            channels //= 2
    model.num_coefficient_parameters = added
    model.agd = {"coefficients": coefficients, "beta": beta, "learnable": learnable_coefficients}
    return model
