"""Partial channels and edge normalisation (PC-DARTS, Xu et al. 2020), for all three spaces.

Partial channels: an edge sends only the first ``C/K`` channels of its input through the mixed op;
the other ``(K-1)C/K`` channels bypass it unchanged (max-pooled 2x2 with stride 2 on the strided
edges of a reduction cell), and the two parts are concatenated and channel-shuffled with ``K``
groups, so the next edge that reads the result processes a different slice. The ops are built
for ``C/K`` channels: the supernet's memory and time fall about K-fold in the mixed ops. ``K = 1``
is the full supernet (the split is the whole tensor, nothing bypasses, the shuffle is a no-op).

Edge normalisation: a logit per edge, ``softmax`` over the edges entering a node, multiplying
each edge's output (PC-DARTS's ``betas``, the paper's eq. (21) path weights in the ``agd``
space, where they are called ``edge_logits``). ``EDGE_NORMALIZATIONS``:

* ``off``: no edge weights (``darts`` and ``hb`` by default);
* ``edge``: PC-DARTS: the weight scales the whole edge output, bypass included;
* ``path``: eq. (20): the weight scales the mixing weights of the edge's ops (``agd`` by default).

With ``K = 1`` ``edge`` and ``path`` are the same function (``p * sum_o w_o o(x) = sum_o (p w_o)
o(x)``); with ``K > 1`` only ``edge`` scales the bypass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from optnb.nas.errors import NasError, unknown

__all__ = ["EDGE_NORMALIZATIONS", "bypass", "channel_shuffle", "channel_unshuffle",
           "check_edge_normalization", "check_partial_channels", "edge_softmax", "merge",
           "partial_mixed", "split_channels"]

EDGE_NORMALIZATIONS: tuple[str, ...] = ("off", "edge", "path")


def check_partial_channels(k: int, channels: int | None = None) -> int:
    """``k`` if it is an int >= 1 that divides ``channels`` (when given), else a ``NasError``."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise NasError(f"partial_channels must be an integer >= 1 (1: all channels), got {k!r}")
    if channels is not None and channels % k:
        valid = [d for d in range(1, channels + 1) if channels % d == 0]
        raise NasError(f"partial_channels {k} must divide the channel count C={channels}; "
                       f"valid: {', '.join(map(str, valid))}")
    return k


def check_edge_normalization(space: str, mode: str) -> str:
    """``mode`` made explicit for ``space``: ``auto`` is ``path`` for agd (eq. 21), else ``off``.

    ``off`` is refused for agd: its path weights are part of the space's definition (eq. 20)."""
    if mode == "auto":
        return "path" if space == "agd" else "off"
    if mode not in EDGE_NORMALIZATIONS:
        raise unknown("edge normalization", mode, ("auto", *EDGE_NORMALIZATIONS))
    if space == "agd" and mode == "off":
        raise NasError("edge normalization 'off' is not available in the agd space: its path "
                       "weights are eq. (21); valid for agd: edge, path")
    return mode


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's shuffle: channel ``g*(C/groups) + j`` moves to ``j*groups + g``."""
    b, c, h, w = x.shape
    if groups == 1:
        return x
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def channel_unshuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """The inverse permutation of :func:`channel_shuffle`."""
    b, c, h, w = x.shape
    if groups == 1:
        return x
    return x.view(b, c // groups, groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def split_channels(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first C/k channels, the rest)``: the part the mixed op sees and the bypass."""
    part = x.shape[1] // k
    return x[:, :part], x[:, part:]


def bypass(rest: torch.Tensor, stride: int) -> torch.Tensor:
    """The channels that skip the mixed op; PC-DARTS max-pools them (2x2, stride 2) on strided
    edges so that they match the op outputs' resolution."""
    return rest if stride == 1 else F.max_pool2d(rest, 2, 2)


def merge(y: torch.Tensor, rest: torch.Tensor, k: int) -> torch.Tensor:
    """``shuffle(cat(op output, bypass))``: one edge's output, ``C`` channels again."""
    return channel_shuffle(torch.cat([y, rest], dim=1), k) if k > 1 else y


def partial_mixed(x: torch.Tensor, mixed, weights: torch.Tensor, k: int, stride: int,
                  skip_none: bool = True) -> torch.Tensor:
    """PC-DARTS's ``MixedOp.forward`` for one edge: ``mixed`` (built for ``C/k`` channels) on
    the first ``C/k`` channels, the rest bypassing it, then the shuffle."""
    part, rest = split_channels(x, k)
    return merge(mixed(part, weights, skip_none), bypass(rest, stride), k)


def edge_softmax(logits: torch.Tensor, node_slices: Sequence[slice]) -> torch.Tensor:
    """Softmax of the edge logits over the edges entering each node (eq. (21); PC-DARTS)."""
    return torch.cat([F.softmax(logits[s], dim=-1) for s in node_slices])
