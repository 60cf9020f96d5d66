"""Stability of a search across seeds: do searches that differ only in the seed find the same cell?

A group is several searches of one space and initialisation (>= 2 seeds, same primitives and
cell size). For each cell kind (``normal``, ``reduce``) :func:`stability` reports:

* ``edge_tau`` (one number per edge, in [-1, 1]): Kendall's tau-b (:func:`kendall_tau`) between
  two seeds' rankings of the operations on that edge, averaged over all pairs of seeds. 1: every
  seed orders the ops of the edge the same way; 0: no relation; -1: reversed. The ranking is
  that of the **softmax weights of the last epoch** (``alpha_normal``/``alpha_reduce`` of the
  last epoch record, eq. (17)), over **all** ops, ``none`` included. A pair whose tau is
  undefined (an edge whose weights are all equal in one seed: no ranking) is left out of the
  mean; an edge with no defined pair is ``nan``. ``mean_tau``: the mean of ``edge_tau`` over
  the edges where it is defined.
* ``agreement`` (fraction of edges, in [0, 1]): edges whose chosen operation is the same in
  **every** seed. The chosen op of an edge (:func:`chosen_ops`) is the one it would contribute to
  the derived cell if kept: the argmax over the ops **other than** ``none`` (as DARTS's derive
  does, ``optnb.nas.derive``; ties go to the first op). Which edges the derive keeps is not
  considered: this compares op choices edge by edge, not genotypes.
* ``pairwise_agreement`` (fraction, in [0, 1]): the fraction of edges with equal chosen ops, for
  two seeds, averaged over all pairs of seeds (>= ``agreement``).

and, over the seeds, the size of each search's evaluation network (``params_m``, millions of
parameters, ``result.json``): min, max, mean, the **sample** standard deviation (``ddof=1``) and
``spread_m = max - min``, over the seeds whose size is known.

On embedded data (the ``smoke`` profile) a search is a few steps on a few images: there these
numbers only show the machinery works. They are a result only for searches on CIFAR-10.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from optnb.nas.edges import space_edges
from optnb.nas.errors import NasError
from optnb.nas.plots import cell_steps_from_rows, edge_labels
from optnb.nas.spaces import default_primitives
from optnb.train.callbacks import read_jsonl

__all__ = ["KINDS", "SeedSearch", "Stability", "StabilityError", "chosen_ops", "kendall_tau", "plot_edge_tau",
           "read_search", "stability"]

#: the cell kinds of a search, in the order of its log's ``alpha_<kind>`` keys
KINDS: tuple[str, ...] = ("normal", "reduce")


class StabilityError(NasError):
    """A search folder or a group of searches that cannot be compared (one line, a ``ValueError``)."""


def kendall_tau(x: Any, y: Any) -> float:
    """Kendall's tau-b of two equally long vectors, in float64; ``nan`` when undefined.

    ``tau_b = sum_{i<j} s_ij t_ij / sqrt(sum_{i<j} s_ij^2 * sum_{i<j} t_ij^2)`` with
    ``s_ij = sign(x_i - x_j)``, ``t_ij = sign(y_i - y_j)``: (concordant - discordant) pairs over
    the geometric mean of the pairs not tied in x and not tied in y (so ties count in neither).
    Undefined (``nan``) when x or y is constant (or has fewer than 2 entries).
    """
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise StabilityError(f"kendall_tau needs two vectors of one length, got shapes {a.shape} and {b.shape}")
    i, j = np.triu_indices(a.size, k=1)
    s, t = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    denominator = math.sqrt(float(np.sum(s * s)) * float(np.sum(t * t)))
    return float(np.sum(s * t)) / denominator if denominator > 0 else math.nan


def chosen_ops(alpha: Any, primitives: Sequence[str]) -> list[str]:
    """Per edge (row of ``alpha``, ``edges x ops``), the op it contributes if kept: the argmax over
    the ops other than ``none`` (ties: the first); ``none`` is never chosen, however large."""
    w = np.asarray(alpha, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != len(primitives):
        raise StabilityError(f"alphas of shape {w.shape} do not match {len(primitives)} primitives "
                             f"({', '.join(primitives)}); expected edges x {len(primitives)}")
    allowed = [k for k, p in enumerate(primitives) if p != "none"]
    if not allowed:
        raise StabilityError("every primitive is 'none': no op can be chosen")
    return [primitives[allowed[int(k)]] for k in np.argmax(w[:, allowed], axis=1)]


@dataclass(frozen=True)
class SeedSearch:
    """One finished (or stopped) search, as :func:`stability` needs it.

    ``alphas``: cell kind -> the last epoch's softmax weights (float64, edges x ops, columns in
    the order of ``primitives``); ``params_m``: its evaluation network's size in millions of
    parameters (``None`` when the run has no ``result.json`` with it); ``init``: the alpha
    initialisation (``None``: unknown).
    """

    seed: int
    space: str
    primitives: tuple[str, ...]
    alphas: Mapping[str, np.ndarray]
    params_m: float | None
    run_id: str
    init: str | None = None


def _load_result(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StabilityError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise StabilityError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_search(run_dir: str | Path) -> SeedSearch:
    """The :class:`SeedSearch` of a search run folder (``<results>/runs/<id>/``).

    From ``metrics.jsonl``: the start record (``kind`` ``search``: space, init, seed, primitives,
    ``null`` = :func:`optnb.nas.spaces.default_primitives`) and the **last** epoch record's
    ``alpha_normal``/``alpha_reduce``. From ``result.json`` (optional): ``results.params_m.value``,
    the run id, and ``parameters.SEED`` when the log has no seed. Raises :class:`StabilityError`
    for a folder without a log, start or epoch record, or with alphas of the wrong shape.
    """
    run = Path(run_dir)
    log = run / "metrics.jsonl"
    if not log.is_file():
        raise StabilityError(f"{run}: no search log (metrics.jsonl); is this a search run folder?")
    records = read_jsonl(log)
    starts = [r for r in records if r.get("kind") == "search"]
    epochs = [r for r in records if r.get("kind") == "epoch" and "alpha_normal" in r]
    if not starts:
        raise StabilityError(f"{log}: no start record (kind 'search'); is this a search log?")
    if not epochs:
        raise StabilityError(f"{log}: no epoch record with alphas; the search has not finished an epoch")
    start, last = starts[-1], epochs[-1]  # after a resume, the latest start describes the last epoch
    result = _load_result(run / "result.json")

    space = start.get("space")
    if not isinstance(space, str):
        raise StabilityError(f"{log}: the start record names no space")
    primitives = tuple(start["primitives"]) if start.get("primitives") else default_primitives(space)
    seed = start.get("seed", (result.get("parameters") or {}).get("SEED"))
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise StabilityError(f"{log}: no integer seed in the start record or result.json (got {seed!r})")

    edges = len(space_edges(space, int(start.get("steps", 4))))
    alphas = {}
    for kind in KINDS:
        try:
            w = np.asarray(last.get(f"alpha_{kind}"), dtype=np.float64)
        except (TypeError, ValueError):
            raise StabilityError(f"{log}: alpha_{kind} of epoch {last.get('epoch')} is not a numeric matrix") from None
        if w.shape != (edges, len(primitives)):
            raise StabilityError(f"{log}: alpha_{kind} of epoch {last.get('epoch')} has shape {w.shape}; "
                                 f"a {space!r} cell of {start.get('steps', 4)} nodes with "
                                 f"{len(primitives)} primitives needs ({edges}, {len(primitives)})")
        alphas[kind] = w

    size = ((result.get("results") or {}).get("params_m") or {}).get("value")
    return SeedSearch(seed=seed, space=space, primitives=primitives, alphas=alphas,
                      params_m=float(size) if isinstance(size, (int, float)) else None,
                      run_id=str(result.get("run_id") or run.name), init=start.get("init"))


def _mean_defined(values: Sequence[float]) -> float:
    """Mean of the non-nan values; nan when there are none (no RuntimeWarning)."""
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


@dataclass
class Stability:
    """Stability of one group of searches (same space and initialisation), see the module docstring.

    Per cell kind: ``edge_tau`` (edges,), ``mean_tau``, ``agreement``, ``pairwise_agreement`` and
    ``chosen`` (per seed, the chosen op of every edge). ``params_m``: per seed, as ``seeds``.
    """

    seeds: tuple[int, ...]
    space: str
    init: str | None
    primitives: tuple[str, ...]
    run_ids: tuple[str, ...]
    edge_tau: dict[str, np.ndarray]
    mean_tau: dict[str, float]
    agreement: dict[str, float]
    pairwise_agreement: dict[str, float]
    chosen: dict[str, tuple[tuple[str, ...], ...]]
    params_m: tuple[float | None, ...]

    def _known_params(self) -> np.ndarray:
        return np.asarray([p for p in self.params_m if p is not None], dtype=np.float64)

    @property
    def params_min_m(self) -> float | None:
        p = self._known_params()
        return float(p.min()) if p.size else None

    @property
    def params_max_m(self) -> float | None:
        p = self._known_params()
        return float(p.max()) if p.size else None

    @property
    def params_mean_m(self) -> float | None:
        p = self._known_params()
        return float(p.mean()) if p.size else None

    @property
    def params_std_m(self) -> float | None:
        """Sample standard deviation (``ddof=1``) of the known sizes; ``None`` for fewer than 2."""
        p = self._known_params()
        return float(p.std(ddof=1)) if p.size >= 2 else None

    @property
    def spread_m(self) -> float | None:
        """``max - min`` of the known evaluation-network sizes (millions of parameters)."""
        p = self._known_params()
        return float(p.max() - p.min()) if p.size else None

    def summary(self) -> dict[str, Any]:
        """One table row: identity, per kind the tau and agreement numbers, the size statistics."""
        row: dict[str, Any] = {"space": self.space, "init": self.init, "seeds": ",".join(map(str, self.seeds)),
                               "n_seeds": len(self.seeds)}
        for kind in KINDS:
            row[f"mean_tau_{kind}"] = self.mean_tau[kind]
            row[f"agreement_{kind} (fraction of edges)"] = self.agreement[kind]
            row[f"pairwise_agreement_{kind} (fraction of edges)"] = self.pairwise_agreement[kind]
        row.update({"params_min (M)": self.params_min_m, "params_max (M)": self.params_max_m,
                    "params_mean (M)": self.params_mean_m, "params_std (M, ddof=1)": self.params_std_m,
                    "params_spread (M)": self.spread_m})
        return row

    def rows(self) -> list[dict[str, Any]]:
        """One row per (kind, edge): its mean tau, whether all seeds choose one op, each seed's op."""
        out = []
        for kind in KINDS:
            for e, tau in enumerate(self.edge_tau[kind]):
                ops = [per_seed[e] for per_seed in self.chosen[kind]]
                row: dict[str, Any] = {"kind": kind, "edge": e, "mean_tau": float(tau), "agree": len(set(ops)) == 1}
                row.update({f"op (seed {s})": op for s, op in zip(self.seeds, ops)})
                out.append(row)
        return out

    def __str__(self) -> str:
        lines = [f"space {self.space}, init {self.init}, seeds {', '.join(map(str, self.seeds))}"]
        for kind in KINDS:
            lines.append(f"  {kind}: mean tau {self.mean_tau[kind]:+.3f}, all seeds agree on "
                         f"{self.agreement[kind]:.0%} of edges, pairs on {self.pairwise_agreement[kind]:.0%}")
        if self.params_mean_m is None:
            lines.append("  evaluation network: size unknown")
        else:
            std = "n/a" if self.params_std_m is None else f"{self.params_std_m:.3f}"
            lines.append(f"  evaluation network: {self.params_min_m:.3f}-{self.params_max_m:.3f} M "
                         f"(mean {self.params_mean_m:.3f}, sample std {std}, spread {self.spread_m:.3f})")
        return "\n".join(lines)


