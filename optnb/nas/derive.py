"""Derive rules: from mixing weights to a discrete genotype (paper §9.3).

All rules read ``W = softmax(alpha)`` over **all** ops, ``none`` included (the NASLib variant that
sets ``alpha[none] = -inf`` first changes the normalisation and is not used). ``none`` is never
selected. Ties always go to the lower index (stable sorts, strict ``>``).

* ``darts`` (space ``darts``; DARTS ``Network.genotype()``): an edge j into node i scores
  ``max_{k != none} W[j, k]``; keep the 2 best edges (stable sort on the negated score, so the
  lower edge wins a tie), each with its ``argmax_{k != none}`` op (lower op index wins a tie).
  Emitted in score order.
* ``alpha_beta`` (space ``agd``, default; PC-DARTS's edge normalisation): as ``darts`` with the
  edge score ``max_{k != none} W[j, k] * p_j``, p the eq. (21) path weights: "the top-2 strongest
  non-zero operations from all previous nodes". ``beta`` ranks edges by ``p_j`` alone (the
  PC-DARTS ablation); ``darts`` ignores p.
* ``per_slot`` (space ``hb``, default): "the top-3 strongest non-zero operations from x_{k-1} and
  x_{k-2}" read as one op per slot of eq. (15): the ``argmax_{k != none}`` op of o1 and of o2 on
  x_{t-1} and of o on x_{t-2}, emitted in slot order (o1, o2, o). The HB wiring is kept.
* ``pooled`` (space ``hb``): rank all non-``none`` (op, slot) candidates of the node by weight and
  keep the best 3 (ties: slot order, then op order), emitted in rank order. Two picks may come
  from one slot, and x_{t-2} may get none or two.

The concat is all intermediate nodes, ``[2, ..., steps + 1]`` (eq. (14)), or the last node only
for the ``hb`` ablation ``cell_output="last"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from optnb.nas.edges import check_space, node_slices, space_edges
from optnb.nas.errors import NasError, unknown
from optnb.nas.genotypes import Genotype, normalize

#: space -> its derive rules, default first.
RULES: dict[str, tuple[str, ...]] = {
    "darts": ("darts",),
    "hb": ("per_slot", "pooled"),
    "agd": ("alpha_beta", "beta", "darts"),
}


def check_rule(space: str, rule: str | None) -> str:
    """``rule`` or the space's default; unknown rules raise with the valid ones."""
    valid = RULES[check_space(space)]
    if rule in (None, "", "auto"):
        return valid[0]
    if rule not in valid:
        raise unknown(f"derive rule for space {space!r}", rule, valid)
    return rule


def _as_array(weights, rows: int, cols: int, what: str) -> np.ndarray:
    arr = np.asarray(weights.detach().cpu().numpy() if hasattr(weights, "detach") else weights,
                     dtype=np.float64)
    if arr.shape != (rows, cols):
        raise NasError(f"{what} has shape {arr.shape}, expected {(rows, cols)}")
    return arr


def _best_op(row: np.ndarray, allowed: Sequence[int]) -> int:
    best = None
    for k in allowed:  # strict '>': the lower op index wins a tie
        if best is None or row[k] > row[best]:
            best = k
    return best


def derive_cell(space: str, weights, primitives: Sequence[str], steps: int = 4,
                rule: str | None = None, path_weights=None) -> list[tuple[str, int]]:
    """The ``(op, input)`` list of one cell from its ``[edges, ops]`` mixing weights."""
    rule = check_rule(space, rule)
    edges = space_edges(space, steps)
    w = _as_array(weights, len(edges), len(primitives), "weights")
    allowed = [k for k, p in enumerate(primitives) if p != "none"]
    if not allowed:
        raise NasError("every primitive is 'none': nothing to derive")
    strength = w[:, allowed].max(axis=1)  # max_{k != none} W[j, k]
    if space == "agd" and rule != "darts":
        if path_weights is None:
            raise NasError(f"derive rule {rule!r} needs the agd path weights")
        p = np.asarray(path_weights.detach().cpu().numpy() if hasattr(path_weights, "detach")
                       else path_weights, dtype=np.float64).reshape(-1)
        strength = strength * p if rule == "alpha_beta" else p
    gene: list[tuple[str, int]] = []
    for node_rows in node_slices(edges):
        rows = list(range(node_rows.start, node_rows.stop))
        if rule == "per_slot":
            picks = rows
        elif rule == "pooled":
            cands = [(r, k) for r in rows for k in allowed]
            order = sorted(range(len(cands)), key=lambda c: -w[cands[c]])  # stable
            for c in order[:3]:
                r, k = cands[c]
                gene.append((primitives[k], edges[r].source))
            continue
        else:
            picks = sorted(rows, key=lambda r: -strength[r])[:2]  # stable: lower edge wins ties
        for r in picks:
            gene.append((primitives[_best_op(w[r], allowed)], edges[r].source))
    return gene


def derive(space: str, weights_normal, weights_reduce, primitives: Sequence[str], steps: int = 4,
           rule: str | None = None, path_normal=None, path_reduce=None,
           cell_output: str = "concat") -> Genotype:
    """A validated genotype from both cells' mixing weights (see the module docstring)."""
    concat = list(range(2, 2 + steps)) if cell_output == "concat" else [steps + 1]
    normal = derive_cell(space, weights_normal, primitives, steps, rule, path_normal)
    reduce = derive_cell(space, weights_reduce, primitives, steps, rule, path_reduce)
    return normalize(Genotype(normal, concat, reduce, list(concat)), primitives)
