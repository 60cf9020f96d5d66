"""The candidate operations of paper Table 3, with DARTS's exact definitions and names.

``PRIMITIVES`` is DARTS's order (it fixes the columns of alpha and the meaning of published
genotypes) with the paper's negative identity appended last. Table 3 lists the same nine ops in
another order, which is presentation only.

=====================  ==========================================================================
``none``               ``Zero``: ``x * 0`` (stride 2: ``x[:, :, ::2, ::2] * 0``)
``max_pool_3x3``       ``MaxPool2d(3, stride, padding=1)`` (search: then ``BatchNorm2d(affine=False)``)
``avg_pool_3x3``       ``AvgPool2d(3, stride, 1, count_include_pad=False)`` (search: then BN)
``skip_connect``       identity; stride 2: ``FactorizedReduce``
``sep_conv_kxk``       (ReLU, depthwise kxk, 1x1, BN) twice; only the first depthwise is strided
``dil_conv_kxk``       ReLU, depthwise kxk dilation 2, 1x1, BN
``neg_skip_connect``   ``-x`` (no parameters); stride 2: ``-FactorizedReduce(x)``
=====================  ==========================================================================

All convolutions have ``bias=False``. In the search supernet every BN inside a cell is
``affine=False``; in the evaluation network every BN is affine.

At stride 2 the negative identity is ``-FactorizedReduce``: because BN is odd-symmetric this is
FactorizedReduce with negated conv weights, i.e. an independently parameterised copy of the same
function family as the strided skip. The sign matters only at stride 1, where ``w_id x +
w_neg (-x) = (w_id - w_neg) x`` (the HB momentum term of eq. (18)).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from optnb.nas.errors import unknown

DARTS_PRIMITIVES: tuple[str, ...] = (
    "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
)
#: The paper's nine candidates (Table 3): DARTS's eight plus the negative identity, appended last.
PRIMITIVES: tuple[str, ...] = (*DARTS_PRIMITIVES, "neg_skip_connect")
#: Ops that hold no weights at stride 1 (collapse diagnostics count these in derived cells).
PARAMETER_FREE: frozenset[str] = frozenset(
    {"none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "neg_skip_connect"})


def _bn(channels: int, affine: bool, track: bool = True) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, affine=affine, track_running_stats=track)


class Zero(nn.Module):
    """The ``none`` op: zeros of the (strided) input's shape."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class Identity(nn.Module):
    """``skip_connect`` at stride 1. Exempt from drop path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class NegIdentity(nn.Module):
    """``neg_skip_connect`` at stride 1: ``-x``. Exempt from drop path (configurable)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


class ReLUConvBN(nn.Sequential):
    """ReLU, conv (``bias=False``), BN: the 1x1 preprocessing of cell inputs."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 affine: bool = True, track: bool = True) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            _bn(c_out, affine, track),
        )


class FactorizedReduce(nn.Module):
    """Halve the resolution: ReLU, two 1x1 stride-2 convs to ``c_out/2`` on ``x`` and on ``x``
    shifted by one pixel, concatenated, then BN."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True, track: bool = True) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even c_out, got {c_out}")
        self.relu = nn.ReLU()
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = _bn(c_out, affine, track)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


class NegFactorizedReduce(FactorizedReduce):
    """``neg_skip_connect`` at stride 2: ``-FactorizedReduce(x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -super().forward(x)


class SepConv(nn.Module):
    """Separable conv, applied twice: (ReLU, depthwise kxk, 1x1, BN) x 2; stride in the first."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 affine: bool = True, track: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_in, 1, bias=False),
            _bn(c_in, affine, track),
            nn.ReLU(),
            nn.Conv2d(c_in, c_in, kernel, 1, padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            _bn(c_out, affine, track),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class DilConv(nn.Module):
    """Dilated separable conv: ReLU, depthwise kxk with dilation, 1x1, BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 dilation: int, affine: bool = True, track: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation=dilation, groups=c_in,
                      bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            _bn(c_out, affine, track),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def _skip(c: int, stride: int, affine: bool, track: bool) -> nn.Module:
    return Identity() if stride == 1 else FactorizedReduce(c, c, affine, track)


def _neg_skip(c: int, stride: int, affine: bool, track: bool) -> nn.Module:
    return NegIdentity() if stride == 1 else NegFactorizedReduce(c, c, affine, track)


OpBuilder = Callable[[int, int, bool, bool], nn.Module]

#: name -> builder ``(C, stride, affine, track_running_stats) -> nn.Module`` (a flat registry).
OPS: dict[str, OpBuilder] = {
    "none": lambda c, s, a, t: Zero(s),
    "max_pool_3x3": lambda c, s, a, t: nn.MaxPool2d(3, stride=s, padding=1),
    "avg_pool_3x3": lambda c, s, a, t: nn.AvgPool2d(3, stride=s, padding=1,
                                                    count_include_pad=False),
    "skip_connect": _skip,
    "sep_conv_3x3": lambda c, s, a, t: SepConv(c, c, 3, s, 1, a, t),
    "sep_conv_5x5": lambda c, s, a, t: SepConv(c, c, 5, s, 2, a, t),
    "dil_conv_3x3": lambda c, s, a, t: DilConv(c, c, 3, s, 2, 2, a, t),
    "dil_conv_5x5": lambda c, s, a, t: DilConv(c, c, 5, s, 4, 2, a, t),
    "neg_skip_connect": _neg_skip,
}
assert tuple(OPS) == PRIMITIVES


def check_op(name: str) -> str:
    """Return ``name`` if it is a registered op, else raise ``UnknownNameError`` listing them."""
    if name not in OPS:
        raise unknown("operation", name, PRIMITIVES)
    return name


def build_op(name: str, channels: int, stride: int, affine: bool = True,
             track_running_stats: bool = True) -> nn.Module:
    """Instantiate op ``name`` on ``channels`` channels (evaluation form: no BN after pools)."""
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")
    return OPS[check_op(name)](channels, stride, affine, track_running_stats)


def build_search_op(name: str, channels: int, stride: int,
                    track_running_stats: bool = True) -> nn.Module:
    """The search form (DARTS ``MixedOp``): ``affine=False`` BNs, and pools followed by BN."""
    op = build_op(name, channels, stride, affine=False, track_running_stats=track_running_stats)
    if "pool" in name:
        op = nn.Sequential(op, _bn(channels, False, track_running_stats))
    return op


def is_drop_path_exempt(op: nn.Module, exempt_negative: bool = True) -> bool:
    """Drop path skips the (stride-1) identity, and the negative identity when asked to."""
    return isinstance(op, Identity) or (exempt_negative and isinstance(op, NegIdentity))