def stability(searches: Sequence[SeedSearch]) -> Stability:
    """The :class:`Stability` of a group of searches (>= 2 distinct seeds, one space, one
    initialisation, one primitive list, alphas of one shape); :class:`StabilityError` otherwise."""
    if len(searches) < 2:
        raise StabilityError(f"stability needs searches of at least 2 seeds, got {len(searches)}")
    seeds = [s.seed for s in searches]
    duplicates = sorted({s for s in seeds if seeds.count(s) > 1})
    if duplicates:
        raise StabilityError(f"seed {', '.join(map(str, duplicates))} appears more than once; give one search per seed")
    for name, values in (("spaces", [s.space for s in searches]), ("initialisations", [s.init for s in searches]),
                         ("primitives", [s.primitives for s in searches])):
        if len(set(values)) > 1:
            raise StabilityError(f"cannot compare searches with mixed {name}: "
                                 f"{', '.join(map(str, dict.fromkeys(values)))}; group them first")
    first = searches[0]
    for s in searches:
        if set(s.alphas) != set(KINDS):
            raise StabilityError(f"run {s.run_id}: alphas for {sorted(s.alphas)}; expected {', '.join(KINDS)}")
        for kind in KINDS:
            if np.shape(s.alphas[kind]) != np.shape(first.alphas[kind]):
                raise StabilityError(f"alpha_{kind} of seed {s.seed} has shape {np.shape(s.alphas[kind])}, of seed "
                                     f"{first.seed} {np.shape(first.alphas[kind])}; compare cells of one size")

    pairs = list(itertools.combinations(range(len(searches)), 2))
    edge_tau, mean_tau, agreement, pairwise, chosen = {}, {}, {}, {}, {}
    for kind in KINDS:
        alphas = [np.asarray(s.alphas[kind], dtype=np.float64) for s in searches]
        edges = alphas[0].shape[0]
        edge_tau[kind] = np.array([_mean_defined([kendall_tau(alphas[a][e], alphas[b][e]) for a, b in pairs])
                                   for e in range(edges)], dtype=np.float64)
        mean_tau[kind] = _mean_defined(list(edge_tau[kind]))
        ops = np.array([chosen_ops(w, first.primitives) for w in alphas], dtype=object)  # seeds x edges
        chosen[kind] = tuple(tuple(row) for row in ops)
        agreement[kind] = float(np.mean(np.all(ops == ops[0], axis=0)))
        pairwise[kind] = float(np.mean([np.mean(ops[a] == ops[b]) for a, b in pairs]))
    return Stability(seeds=tuple(seeds), space=first.space, init=first.init, primitives=first.primitives,
                     run_ids=tuple(s.run_id for s in searches), edge_tau=edge_tau, mean_tau=mean_tau,
                     agreement=agreement, pairwise_agreement=pairwise, chosen=chosen,
                     params_m=tuple(s.params_m for s in searches))


