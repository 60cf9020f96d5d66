"""The mixed-op edges of one search cell, per search space of paper §9 (alpha-row order).

* ``darts``, eq. (19), and ``agd``, eqs. (20)-(21): intermediate node i reads every earlier state
  (``c_{k-2}``, ``c_{k-1}`` and nodes ``0 .. i-1``): ``2 + i`` edges, 14 for 4 nodes;
* ``hb``, eq. (15): ``x_t = o1(x_{t-1}) + o2(x_{t-1}) + o(x_{t-2})``, three edges per node; node i
  (state i+2) reads state i+1 through o1 and o2 and state i through o.

The supernet (``spaces.py``), the derive rules (``derive.py``) and the figures (``plots.py``) all
read the layout from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from optnb.nas.errors import unknown

__all__ = ["SPACES", "Edge", "check_space", "node_slices", "space_edges"]

SPACES: tuple[str, ...] = ("darts", "hb", "agd")


@dataclass(frozen=True)
class Edge:
    """One mixed op of a cell: into intermediate ``node`` (state ``node + 2``) from ``source``.

    ``slot`` names the HB role (``o1``/``o2`` on x_{t-1}, ``o`` on x_{t-2}); empty otherwise.
    """

    node: int
    source: int
    slot: str = ""


def check_space(space: str) -> str:
    if space not in SPACES:
        raise unknown("search space", space, SPACES)
    return space


def space_edges(space: str, steps: int = 4) -> tuple[Edge, ...]:
    """The edges of one cell, in alpha-row order (DARTS order for darts/agd)."""
    check_space(space)
    if space == "hb":
        return tuple(e for i in range(steps) for e in (
            Edge(i, i + 1, "o1"), Edge(i, i + 1, "o2"), Edge(i, i, "o")))
    return tuple(Edge(i, j) for i in range(steps) for j in range(2 + i))


def node_slices(edges: Sequence[Edge]) -> list[slice]:
    """The contiguous row range of each node's incoming edges."""
    out, start = [], 0
    while start < len(edges):
        stop = start
        while stop < len(edges) and edges[stop].node == edges[start].node:
            stop += 1
        out.append(slice(start, stop))
        start = stop
    return out
