"""Batched execution of the mixed ops that share an input (a speed path, same maths).

All out-edges of one cell state share the input tensor and the stride. Instead of running every
candidate op once per edge, this module runs each op type once for all E edges of a source:

* ``ReLU(x)`` is computed once and repeated E times along the channels;
* depthwise convs become one conv with ``groups = E*C``, pointwise convs one with ``groups = E``;
* 1x1 convs of ``FactorizedReduce`` read the shared input, so they become one dense conv;
* identities broadcast the input; the negative identity folds its sign into the mixing weight;
* BatchNorm (``affine=False`` in search) is per channel, so stacking channels is exact. Running
  statistics are gathered from, and written back to, the per-edge modules.

The per-edge modules stay the source of truth (same ``state_dict``, same parameter count): their
weights are concatenated on every call, so gradients reach each edge's tensors. ``tests`` check
equality with the naive per-op loop in float64, in value and gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from optnb.nas.operations import (
    DilConv,
    FactorizedReduce,
    Identity,
    NegFactorizedReduce,
    NegIdentity,
    SepConv,
)


def grouped_batch_norm(x: torch.Tensor, bns: Sequence[nn.BatchNorm2d]) -> torch.Tensor:
    """BatchNorm of ``x`` [B, E*C, H, W] where channel block e belongs to ``bns[e]``."""
    first = bns[0]
    track = first.track_running_stats and first.running_mean is not None
    use_batch_stats = first.training or not track
    mean = torch.cat([b.running_mean for b in bns]) if track else None
    var = torch.cat([b.running_var for b in bns]) if track else None
    weight = torch.cat([b.weight for b in bns]) if first.affine else None
    bias = torch.cat([b.bias for b in bns]) if first.affine else None
    momentum = 0.0 if first.momentum is None else first.momentum
    out = F.batch_norm(x, mean, var, weight, bias, use_batch_stats, momentum, first.eps)
    if track and first.training:
        with torch.no_grad():
            n = first.num_features
            torch._foreach_copy_([b.running_mean for b in bns], list(mean.split(n)))
            torch._foreach_copy_([b.running_var for b in bns], list(var.split(n)))
            torch._foreach_add_([b.num_batches_tracked for b in bns], 1)
    return out


def _conv(x: torch.Tensor, convs: Sequence[nn.Conv2d], groups: int) -> torch.Tensor:
    c = convs[0]
    weight = torch.cat([m.weight for m in convs])
    return F.conv2d(x, weight, None, c.stride, c.padding, c.dilation, groups)


def _factorized_reduce(x: torch.Tensor, ops: Sequence[FactorizedReduce]) -> torch.Tensor:
    e, b = len(ops), x.shape[0]
    r = F.relu(x)
    left = _conv(r, [op.conv_1 for op in ops], 1)
    right = _conv(r[:, :, 1:, 1:], [op.conv_2 for op in ops], 1)
    h, w = left.shape[-2:]
    half = left.shape[1] // e
    y = torch.cat([left.view(b, e, half, h, w), right.view(b, e, half, h, w)], dim=2)
    return grouped_batch_norm(y.reshape(b, e * 2 * half, h, w), [op.bn for op in ops])


def _separable(r: torch.Tensor, seqs: Sequence[nn.Sequential], e: int) -> torch.Tensor:
    """(depthwise, pointwise, BN) blocks of SepConv/DilConv on the repeated, ReLU'd input."""
    y = _conv(r, [s[1] for s in seqs], r.shape[1])
    y = _conv(y, [s[2] for s in seqs], e)
    y = grouped_batch_norm(y, [s[3] for s in seqs])
    if len(seqs[0]) == 8:  # SepConv: a second ReLU, depthwise, pointwise, BN
        y = F.relu(y)
        y = _conv(y, [s[5] for s in seqs], y.shape[1])
        y = _conv(y, [s[6] for s in seqs], e)
        y = grouped_batch_norm(y, [s[7] for s in seqs])
    return y


def grouped_apply(ops: Sequence[nn.Module], x: torch.Tensor,
                  cache: dict[str, torch.Tensor]) -> tuple[torch.Tensor, float]:
    """Run one candidate op for E edges: ``(y [B, E or 1, C, H', W'], sign)``.

    ``cache`` holds ``ReLU(x)`` repeated E times, shared by all conv ops of this source.
    """
    e, b = len(ops), x.shape[0]
    op = ops[0]
    if isinstance(op, (Identity, NegIdentity)):
        return x.unsqueeze(1), (-1.0 if isinstance(op, NegIdentity) else 1.0)
    if isinstance(op, FactorizedReduce):
        y = _factorized_reduce(x, ops)
        sign = -1.0 if isinstance(op, NegFactorizedReduce) else 1.0
    elif isinstance(op, (SepConv, DilConv)):
        if "relu" not in cache:
            cache["relu"] = F.relu(x).repeat(1, e, 1, 1)
        y = _separable(cache["relu"], [m.op for m in ops], e)
        sign = 1.0
    elif isinstance(op, nn.Sequential) and isinstance(op[0], (nn.MaxPool2d, nn.AvgPool2d)):
        pooled = op[0](x)
        y = grouped_batch_norm(pooled.repeat(1, e, 1, 1), [m[1] for m in ops])
        sign = 1.0
    else:
        raise TypeError(f"no grouped form for {type(op).__name__}")
    return y.view(b, e, -1, *y.shape[-2:]), sign


def grouped_mixed(x: torch.Tensor, mixed_ops: Sequence[nn.Module],
                  weights: torch.Tensor) -> torch.Tensor:
    """Eq. (16) for all E out-edges of one state: ``[B, E, C, H', W']``.

    ``weights`` [E, K] are the (path-scaled) mixing weights of the E edges; ``none`` is skipped
    (it contributes exactly zero), every other op is batched over the edges.
    """
    first = mixed_ops[0]
    e = len(mixed_ops)
    cache: dict[str, torch.Tensor] = {}
    out = None
    for k in first.active:
        y, sign = grouped_apply([m.ops[k] for m in mixed_ops], x, cache)
        w = weights[:, k] if sign > 0 else -weights[:, k]
        term = y * w.view(1, e, 1, 1, 1).to(y.dtype)
        out = term if out is None else out + term
    return out
