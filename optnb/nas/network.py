"""Evaluation networks built from a genotype of any arity (paper §9.3, Tables 4 and 5).

``NetworkCIFAR``: the DARTS layout with C = 36 and 20 cells (reductions at cells 6 and 13),
affine BN everywhere, drop path on every op output except the (negative) identity, and an
auxiliary head after the second reduction cell (8x8x576 for C = 36) weighted 0.4 in the loss.
DARTS_V2 has 3,349,342 parameters without the auxiliary head (its head has 476,426).

``NetworkImageNet``: DARTS's mobile setting (C = 48, 14 cells, three stride-2 stem convs, input
224) for the Table 5 transfer.

Open choice recorded here (paper silent): AGD path weights are dropped at evaluation by default,
as DARTS drops its alphas; ``op_scales`` keeps them as fixed per-op scalars instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from optnb.models import count_params
from optnb.nas.genotypes import Genotype, cell_steps, normalize
from optnb.nas.operations import FactorizedReduce, ReLUConvBN, build_op, is_drop_path_exempt
from optnb.nas.spaces import ARCH_PREFIXES


def drop_masks(cells: int, ops: int, batch: int, drop_prob: float, device: torch.device,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Drop-path masks of one training step, ``[cells, ops, batch]``: each entry 0 (dropped, with
    probability p) or ``1/(1-p)`` (kept and rescaled), so ``h * mask`` has the expectation ``h``.

    Drawn outside the network's forward from the network's own generator: a compiled forward
    then takes them as an input (a ``torch.Generator`` cannot enter a graph) and the probability,
    which grows every epoch, never reaches the graph, so nothing recompiles. At ``p = 0`` the
    masks are ones and nothing is drawn."""
    if drop_prob <= 0.0:
        return torch.ones(cells, ops, batch, device=device)
    keep = 1.0 - drop_prob
    masks = torch.empty(cells, ops, batch, device=device)
    return masks.bernoulli_(keep, generator=generator).div_(keep)


def drop_path_schedule(epoch: int, epochs: int, max_prob: float = 0.2) -> float:
    """DARTS's linear ramp: ``max_prob * epoch / epochs`` (0 in the first epoch)."""
    return max_prob * epoch / max(epochs, 1)