def plot_edge_tau(ax: Axes, stability_by_label: Mapping[str, Stability], kind: str = "normal") -> Axes:
    """Per group (label -> :class:`Stability`), the mean Kendall tau between seeds of every edge of
    the ``kind`` cell: one line of markers per group, a dashed line at 0 (no relation)."""
    if kind not in KINDS:
        raise StabilityError(f"unknown cell kind {kind!r}; valid choices: {', '.join(KINDS)}")
    if not stability_by_label:
        raise StabilityError("plot_edge_tau needs at least one group to plot")
    widest = 0
    for label, stab in stability_by_label.items():
        tau = stab.edge_tau[kind]
        widest = max(widest, len(tau))
        ax.plot(np.arange(len(tau)), tau, marker="o", linestyle="-", linewidth=0.8,
                label=f"{label} ({len(stab.seeds)} seeds)")
    ax.axhline(0.0, color="grey", linestyle="--", linewidth=0.8)
    groups = list(stability_by_label.values())
    spaces = {g.space for g in groups}
    if len(spaces) == 1 and all(len(g.edge_tau[kind]) == widest for g in groups):
        labels = edge_labels(space_edges(groups[0].space, cell_steps_from_rows(groups[0].space, widest)))
        ax.set_xticks(range(widest), labels, rotation=60, fontsize=7)
    else:
        ax.set_xticks(range(widest))
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel(f"edge of the {kind} cell")
    ax.set_ylabel("Kendall tau between seeds\n(mean over pairs)")
    ax.set_title(f"op ranking agreement across seeds, {kind} cell", fontsize=9)
    ax.legend(fontsize=7)
    return ax

