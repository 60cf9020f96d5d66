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

**Skip cap** (``max_skip``; P-DARTS, Chen et al. 2019, ``train_search.py``: ``delete_min_sk_prob``,
``keep_1_on``, ``keep_2_branches``), normal cell only, off (``None``) by default: while the derived
normal cell holds more than ``max_skip`` skip connections (``skip_connect`` and
``neg_skip_connect``, see ``optnb.nas.collapse``), the chosen skip with the lowest weight
``W[j, skip]`` is masked out and the cell is derived again by the same rule; so that edge gets its
strongest remaining non-``none`` op, and the edge ranking of its node is recomputed (the edge may
lose its place to another edge, as in P-DARTS). A masked skip stays masked. Ties: the lower edge
row, then the lower op index, is masked first (P-DARTS: ``np.argmin`` over edges). Deviations:
P-DARTS's weights are the softmax over the 3 ops left after its progressive stages, ours over all
ops (the paper's spaces have no stages); P-DARTS counts ``skip_connect`` only (its space has no
negative identity); the agd rule re-ranks edges by W * p after masking, and the weakest skip is
still judged by W alone.

The concat is all intermediate nodes, ``[2, ..., steps + 1]`` (eq. (14)), or the last node only
for the ``hb`` ablation ``cell_output="last"``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from optnb.nas.collapse import skip_positions
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


def _best_op(row: np.ndarray, allowed: Sequence[int]) -> int | None:
    """The strongest allowed op of ``row`` not masked out (``-inf``); None when all are."""
    best = None
    for k in allowed:  # strict '>': the lower op index wins a tie
        if row[k] > -np.inf and (best is None or row[k] > row[best]):
            best = k
    return best


def _picks(space: str, w: np.ndarray, primitives: Sequence[str], steps: int, rule: str,
           path_weights, excluded: Collection[tuple[int, int]] = ()) -> list[tuple[int, int]]:
    """The chosen ``(edge row, op index)`` pairs of one cell, in genotype order; the ops in
    ``excluded`` are no candidates (the skip cap's masked skips)."""
    edges = space_edges(space, steps)
    allowed = [k for k, p in enumerate(primitives) if p != "none"]
    if not allowed:
        raise NasError("every primitive is 'none': nothing to derive")
    w = w.copy()
    for r, k in excluded:
        w[r, k] = -np.inf
    strength = w[:, allowed].max(axis=1)  # max_{k != none} W[j, k]
    if space == "agd" and rule != "darts":
        if path_weights is None:
            raise NasError(f"derive rule {rule!r} needs the agd path weights")
        p = np.asarray(path_weights.detach().cpu().numpy() if hasattr(path_weights, "detach")
                       else path_weights, dtype=np.float64).reshape(-1)
        strength = strength * p if rule == "alpha_beta" else p
    out: list[tuple[int, int]] = []
    for node_rows in node_slices(edges):
        rows = list(range(node_rows.start, node_rows.stop))
        if rule == "pooled":
            cands = [(r, k) for r in rows for k in allowed if w[r, k] > -np.inf]
            order = sorted(range(len(cands)), key=lambda c: -w[cands[c]])  # stable
            out.extend(cands[c] for c in order[:3])
            continue
        picks = rows if rule == "per_slot" else sorted(rows, key=lambda r: -strength[r])[:2]  # stable
        for r in picks:
            k = _best_op(w[r], allowed)
            if k is None:
                raise NasError(f"edge {r} has no candidate operation left (all are 'none' or capped skips)")
            out.append((r, k))
    return out


def _capped(space: str, w: np.ndarray, primitives: Sequence[str], steps: int, rule: str, path_weights,
            max_skip: int, hb_pair: bool) -> list[tuple[int, int]]:
    """P-DARTS's skip cap (see the module docstring): mask the weakest chosen skip, derive again."""
    edges = space_edges(space, steps)
    excluded: set[tuple[int, int]] = set()
    while True:
        picks = _picks(space, w, primitives, steps, rule, path_weights, excluded)
        cell = [(primitives[k], edges[r].source) for r, k in picks]
        counted = skip_positions(cell, hb_pair, len(cell) // steps, [w[rk] for rk in picks])
        if len(counted) <= max_skip:
            return picks
        excluded.add(min((picks[i] for i in counted), key=lambda rk: (w[rk], rk)))


def derive_cell(space: str, weights, primitives: Sequence[str], steps: int = 4,
                rule: str | None = None, path_weights=None, max_skip: int | None = None,
                hb_pair: bool = False) -> list[tuple[str, int]]:
    """The ``(op, input)`` list of one cell from its ``[edges, ops]`` mixing weights; at most
    ``max_skip`` skip connections when given (``None``: no cap)."""
    rule = check_rule(space, rule)
    edges = space_edges(space, steps)
    w = _as_array(weights, len(edges), len(primitives), "weights")
    if max_skip is None:
        picks = _picks(space, w, primitives, steps, rule, path_weights)
    else:
        picks = _capped(space, w, primitives, steps, rule, path_weights, max_skip, hb_pair)
    return [(primitives[k], edges[r].source) for r, k in picks]


def check_cap(space: str, max_skip: int | None, hb_pair: bool = False) -> None:
    """Refuse a negative cap, and ``hb_pair`` outside the hb space, in one line."""
    if max_skip is not None and (isinstance(max_skip, bool) or not isinstance(max_skip, int) or max_skip < 0):
        raise NasError(f"max_skip must be None (no cap) or an integer >= 0, got {max_skip!r}")
    if hb_pair and space != "hb":
        raise NasError(f"hb_pair (exempt the eq. (18) pair from the skip count) needs space 'hb', got {space!r}")


def derive(space: str, weights_normal, weights_reduce, primitives: Sequence[str], steps: int = 4,
           rule: str | None = None, path_normal=None, path_reduce=None,
           cell_output: str = "concat", max_skip: int | None = None, hb_pair: bool = False) -> Genotype:
    """A validated genotype from both cells' mixing weights (see the module docstring); the
    skip cap ``max_skip`` applies to the normal cell only, as in P-DARTS."""
    check_cap(space, max_skip, hb_pair)
    concat = list(range(2, 2 + steps)) if cell_output == "concat" else [steps + 1]
    normal = derive_cell(space, weights_normal, primitives, steps, rule, path_normal, max_skip, hb_pair)
    reduce = derive_cell(space, weights_reduce, primitives, steps, rule, path_reduce)
    return normalize(Genotype(normal, concat, reduce, list(concat)), primitives)