class EvalCell(nn.Module):
    """A cell compiled from a genotype: node i sums ``arity`` ops, output = concat."""

    def __init__(self, genotype: Genotype, c_pp: int, c_p: int, c: int, reduction: bool,
                 reduction_prev: bool, exempt_negative: bool = True,
                 op_scales: Sequence[float] | None = None) -> None:
        super().__init__()
        self.reduction = reduction
        cell = "reduce" if reduction else "normal"
        ops, concat = getattr(genotype, cell), list(getattr(genotype, f"{cell}_concat"))
        self.preprocess0 = (FactorizedReduce(c_pp, c) if reduction_prev
                            else ReLUConvBN(c_pp, c, 1, 1, 0))
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0)
        self.steps = cell_steps(concat)
        self.arity = len(ops) // self.steps
        self.concat = concat
        self.multiplier = len(concat)
        self.indices = [index for _, index in ops]
        self.ops = nn.ModuleList(build_op(name, c, 2 if reduction and index < 2 else 1)
                                 for name, index in ops)
        self.exempt = [is_drop_path_exempt(op, exempt_negative) for op in self.ops]
        self.op_scales = None if op_scales is None else [float(s) for s in op_scales]

    def forward(self, s0: torch.Tensor, s1: torch.Tensor,
                drop_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``drop_mask``: ``[ops, batch]`` (one row of :func:`drop_masks`), or None: no drop path."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self.steps):
            total = None
            for j in range(self.arity * i, self.arity * (i + 1)):
                h = self.ops[j](states[self.indices[j]])
                if drop_mask is not None and not self.exempt[j]:
                    h = h * drop_mask[j].to(h.dtype).view(-1, 1, 1, 1)
                if self.op_scales is not None:
                    h = self.op_scales[j] * h
                total = h if total is None else total + h
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHeadCIFAR(nn.Module):
    """On the 8x8 output of the second reduction: ReLU, AvgPool(5, 3) -> 2x2, 1x1 conv 128, BN,
    ReLU, 2x2 conv 768, BN, ReLU, Linear."""

    def __init__(self, c: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(c, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class AuxiliaryHeadImageNet(nn.Module):
    """DARTS's ImageNet head on the 7x7 map: as CIFAR's with AvgPool(5, 2) and no BN after the
    2x2 conv (DARTS omitted it in its experiments)."""

    def __init__(self, c: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(),
            nn.AvgPool2d(5, stride=2, padding=0, count_include_pad=False),
            nn.Conv2d(c, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(),
            nn.Conv2d(128, 768, 2, bias=False), nn.ReLU(),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class _Network(nn.Module):
    """Shared cell stacking; subclasses build the stem and set ``reduction_prev``."""

    def _build(self, genotype: Genotype, c_pp: int, c_p: int, C: int, num_classes: int,
               layers: int, auxiliary: bool, reduction_prev: bool, aux_head: type,
               exempt_negative: bool, op_scales: Mapping[str, Sequence[float]] | None) -> None:
        self.genotype = normalize(genotype)
        self.layers, self.auxiliary = layers, auxiliary
        self.drop_path_prob = 0.0
        self.drop_path_generator: torch.Generator | None = None  # None: the global RNG
        self.cells = nn.ModuleList()
        c_curr, c_aux = C, None
        for i in range(layers):
            reduction = i in self.reduction_indices
            if reduction:
                c_curr *= 2
            scales = None if op_scales is None else op_scales["reduce" if reduction else "normal"]
            cell = EvalCell(self.genotype, c_pp, c_p, c_curr, reduction, reduction_prev,
                            exempt_negative, scales)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c_curr
            if i == self.aux_index:
                c_aux = c_p
        if auxiliary:
            self.auxiliary_head = aux_head(c_aux, num_classes)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    @property
    def reduction_indices(self) -> tuple[int, int]:
        return (self.layers // 3, 2 * self.layers // 3)

    @property
    def aux_index(self) -> int:
        """The auxiliary head reads the output of the second reduction cell."""
        return 2 * self.layers // 3

    def drop_masks(self, batch: int, device: torch.device) -> torch.Tensor | None:
        """This step's drop-path masks (:func:`drop_masks` at ``drop_path_prob`` from
        ``drop_path_generator``; ones at probability 0, so a compiled step keeps one graph), or
        None outside training."""
        if not self.training:
            return None
        ops = max(len(cell.ops) for cell in self.cells)
        return drop_masks(len(self.cells), ops, batch, self.drop_path_prob, device, self.drop_path_generator)

    def _cells(self, s0: torch.Tensor, s1: torch.Tensor, masks: torch.Tensor | None):
        if masks is None and self.training:
            masks = self.drop_masks(s0.shape[0], s0.device)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, None if masks is None else masks[i])
            if i == self.aux_index and self.auxiliary and self.training:
                aux = self.auxiliary_head(s1)
        return self.classifier(self.global_pooling(s1).flatten(1)), aux


class NetworkCIFAR(_Network):
    """``forward(x, drop_masks=None) -> (logits, aux_logits or None)``; aux only when training.
    ``drop_masks`` (:meth:`drop_masks`; drawn here when training and not given)."""

    def __init__(self, genotype: Genotype, C: int = 36, num_classes: int = 10, layers: int = 20,
                 auxiliary: bool = True, exempt_negative: bool = True,
                 op_scales: Mapping[str, Sequence[float]] | None = None,
                 stem_multiplier: int = 3) -> None:
        super().__init__()
        if layers < 3:
            raise ValueError(f"layers must be >= 3 (two reduction cells), got {layers}")
        c_stem = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(3, c_stem, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c_stem))
        self._build(genotype, c_stem, c_stem, C, num_classes, layers, auxiliary, False,
                    AuxiliaryHeadCIFAR, exempt_negative, op_scales)

    def forward(self, x: torch.Tensor, drop_masks: torch.Tensor | None = None):
        s = self.stem(x)
        return self._cells(s, s, drop_masks)


class NetworkImageNet(_Network):
    """DARTS's mobile ImageNet network (C = 48, 14 cells); global pooling is adaptive, which
    equals DARTS's AvgPool(7) at 224x224."""

    def __init__(self, genotype: Genotype, C: int = 48, num_classes: int = 1000, layers: int = 14,
                 auxiliary: bool = True, exempt_negative: bool = True,
                 op_scales: Mapping[str, Sequence[float]] | None = None) -> None:
        super().__init__()
        if layers < 3:
            raise ValueError(f"layers must be >= 3 (two reduction cells), got {layers}")
        self.stem0 = nn.Sequential(
            nn.Conv2d(3, C // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C // 2),
            nn.ReLU(),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(), nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C))
        self._build(genotype, C, C, C, num_classes, layers, auxiliary, True,
                    AuxiliaryHeadImageNet, exempt_negative, op_scales)

    def forward(self, x: torch.Tensor, drop_masks: torch.Tensor | None = None):
        s0 = self.stem0(x)
        return self._cells(s0, self.stem1(s0), drop_masks)


def count_parameters(model: nn.Module, exclude_auxiliary: bool = True) -> int:
    """Parameters as the paper (and DARTS's ``count_parameters_in_MB``) reports them for a cell
    network: the auxiliary head is excluded and search-space architecture parameters are never
    counted."""
    return count_params(model, skip=(*ARCH_PREFIXES, *(("auxiliary",) if exclude_auxiliary else ())))
