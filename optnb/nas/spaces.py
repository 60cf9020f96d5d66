"""The search spaces of paper §9 and the DARTS search supernet that hosts them.

Three spaces share DARTS's macro layout (stem Conv3x3(3 -> 3C) + BN, reduction cells at
``layers//3`` and ``2*layers//3``, ``preprocess0/1``, ``affine=False`` BN in cells, 4 intermediate
nodes, output = concat of the nodes, eq. (14)):

* ``darts``, eq. (19): node t sums a mixed op (16)-(17) over every predecessor (14 edges);
* ``hb``, eq. (15): ``x_t = o1(x_{t-1}) + o2(x_{t-1}) + o(x_{t-2})``, three mixed ops per node
  (12 per cell). In DARTS indices node i (state i+2) reads state i+1 through o1 and o2 and state
  i through o; node 0 reads c_{k-1} twice and c_{k-2} once;
* ``agd``, eqs. (20)-(21): as ``darts`` with path weights ``p_it = softmax_{i<t}(beta_it)``
  multiplying each incoming edge. The betas are called ``edge_logits`` here (beta already names
  the HB momentum and Adam's coefficients).

Alphas (one ``edges x ops`` matrix per cell type, shared by all cells of that type) and edge logits
are ``nn.Parameter``s of the supernet, so they are in ``state_dict()``, checkpoints and DDP.
Mixing weights are the softmax over all ops, ``none`` included (eq. (17)). The edge layout of each
space is ``edges.py``; ``SearchNetwork.genotype`` applies the derive rules of ``derive.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from optnb.nas.derive import derive
from optnb.nas.edges import SPACES, Edge, check_space, node_slices, space_edges
from optnb.nas.errors import NasError, unknown
from optnb.nas.genotypes import Genotype
from optnb.nas.grouped import grouped_mixed
from optnb.nas.operations import (
    DARTS_PRIMITIVES,
    PRIMITIVES,
    FactorizedReduce,
    ReLUConvBN,
    build_search_op,
    check_op,
)
from optnb.nas.partial import (
    bypass,
    check_edge_normalization,
    check_partial_channels,
    edge_softmax,
    merge,
    split_channels,
)

# SPACES and check_space live in edges.py; they are part of this module's API too (the search
# configuration validates its space here).
__all__ = [
    "ARCH_PREFIXES",
    "CELL_OUTPUTS",
    "INITS",
    "SPACES",
    "MixedOp",
    "SearchCell",
    "SearchNetwork",
    "check_space",
    "default_primitives",
    "init_alphas",
]

INITS: tuple[str, ...] = ("random", "zeros", "hb")
CELL_OUTPUTS: tuple[str, ...] = ("concat", "last")
ARCH_PREFIXES: tuple[str, ...] = ("alphas_", "edge_logits_")


def default_primitives(space: str) -> tuple[str, ...]:
    """DARTS's 8 ops for the ``darts`` baseline; the paper's 9 (Table 3) for ``hb`` and ``agd``."""
    return DARTS_PRIMITIVES if check_space(space) == "darts" else PRIMITIVES


def init_alphas(space: str, primitives: Sequence[str], steps: int = 4, init: str = "random",
                scale: float = 1e-3, hb_init_logit: float = 5.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Initial alphas ``[edges, ops]``.

    * ``random``: ``scale * randn`` (DARTS; practically the paper's "zero initialization" of
      §9.3, but seed-dependent); ``zeros``: exactly zero.
    * ``hb`` (``hb`` space only), eq. (18): HBNet as the initial point. o2's weights should be
      one-hot on the identity and o's on the negative identity. A softmax cannot be exactly
      one-hot, so those two logits get a bias ``b = hb_init_logit`` on top of the random init;
      with K ops the weight starts at ``e^b / (e^b + K - 1)`` (9 ops: b=3 -> 0.72, 5 -> 0.95,
      7 -> 0.99). o1 stays random. Adam moves a logit by about lr per step whatever the gradient,
      so ~20k steps at 3e-4 can undo b up to ~6: the default b = 5 is near one-hot and can still
      move. Applied to normal and reduction cells alike.
    """
    if init not in INITS:
        raise unknown("alpha init", init, INITS)
    edges = space_edges(space, steps)
    shape = (len(edges), len(primitives))
    if init == "zeros":
        return torch.zeros(shape)
    alphas = scale * torch.randn(shape, generator=generator)
    if init == "hb":
        if space != "hb":
            raise NasError(f"init='hb' needs space='hb' (eq. 18), got space={space!r}; "
                           f"valid inits for {space!r}: random, zeros")
        missing = {"skip_connect", "neg_skip_connect"} - set(primitives)
        if missing:
            raise NasError(f"init='hb' needs the ops {sorted(missing)} in the primitives")
        identity, negative = primitives.index("skip_connect"), primitives.index("neg_skip_connect")
        for row, edge in enumerate(edges):
            if edge.slot == "o2":
                alphas[row, identity] += hb_init_logit
            elif edge.slot == "o":
                alphas[row, negative] += hb_init_logit
    return alphas


