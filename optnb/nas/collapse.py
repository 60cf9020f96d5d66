"""Collapse into skip connections: what counts as a skip, and the DARTS+ early-stopping rule.

DARTS-style searches drift towards parameter-free operations, skip connections above all, and the
derived cell then trains badly ("collapse"). Every search epoch records the derived genotype, its
parameter-free op count (``param_free``) and softmax(alpha) (``optnb.nas.search.arch_record``).
Two published remedies read those records:

* **the P-DARTS skip cap** (Chen et al. 2019), applied when deriving: ``optnb.nas.derive.derive(...,
  max_skip=2)`` (see ``derive.py`` for the rule);
* **the DARTS+ early stop** (Liang et al. 2019), :func:`should_stop` here: stop when the derived
  normal cell holds ``max_skip`` (2) or more skip connections, or when the ranking of the alphas
  has been stable for ``stable_epochs`` (10) epochs. :class:`EarlyStop` runs it as a ``fit``
  callback, which ends the search cleanly after the epoch (``optnb.train.callbacks.Callback.stop_reason``).

What counts as a skip (:data:`SKIP_OPS`): ``skip_connect`` **and** ``neg_skip_connect``. Both are
parameter-free identities at stride 1 (``-x`` is an identity up to sign, and the two cancel
inside one mixed op), so counting only ``skip_connect`` would let a search collapse into negative
identities unnoticed and make the cap easy to sidestep. The paper's HB initialisation (eq. (18))
puts exactly such a pair into every HB node (identity on x_{t-1}, negative identity on x_{t-2}),
so by default an HB-initialised cell starts "collapsed" in this count (8 skips in a 4-node normal
cell). ``hb_pair=True`` reads that pair as HB structure instead: in every node, one
``skip_connect`` from x_{t-1} and one ``neg_skip_connect`` from x_{t-2} are exempt (only for the
``hb`` space; further skips in the node still count).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optnb.nas.genotypes import cell_steps
from optnb.train.callbacks import Callback, read_jsonl

__all__ = ["SKIP_OPS", "EarlyStop", "count_skips", "ranking", "run_label", "search_histories", "should_stop",
           "skip_positions"]

#: the ops a skip cap and the DARTS+ rule count as skip connections (see the module docstring)
SKIP_OPS: frozenset[str] = frozenset({"skip_connect", "neg_skip_connect"})
#: per HB node, the eq. (18) pair: (op, source offset from the node's state index)
_HB_PAIR = (("skip_connect", -1), ("neg_skip_connect", -2))


def skip_positions(cell: Sequence[Sequence[Any]], hb_pair: bool = False, arity: int = 3,
                   strength: Sequence[float] | None = None) -> list[int]:
    """Positions in a genotype cell (``[(op, input), ...]``) that count as skip connections.

    With ``hb_pair`` (an hb cell of ``arity`` ops per node), one ``skip_connect`` from x_{t-1} and
    one ``neg_skip_connect`` from x_{t-2} of each node are exempt: the strongest by ``strength``
    (one number per position) when given, else the first; ties go to the first.
    """
    exempt: dict[tuple[int, str], int] = {}
    if hb_pair:
        for pos, (name, source) in enumerate(cell):
            state = 2 + pos // arity  # the node's own state index
            if any(name == op and int(source) == state + off for op, off in _HB_PAIR):
                best = exempt.get((state, name))
                if best is None or (strength is not None and strength[pos] > strength[best]):
                    exempt[(state, name)] = pos
    kept = set(exempt.values())
    return [pos for pos, (name, _) in enumerate(cell) if name in SKIP_OPS and pos not in kept]


def count_skips(cell: Sequence[Sequence[Any]], hb_pair: bool = False, arity: int = 3) -> int:
    """How many skip connections a genotype cell holds (:func:`skip_positions`)."""
    return len(skip_positions(cell, hb_pair, arity))


def ranking(weights: Any) -> tuple[tuple[int, ...], ...]:
    """Per edge (row), the op indices from strongest to weakest; ties: the lower index first."""
    w = np.asarray(weights, dtype=np.float64)
    return tuple(tuple(int(k) for k in row) for row in np.argsort(-w, axis=1, kind="stable"))


def _signature(record: dict[str, Any]) -> tuple:
    """What "the ranking of the alphas" means for DARTS+'s second criterion: the derived genotype
    (both cells) and the order of all operations on every edge of both cells."""
    g = record["genotype"]
    cells = tuple(tuple((str(n), int(i)) for n, i in g[c]) for c in ("normal", "reduce"))
    return cells, ranking(record["alpha_normal"]), ranking(record["alpha_reduce"])


def should_stop(history: Sequence[dict[str, Any]], max_skip: int | None = 2, stable_epochs: int | None = 10,
                hb_pair: bool = False, after_epoch: int = 0) -> str | None:
    """The DARTS+ early-stopping rule over a search's epoch records; the reason to stop, or None.

    1. the derived normal cell of the last record holds ``max_skip`` or more skip connections
       (:func:`count_skips`; ``None`` turns this criterion off);
    2. the ranking (:func:`_signature`: derived genotype and per-edge op order of both cells) has
       not changed over the last ``stable_epochs`` epochs, i.e. the last ``stable_epochs + 1``
       records share it (``None`` or 0 turns this criterion off).

    Records without a genotype (step records, other kinds) are ignored, and so are the first
    ``after_epoch`` epochs (architecture warm-up: alphas that do not move are trivially "stable",
    and the initial cell is not the search's doing).
    """
    records = [r for r in history if isinstance(r, dict) and "genotype" in r
               and r.get("epoch", after_epoch + 1) > after_epoch]
    if not records:
        return None
    last = records[-1]
    epoch = last.get("epoch", len(records))
    if max_skip is not None:
        normal = last["genotype"]["normal"]
        n = count_skips(normal, hb_pair, arity=len(normal) // cell_steps(last["genotype"]["normal_concat"]))
        if n >= max_skip:
            return (f"darts+: the derived normal cell holds {n} skip connections (>= {max_skip}) "
                    f"at epoch {epoch}")
    if stable_epochs and len(records) > stable_epochs:
        window = records[-(stable_epochs + 1):]
        first = _signature(window[0])
        if all(_signature(r) == first for r in window[1:]):
            return (f"darts+: the ranking of the alphas has been stable for {stable_epochs} epochs "
                    f"(epochs {window[0].get('epoch', '?')}-{epoch})")
    return None


class EarlyStop(Callback):
    """A ``fit`` callback that ends a search by :func:`should_stop` after the epoch it fires in.

    ``fit`` then writes the epoch's record with ``stopped_early`` = the reason, keeps the
    checkpoint, and a resume of the run trains no further epoch.
    """

    def __init__(self, max_skip: int | None = 2, stable_epochs: int | None = 10, hb_pair: bool = False,
                 after_epoch: int = 0) -> None:
        self.max_skip, self.stable_epochs, self.hb_pair = max_skip, stable_epochs, hb_pair
        self.after_epoch = after_epoch

    def stop_reason(self, history: Sequence[dict[str, Any]]) -> str | None:
        return should_stop(history, self.max_skip, self.stable_epochs, self.hb_pair, self.after_epoch)


def run_label(records: Sequence[dict[str, Any]], fallback: str = "run") -> str:
    """``"space hb, init hb, seed 0"`` from a search's log (its start record holds the run's identity)."""
    start = next((r for r in records if "space" in r and "init" in r), None)
    if start is None:
        return fallback
    return f"space {start['space']}, init {start['init']}" + (f", seed {start['seed']}" if "seed" in start else "")


def search_histories(runs_dir: str | Path, like: Mapping[str, Any] | None = None) -> dict[str, list[dict[str, Any]]]:
    """``label -> records`` of every search log (``<run>/metrics.jsonl``) under ``runs_dir`` whose
    start record matches ``like`` (e.g. ``{"C": 16, "layers": 8}``: runs of one size), labelled
    by space and initialisation (plus the run folder where two runs share a label). A search with
    no finished epoch yet (one running beside this one, still in its first epoch) is left out."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(Path(runs_dir).glob("*/metrics.jsonl")):
        records = read_jsonl(path)
        start = next((r for r in records if "space" in r and "init" in r), None)
        if start is None or any(start.get(k) != v for k, v in (like or {}).items()):
            continue
        if not any(r.get("kind") == "epoch" and "param_free" in r for r in records):
            continue
        label = run_label(records)
        out[label if label not in out else f"{label} ({path.parent.name})"] = records
    return out
