"""CIFAR DenseNet (Huang et al. [10], no bottleneck, no compression) and AGDNet, eq. (12).

Nesterov's AGD in the single-sequence form (4) reads every earlier gradient. Mapped to features
and relaxed as in Appendix C (the negative gradient ``Phi(W y_j) - y_j`` becomes a learned branch
``F_j``), the input of layer ``k`` of a block is

    y_k = y_0 + sum_{j<k} c_{k,j} F_j(y_j),        c_{k,j} = sum_{m=j+1}^{k} h_{m,j},

the cumulative form of (12), with ``h_{k+1,j}`` from (5) and ``c`` from
``optnb.theory.algorithms.cumulative_coefficients`` (theta restarted at every dense block).
DenseNet feeds the concatenation ``[y_0, F_0, ..., F_{k-1}]`` to layer ``k`` and lets the
convolution mix the chunks with learned matrices; AGDNet keeps that skeleton (same parameters)
and weights chunk ``j`` by ``c_{k,j}`` *after* the consumer's BatchNorm (before it BN would cancel
the weight, appendix note Section 5.4). The consumers are every layer, the transitions and the
final BN-ReLU-pool-FC head (the input of a transition is ``y_m``, the block output).

``coefficients="ones"`` sets every ``c_{k,j} = 1``: AGDNet is then DenseNet exactly (the special
case of Section 10), and it loads DenseNet's weights as they are.

What the paper does not say: with fixed coefficients, AGDNet computes exactly what a DenseNet
computes whose consumer BatchNorms have gamma and beta multiplied by ``c`` (the product is all
``ScaledBatchNorm2d`` does; ``optnb.models.special_cases.densenet_twin`` builds that DenseNet).
The two families express the same functions; the coefficients change the initialisation
(effective gamma = ``c``, which ``CifarDenseNet(norm_init="agd")`` gives a DenseNet) and the
training dynamics (the gradient of the stored gamma is ``c`` times that of the effective one).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from optnb.models.errors import ModelOptionError, check_choice, check_finite
from optnb.models.init import init_weights
from optnb.models.scaled_norm import ScaledBatchNorm2d, chunk_scale
from optnb.theory.algorithms import cumulative_coefficients

__all__ = [
    "AGD_COEFFICIENTS",
    "NORM_INITS",
    "CifarAGDNet",
    "CifarDenseNet",
    "DenseLayer",
    "Transition",
    "agd_coefficients",
    "coefficient_table",
    "install_agd_coefficients",
    "layers_per_block",
]

AGD_COEFFICIENTS = ("agd", "ones")
#: how a DenseNet initialises the gamma of the BatchNorms that read a block's concatenation:
#: 1 everywhere (Huang et al.), or ``c_{k,j}`` on chunk ``j``, AGDNet's effective initialisation
NORM_INITS = ("standard", "agd")


def layers_per_block(depth: int) -> int:
    """Layers per dense block of a non-bottleneck DenseNet of ``depth = 3 m + 4`` (40 -> 12)."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 7 or (depth - 4) % 3:
        raise ModelOptionError(
            f"CIFAR DenseNet depth must be 3m+4 with m >= 1 (10, 22, 40, 52, 100, ...), "
            f"got {depth!r}"
        )
    return (depth - 4) // 3


def agd_coefficients(num_layers: int, beta: float | None = None) -> np.ndarray:
    """``C[k, j] = c_{k,j}`` for one dense block of ``num_layers`` layers, shape ``(m+1, m)``.

    Row ``k`` weighs the branch outputs in the input of layer ``k`` (row ``m``: the block
    output). ``beta=None`` is the theta schedule of (3); a float is AGD's constant momentum.
    """
    table = np.asarray(cumulative_coefficients(num_layers, beta), dtype=np.float64)
    if table.shape != (num_layers + 1, num_layers):
        raise RuntimeError(
            f"cumulative_coefficients({num_layers}) returned shape {table.shape}, "
            f"expected {(num_layers + 1, num_layers)}"
        )
    return table