class MixedOp(nn.Module):
    """Eq. (16): ``sum_o w_o * o(x)`` over the candidates. ``none`` is never computed (it adds
    exactly zero) unless ``skip_none=False`` is passed, as the original DARTS code does."""

    def __init__(self, channels: int, stride: int, primitives: Sequence[str],
                 track_running_stats: bool = True) -> None:
        super().__init__()
        self.primitives = tuple(check_op(p) for p in primitives)
        self.stride = stride
        self.ops = nn.ModuleList(
            build_search_op(p, channels, stride, track_running_stats) for p in self.primitives)
        self.active = tuple(k for k, p in enumerate(self.primitives) if p != "none")

    def forward(self, x: torch.Tensor, weights: torch.Tensor, skip_none: bool = True) -> torch.Tensor:
        out = None
        for k in self.active if skip_none else range(len(self.ops)):
            term = weights[k] * self.ops[k](x)
            out = term if out is None else out + term
        return out


class SearchCell(nn.Module):
    """One supernet cell. ``grouped=True`` batches the out-edges of each state (``grouped.py``);
    the result equals the per-edge loop. ``partial_channels = K > 1``: the mixed ops are built
    for ``C/K`` channels and see the first ``C/K`` channels of their input, the rest bypasses
    them (``partial.py``, PC-DARTS)."""

    def __init__(self, edges: Sequence[Edge], primitives: Sequence[str], multiplier: int,
                 c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool,
                 track_running_stats: bool = True, grouped: bool = True,
                 partial_channels: int = 1) -> None:
        super().__init__()
        t = track_running_stats
        self.reduction = reduction
        self.grouped = grouped
        self.partial_channels = k = check_partial_channels(partial_channels, c)
        self.edges = tuple(edges)
        self.steps = 1 + max(e.node for e in self.edges)
        self.multiplier = multiplier
        if reduction_prev:
            self.preprocess0 = FactorizedReduce(c_pp, c, affine=False, track=t)
        else:
            self.preprocess0 = ReLUConvBN(c_pp, c, 1, 1, 0, affine=False, track=t)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0, affine=False, track=t)
        self.ops = nn.ModuleList(
            MixedOp(c // k, 2 if reduction and e.source < 2 else 1, primitives, t) for e in self.edges)
        sources = sorted({e.source for e in self.edges})
        self._out_edges = {s: [i for i, e in enumerate(self.edges) if e.source == s] for s in sources}
        for s, idx in self._out_edges.items():
            self.register_buffer(f"_index_{s}", torch.tensor(idx), persistent=False)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                skip_none: bool = True, edge_scale: torch.Tensor | None = None) -> torch.Tensor:
        """``weights`` [edges, ops]: mixing weights (already scaled by path weights in the
        ``path`` edge normalisation); ``edge_scale`` [edges]: PC-DARTS's edge weights, which
        multiply each edge's whole output, bypass included (``edge``)."""
        k = self.partial_channels
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        nodes: list[torch.Tensor | None] = [None] * self.steps
        for s in range(2 + self.steps):
            if s >= 2:
                states.append(nodes[s - 2])
            idx = self._out_edges.get(s)
            if not idx:
                continue
            x, rest = split_channels(states[s], k) if k > 1 else (states[s], None)
            if self.grouped and skip_none and len(idx) > 1:
                w = weights.index_select(0, getattr(self, f"_index_{s}"))
                outs = grouped_mixed(x, [self.ops[i] for i in idx], w).unbind(1)
            else:
                outs = [self.ops[i](x, weights[i], skip_none) for i in idx]
            if rest is not None:  # every out-edge of a state shares its stride, so its bypass
                rest = bypass(rest, self.ops[idx[0]].stride)
                outs = [merge(out, rest, k) for out in outs]
            for i, out in zip(idx, outs):
                if edge_scale is not None:
                    out = edge_scale[i] * out
                node = self.edges[i].node
                nodes[node] = out if nodes[node] is None else nodes[node] + out
        return torch.cat(states[-self.multiplier:], dim=1)


class SearchNetwork(nn.Module):
    """The supernet: C=16, 8 cells, 10 classes, 8 ops has 1,930,618 weights (DARTS golden).

    ``forward(x)`` returns logits. ``detach_arch=True`` computes the mixing weights without a
    graph (the weight step, which needs no architecture gradients).

    PC-DARTS (``partial.py``): ``partial_channels = K`` sends ``C/K`` channels of every edge
    through its mixed op (``K = 1``, the default, is the full supernet, same parameter names);
    ``edge_normalization`` (``auto``: ``path`` for agd, ``off`` otherwise; ``edge``: PC-DARTS's
    edge weights scaling the whole edge output) adds ``edge_logits_normal/reduce`` to darts and hb.
    """

    def __init__(self, space: str = "darts", C: int = 16, num_classes: int = 10, layers: int = 8,
                 primitives: Sequence[str] | None = None, steps: int = 4,
                 cell_output: str = "concat", stem_multiplier: int = 3,
                 track_running_stats: bool = True, grouped: bool = True,
                 partial_channels: int = 1, edge_normalization: str = "auto") -> None:
        super().__init__()
        self.space = check_space(space)
        self.partial_channels = check_partial_channels(partial_channels, C)
        self.edge_normalization = check_edge_normalization(self.space, edge_normalization)
        self.primitives = tuple(check_op(p) for p in (primitives or default_primitives(space)))
        if cell_output not in CELL_OUTPUTS:
            raise unknown("cell output", cell_output, CELL_OUTPUTS)
        if layers < 3:
            raise NasError(f"layers must be >= 3 (two reduction cells at layers//3 and "
                           f"2*layers//3), got {layers}")
        self.C, self.num_classes, self.layers, self.steps = C, num_classes, layers, steps
        self.cell_output = cell_output
        self.multiplier = steps if cell_output == "concat" else 1
        self.edges = space_edges(space, steps)
        self.node_slices = node_slices(self.edges)
        self.skip_none = True
        c_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(3, c_curr, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in self.reduction_indices
            if reduction:
                c_curr *= 2
            cell = SearchCell(self.edges, self.primitives, self.multiplier, c_pp, c_p, c_curr,
                              reduction, reduction_prev, track_running_stats, grouped,
                              self.partial_channels)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, self.multiplier * c_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)
        shape = (len(self.edges), len(self.primitives))
        self.alphas_normal = nn.Parameter(torch.zeros(shape))
        self.alphas_reduce = nn.Parameter(torch.zeros(shape))
        if self.edge_normalization != "off":
            self.edge_logits_normal = nn.Parameter(torch.zeros(len(self.edges)))
            self.edge_logits_reduce = nn.Parameter(torch.zeros(len(self.edges)))

    @property
    def reduction_indices(self) -> tuple[int, int]:
        return (self.layers // 3, 2 * self.layers // 3)

    # ---------------------------------------------------------------- architecture parameters
    def arch_parameters(self) -> list[nn.Parameter]:
        """Alphas (normal, reduce), then AGD edge logits (normal, reduce) when present."""
        return [p for n, p in self.named_parameters() if n.startswith(ARCH_PREFIXES)]

    def named_weight_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return ((n, p) for n, p in self.named_parameters() if not n.startswith(ARCH_PREFIXES))

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for _, p in self.named_weight_parameters()]

    def init_arch(self, init: str = "random", scale: float = 1e-3, hb_init_logit: float = 5.0,
                  generator: torch.Generator | None = None) -> None:
        """(Re)initialise alphas (and edge logits, like a random alpha row) in place."""
        with torch.no_grad():
            for p in (self.alphas_normal, self.alphas_reduce):
                p.copy_(init_alphas(self.space, self.primitives, self.steps, init, scale,
                                    hb_init_logit, generator))
            if self.has_edge_logits:  # edge logits (beta, eq. 21) start like a random alpha row
                for p in (self.edge_logits_normal, self.edge_logits_reduce):
                    if init == "zeros":
                        p.zero_()
                    else:
                        p.copy_(scale * torch.randn(p.shape, generator=generator))

    @property
    def has_edge_logits(self) -> bool:
        return self.edge_normalization != "off"

    def path_weights(self, kind: str = "normal") -> torch.Tensor | None:
        """Eq. (21) / PC-DARTS: per-node softmax of the edge logits (``None`` without them)."""
        if not self.has_edge_logits:
            return None
        return edge_softmax(getattr(self, f"edge_logits_{kind}"), self.node_slices)

    def mixing_weights(self, kind: str = "normal") -> torch.Tensor:
        """Eq. (17) softmax over all ops, times the eq. (21) path weight of each edge when the
        edge normalisation is ``path`` (the agd default).

        Scaling the weights of an edge by p equals scaling its mixed-op output (eq. 20); with
        partial channels it leaves the bypass unscaled (``edge`` scales it too).
        """
        weights = F.softmax(getattr(self, f"alphas_{kind}"), dim=-1)
        if self.edge_normalization != "path":
            return weights
        return weights * self.path_weights(kind).unsqueeze(1)

    def edge_scale(self, kind: str = "normal") -> torch.Tensor | None:
        """PC-DARTS's edge weights multiplying each edge's output (``edge`` mode), else ``None``."""
        return self.path_weights(kind) if self.edge_normalization == "edge" else None

    def forward(self, x: torch.Tensor, detach_arch: bool = False) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not detach_arch):
            arch = {kind: (self.mixing_weights(kind), self.edge_scale(kind))
                    for kind in ("normal", "reduce")}
        arch = {kind: tuple(None if t is None else t.to(x.dtype) for t in pair)
                for kind, pair in arch.items()}
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            weights, scale = arch["reduce" if cell.reduction else "normal"]
            s0, s1 = s1, cell(s0, s1, weights, self.skip_none, edge_scale=scale)
        return self.classifier(self.global_pooling(s1).flatten(1))

    # ---------------------------------------------------------------- derived architecture
    def arch_state(self) -> dict[str, torch.Tensor]:
        """softmax(alpha) per cell type and the AGD path weights, detached, on the CPU."""
        with torch.no_grad():
            out = {f"alpha_{k}": F.softmax(getattr(self, f"alphas_{k}").float(), -1).cpu()
                   for k in ("normal", "reduce")}
            if self.has_edge_logits:
                out.update({f"path_{k}": self.path_weights(k).float().cpu()
                            for k in ("normal", "reduce")})
        return out

    def genotype(self, rule: str | None = None, max_skip: int | None = None, hb_pair: bool = False) -> Genotype:
        """The discrete cell of paper §9.3 by the space's derive rule (see ``derive.py``), with at
        most ``max_skip`` skip connections in the normal cell when given (P-DARTS's cap)."""
        state = self.arch_state()
        normal, reduce = state["alpha_normal"], state["alpha_reduce"]
        if self.space != "agd" and self.has_edge_logits:
            # PC-DARTS's genotype(): each edge's row times its edge weight, then the space's rule
            # (darts: edges ranked by max W*p; hb per_slot: unchanged, pooled: ranked by W*p)
            normal = normal * state["path_normal"].unsqueeze(1)
            reduce = reduce * state["path_reduce"].unsqueeze(1)
        return derive(self.space, normal, reduce, self.primitives,
                      steps=self.steps, rule=rule, path_normal=state.get("path_normal"),
                      path_reduce=state.get("path_reduce"), cell_output=self.cell_output,
                      max_skip=max_skip, hb_pair=hb_pair)

