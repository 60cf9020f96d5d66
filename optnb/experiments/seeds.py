"""The searches of one Table 4 row under several seeds: their runs, finding them, running the rest.

Notebook ``08b_search_stability`` compares the searches of a row (space, initialisation, order;
``targets.SEARCH_ROWS``) under several seeds. A search is a notebook-08 run; :func:`search_run`
is that run, with the parameters and run id the reproduction plans use too, so a search started
here, by ``optnb reproduce`` or by ``optnb search`` is never repeated. :func:`find_searches`
reads the finished searches out of a results folder by their recorded parameters (however they
were started), and :func:`run_missing` runs the others through the parallel runner of
``optnb reproduce`` (``runner.run_many``: worker processes, resumable, one owner per folder).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from optnb.experiments import runner, targets
from optnb.experiments.results import read_sidecars
from optnb.experiments.runs import Run, RunResult
from optnb.paths import run_dir
from optnb.specs import ParameterError

__all__ = ["SeedsError", "ensure_searches", "find_searches", "missing", "parse_rows", "parse_seeds", "run_missing",
           "search_run"]

#: seeds one stability study compares at most (each is a full search)
MAX_SEEDS = 16


class SeedsError(ParameterError):
    """A row or seed list that names nothing valid (one line naming the valid choices)."""


def parse_rows(rows: str | Sequence[str]) -> tuple[str, ...]:
    """``"darts_1st, hb"`` -> ``("darts_1st", "hb")``: Table 4 search rows, each once."""
    items = rows.split(",") if isinstance(rows, str) else list(rows)
    names = tuple(dict.fromkeys(str(r).strip() for r in items if str(r).strip()))
    valid = ", ".join(targets.SEARCH_ROWS)
    if not names:
        raise SeedsError(f"no search row given; valid rows: {valid}")
    for name in names:
        if name not in targets.SEARCH_ROWS:
            raise SeedsError(f"unknown search row {name!r}; valid rows: {valid}")
    return names


def parse_seeds(seeds: str | Sequence[int]) -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)``: at least two different seeds (a comparison needs two), at
    most :data:`MAX_SEEDS`, each a non-negative int."""
    items = str(seeds).split(",") if isinstance(seeds, str) else list(seeds)
    try:
        values = tuple(int(str(s).strip()) for s in items if str(s).strip())
    except ValueError:
        raise SeedsError(f"seeds must be ints separated by commas (e.g. '0,1,2,3'), got {seeds!r}") from None
    if any(v < 0 for v in values) or len(set(values)) != len(values):
        raise SeedsError(f"seeds must be different non-negative ints, got {seeds!r}")
    if not 2 <= len(values) <= MAX_SEEDS:
        raise SeedsError(f"a stability study compares 2 to {MAX_SEEDS} seeds, got {len(values)} ({seeds!r})")
    return values


def search_run(row: str, seed: int, profile: str, dataset: str = "auto") -> Run:
    """The notebook-08 run that searches Table 4 row ``row`` with ``seed`` (the plans' run id)."""
    space, init, order = targets.SEARCH_ROWS[row]
    params = {"PROFILE": profile, targets.P_SPACE: space, targets.P_INIT: init,
              targets.P_ORDER: order, targets.P_DATASET: dataset, "SEED": seed}
    return Run(targets.NB_SEARCH, params)


def find_searches(rows: Sequence[str], seeds: Sequence[int], profile: str, dataset: str,
                  results_dir: str | os.PathLike | None = None,
                  sidecars: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dict[int, str]]:
    """``row -> seed -> run id`` of the complete searches of ``rows`` and ``seeds`` under the
    (effective) ``profile`` on ``dataset`` (``embedded``, ``cifar10``, ...) with the profile's
    epochs. A search fills a row only with the row's own settings and no option beyond the paper
    (``targets.target_of``); of two such runs of one seed, the later finished one counts."""
    all_sc = sidecars if sidecars is not None else read_sidecars(results_dir)
    found: dict[str, dict[int, tuple[str, str]]] = {row: {} for row in rows}
    for run_id, sc in all_sc.items():
        target = targets.target_of(sc)
        params = sc.get("parameters") or {}
        seed = params.get("SEED")
        if (sc.get("status") != "complete" or target is None or target.table != "table4"
                or target.row not in found or seed not in seeds or params.get("EPOCHS", 0)
                or sc.get("profile") != profile or sc.get("dataset") != dataset):
            continue
        finished = str(sc.get("finished") or "")
        if seed not in found[target.row] or finished > found[target.row][seed][1]:
            found[target.row][seed] = (run_id, finished)
    return {row: {s: found[row][s][0] for s in sorted(found[row])} for row in rows}


def missing(found: Mapping[str, Mapping[int, str]], rows: Sequence[str], seeds: Sequence[int]) -> list[tuple[str, int]]:
    """The ``(row, seed)`` pairs :func:`find_searches` did not find."""
    return [(row, seed) for row in rows for seed in seeds if seed not in found.get(row, {})]


def run_missing(pairs: Sequence[tuple[str, int]], profile: str, dataset: str = "auto", jobs: int = 1,
                results_dir: str | os.PathLike | None = None,
                log: Callable[[str], None] | bool | None = None) -> list[RunResult]:
    """Search each ``(row, seed)`` as its notebook-08 run, ``jobs`` at a time, through the runner
    of ``optnb reproduce`` (resumes an interrupted search; skips a complete one)."""
    runs = [search_run(row, seed, profile, dataset) for row, seed in pairs]
    return runner.run_many(runs, jobs=jobs, results_dir=results_dir, log=log) if runs else []


def ensure_searches(rows: Sequence[str], seeds: Sequence[int], profile: str, dataset: str,
                    requested_dataset: str = "auto", run: bool = True, jobs: int = 1,
                    results_dir: str | os.PathLike | None = None,
                    log: Callable[[str], None] | bool | None = None) -> dict[str, dict[int, Path]]:
    """``row -> seed -> run folder`` of every search of ``rows`` x ``seeds``: those found in the
    results folder (:func:`find_searches`; ``dataset`` is the effective one, e.g. ``embedded``),
    and with ``run`` the others, searched first (:func:`run_missing`, with ``DATASET=
    requested_dataset``). A search still missing is a ``SeedsError`` naming it and how to run it."""
    found = find_searches(rows, seeds, profile, dataset, results_dir)
    todo = missing(found, rows, seeds)
    failed: list[str] = []
    if todo and run:
        done = run_missing(todo, profile, requested_dataset, jobs, results_dir, log)
        failed = [f"{r.run.run_id}: {(r.error or 'failed').splitlines()[0]}" for r in done if not r.ok]
        found = find_searches(rows, seeds, profile, dataset, results_dir)
        todo = missing(found, rows, seeds)
    if todo:
        first_row, _ = todo[0]
        space, init, order = targets.SEARCH_ROWS[first_row]
        wanted = ", ".join(f"{row} seed {seed}" for row, seed in todo)
        how = (f"{len(failed)} search(es) failed ({'; '.join(failed)[:300]})" if failed else
               "run them first, e.g. optnb search --space "
               f"{space} --init {init} --order {order} --profile {profile} --seeds "
               f"{','.join(str(s) for r, s in todo if r == first_row)} (or set RUN_MISSING = True)")
        raise SeedsError(f"no complete {profile} search on {dataset} data for {wanted}: {how}")
    return {row: {seed: run_dir(rid, results_dir, create=False) for seed, rid in by_seed.items()}
            for row, by_seed in found.items()}