def coefficient_table(num_layers: int, coefficients: str = "agd",
                      beta: float | None = None) -> np.ndarray:
    """:func:`agd_coefficients` for ``"agd"``, all ones (DenseNet) for ``"ones"``."""
    if coefficients == "agd":
        return agd_coefficients(num_layers, beta)
    return np.ones((num_layers + 1, max(num_layers, 1)))


def _conv(in_channels: int, out_channels: int, kernel: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False)


class DenseLayer(nn.Module):
    """BN-ReLU-Conv3x3 (-Dropout): the branch ``F_k``; its ``growth_rate`` maps are appended."""

    def __init__(self, in_channels: int, growth_rate: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.conv = _conv(in_channels, growth_rate, 3)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(F.relu(self.norm(x)))
        if self.dropout:
            out = F.dropout(out, self.dropout, self.training)
        return out


class Transition(nn.Module):
    """BN-ReLU-Conv1x1 (same width, no compression) (-Dropout)-AvgPool2x2."""

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)
        self.conv = _conv(channels, channels, 1)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(F.relu(self.norm(x)))
        if self.dropout:
            out = F.dropout(out, self.dropout, self.training)
        return F.avg_pool2d(out, 2)


class CifarDenseNet(nn.Module):
    """Huang et al.'s DenseNet for CIFAR: a 3x3 conv to ``init_channels`` (16), three dense
    blocks of ``m = (depth - 4) / 3`` layers with growth ``k``, two transitions, BN-ReLU-pool-FC.

    ``dropout`` (0.2 in the recipe without augmentation) follows each conv but the first.
    ``norm_init="agd"`` starts the consumer BatchNorms at AGDNet's effective gamma (``c_{k,j}`` on
    chunk ``j``, theta schedule): AGDNet's initialisation with DenseNet's training dynamics.
    """

    def __init__(
        self,
        depth: int = 40,
        growth_rate: int = 12,
        num_classes: int = 10,
        dropout: float = 0.0,
        init_channels: int = 16,
        in_channels: int = 3,
        norm_init: str = "standard",
    ) -> None:
        super().__init__()
        m = layers_per_block(depth)
        check_choice("norm_init", norm_init, NORM_INITS)
        for name, value in (("growth_rate", growth_rate), ("num_classes", num_classes),
                            ("init_channels", init_channels), ("in_channels", in_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModelOptionError(f"{name} must be a positive int, got {value!r}")
        dropout = check_finite("dropout", dropout)
        if not 0.0 <= dropout < 1.0:
            raise ModelOptionError(f"dropout must be in [0, 1), got {dropout!r}")
        self.depth, self.layers_per_block, self.growth_rate = depth, m, growth_rate
        self.conv0 = _conv(in_channels, init_channels, 3)
        channels, self.block_inputs = init_channels, []
        for b in range(3):
            self.block_inputs.append(channels)
            layers = [DenseLayer(channels + i * growth_rate, growth_rate, dropout) for i in range(m)]
            self.add_module(f"block{b + 1}", nn.ModuleList(layers))
            channels += m * growth_rate
            if b < 2:
                self.add_module(f"trans{b + 1}", Transition(channels, dropout))
        self.norm = nn.BatchNorm2d(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)
        self.norm_init = norm_init
        if norm_init == "agd":
            self._start_at_agd_gamma()

    def _start_at_agd_gamma(self) -> None:
        table = coefficient_table(self.layers_per_block)
        for b in range(3):
            for k, consumer in enumerate(self.consumers(b)):
                if k:  # layer 0 reads y_0 alone
                    chunks = [self.block_inputs[b]] + [self.growth_rate] * k
                    with torch.no_grad():
                        consumer.norm.weight.copy_(chunk_scale(chunks, table[k, :k].tolist()))

    def dense_blocks(self) -> Iterator[nn.ModuleList]:
        yield from (self.block1, self.block2, self.block3)

    def consumers(self, b: int) -> list[nn.Module]:
        """The modules whose input norm reads block ``b``'s concatenation: its layers, then the
        transition after it (or the head, for the last block)."""
        block = (self.block1, self.block2, self.block3)[b]
        return [*block, self.trans1 if b == 0 else self.trans2 if b == 1 else self]

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv0(x)
        for b, block in enumerate(self.dense_blocks()):
            for layer in block:
                x = torch.cat([x, layer(x)], 1)
            if b < 2:
                x = (self.trans1, self.trans2)[b](x)
        x = F.relu(self.norm(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def install_agd_coefficients(
    consumers: list[nn.Module],
    block_input: int,
    growth_rate: int,
    coefficients: str = "agd",
    beta: float | None = None,
    learnable: bool = False,
    norm_attr: str = "norm",
) -> int:
    """Replace the input BatchNorm of one dense block's consumers by :class:`ScaledBatchNorm2d`.

    ``consumers[k]`` (``k < m``) is layer ``k`` and ``consumers[m]`` the module after the block;
    each holds its input BN as ``norm_attr`` (a list of names, one per consumer, is accepted too).
    Returns the number of learnable scalars added (0 unless ``learnable``).
    """
    m = len(consumers) - 1
    names = [norm_attr] * len(consumers) if isinstance(norm_attr, str) else list(norm_attr)
    table = coefficient_table(m, coefficients, beta)
    added = 0
    for k, (module, name) in enumerate(zip(consumers, names)):
        if k == 0:
            continue  # layer 0 reads y_0 alone
        old = getattr(module, name)
        chunks = [block_input] + [growth_rate] * k
        new = ScaledBatchNorm2d(chunks, table[k, :k].tolist(), learnable, old.eps, old.momentum)
        new.to(device=old.weight.device)
        with torch.no_grad():
            for key, value in old.state_dict().items():
                getattr(new, key).copy_(value)
        setattr(module, name, new)
        added += k if learnable else 0
    return added


class CifarAGDNet(CifarDenseNet):
    """AGDNet (12) on the CIFAR DenseNet skeleton: same parameters, chunk ``j`` of layer ``k``'s
    normalised input weighted by ``c_{k,j}`` (``coefficients="agd"``) or by 1 (``"ones"``: exactly
    DenseNet). ``beta=None`` uses the theta schedule of (3); a float is AGD's constant momentum.
    ``learnable_coefficients=True`` makes the weights parameters initialised at those values;
    :attr:`num_coefficient_parameters` reports how many were added.
    """

    def __init__(
        self,
        depth: int = 40,
        growth_rate: int = 12,
        num_classes: int = 10,
        dropout: float = 0.0,
        init_channels: int = 16,
        in_channels: int = 3,
        coefficients: str = "agd",
        beta: float | None = None,
        learnable_coefficients: bool = False,
    ) -> None:
        check_choice("coefficients", coefficients, AGD_COEFFICIENTS)
        beta = None if beta is None else check_finite("beta", beta)
        if not isinstance(learnable_coefficients, bool):
            raise ModelOptionError(
                f"learnable_coefficients must be True or False, got {learnable_coefficients!r}"
            )
        super().__init__(depth, growth_rate, num_classes, dropout, init_channels, in_channels)
        self.coefficients, self.beta = coefficients, beta
        self.learnable_coefficients = learnable_coefficients
        self.num_coefficient_parameters = sum(
            install_agd_coefficients(
                self.consumers(b), self.block_inputs[b], growth_rate, coefficients, self.beta,
                learnable_coefficients,
            )
            for b in range(3)
        )

    def extra_repr(self) -> str:
        beta = "theta schedule" if self.beta is None else self.beta
        return (
            f"coefficients={self.coefficients!r}, beta={beta}, "
            f"learnable_coefficients={self.learnable_coefficients}"
        )
