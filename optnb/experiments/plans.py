"""Reproduction plans: for each paper table and profile, the notebook runs that produce it.

A plan is a list of :class:`PlannedRun` (notebook, parameters, run id, the table cell it fills, the
runs it needs first, a cost estimate). ``optnb reproduce`` validates the whole plan before anything
runs, executes it stage by stage through ``optnb.experiments.runner`` and joins the sidecars with
``optnb.experiments.paper`` in ``optnb.experiments.tables``.

Per profile (the sizes inside each run come from the notebooks' own areas, keyed by ``PROFILE``):

* ``smoke`` (2-core CPU, embedded data, one seed): a representative subset that fits the CI
  budget: Table 1 a ResNet/HBNet and a DenseNet/AGDNet pair on CIFAR-10(+); Table 2 one
  ResNet/HBNet pair; Table 4 a darts (1st order), hb, hb-init and agd search, each followed by an
  evaluation of its genotype; Table 5 one transfer (the agd genotype).
* ``quick`` / ``paper``: every reproducible row of every table with the real datasets and ``N``
  seeds (Table 1: 8 models x 4 columns; Table 2: 8 models; Table 4: 5 searches + evaluations;
  Table 5: the agd transfer and the published DARTS_V2 cell).

The inverse map, :func:`target_of`, turns a finished run's sidecar back into its table cell; the
tables never depend on the plan that produced a run, only on its recorded parameters.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optnb.experiments import paper

PROFILES = ("smoke", "quick", "paper")
SUITES = ("notebooks", "table1", "table2", "table3", "table4", "table5")

NOTEBOOKS_SUITE = (
    "00_tour",
    "01_forward_pass_is_gradient_descent",
    "02_momentum_networks",
    "03_activation_cost_functions",
    "04_faster_optimizer_better_network",
    "05_hbnet_agdnet",
)
NB_CIFAR = "06_train_cifar"
NB_IMAGENET = "07_train_imagenet"
NB_SEARCH = "08_nas_search"
NB_EVALUATE = "09_nas_evaluate"
NB_REPORT = "90_reproduce_tables"
TORCHRUN_NOTEBOOKS = (NB_CIFAR, NB_IMAGENET)  # rows `optnb reproduce --torchrun N` can launch

#: Table 4 rows produced by a search: row key -> (SPACE, INIT, ORDER). The paper does not say which
#: order the HB and AGD spaces used; their costs (0.3 / 0.4 GPU days) match DARTS's first order
#: (0.4), so first order it is (``ORDER`` is a notebook parameter if you want the other).
SEARCH_ROWS: Mapping[str, tuple[str, str, int]] = {
    "darts_1st": ("darts", "random", 1),
    "darts_2nd": ("darts", "random", 2),
    "hb": ("hb", "random", 1),
    "hb_init": ("hb", "hb", 1),
    "agd": ("agd", "random", 1),
}
#: Table 5 rows: row key -> where its genotype comes from (a Table 4 search row or a named cell).
TRANSFER_ROWS: Mapping[str, tuple[str, str]] = {
    "agd": ("search", "agd"),
    "darts_2nd": ("named", "DARTS_V2"),
}

SMOKE_ROWS: Mapping[str, tuple[str, ...]] = {
    "table1": ("resnet56", "hbnet56", "densenet40", "agdnet40"),
    "table2": ("resnet34", "hbnet34"),
    "table4": ("darts_1st", "hb", "hb_init", "agd"),
    "table5": ("agd",),
}
SMOKE_TABLE1_COLUMNS = ("cifar10+",)

# Parameter names of the notebooks (kept in sync with the notebooks; `validate` checks them).
P_MODEL, P_DATASET, P_AUGMENT = "MODEL", "DATASET", "AUGMENT"
P_SPACE, P_INIT, P_ORDER = "SPACE", "INIT", "ORDER"
P_GENOTYPE, P_SEARCH_RUN, P_TASK = "GENOTYPE", "SEARCH_RUN", "TASK"


class PlanError(ValueError):
    """A plan cannot be built or does not validate (one line naming the problem and the choices)."""


@dataclass(frozen=True)
class Target:
    """The table cell a run fills: ``column`` None means every measured column of the row."""

    table: str
    row: str
    column: str | None = None
    role: str = "train"  # train | search | evaluate | transfer


@dataclass(frozen=True)
class PlannedRun:
    """One notebook run of a plan."""

    notebook: str
    parameters: Mapping[str, Any]
    run_id: str
    suite: str
    target: Target | None = None
    needs: tuple[str, ...] = ()
    estimate_s: float = 0.0

    def to_run(self) -> Any:
        from optnb.experiments.runner import Run

        return Run(self.notebook, dict(self.parameters), self.run_id)


@dataclass
class Plan:
    """The runs of one ``optnb reproduce`` invocation, deduplicated by run id, in stage order."""

    profile: str
    seeds: tuple[int, ...]
    suites: tuple[str, ...]
    runs: list[PlannedRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, run: PlannedRun) -> None:
        if all(r.run_id != run.run_id for r in self.runs):
            self.runs.append(run)

    def stages(self) -> list[list[PlannedRun]]:
        """Runs grouped by depth so that every run comes after the runs it needs."""
        by_id = {r.run_id: r for r in self.runs}
        depth: dict[str, int] = {}

        def level(run: PlannedRun, seen: tuple[str, ...] = ()) -> int:
            if run.run_id in seen:
                raise PlanError(f"runs {' -> '.join(seen)} need each other in a cycle")
            if run.run_id not in depth:
                needed = [by_id[n] for n in run.needs if n in by_id]
                depth[run.run_id] = 1 + max((level(n, (*seen, run.run_id)) for n in needed),
                                            default=-1)
            return depth[run.run_id]

        levels = [level(r) for r in self.runs]
        return [[r for r, k in zip(self.runs, levels) if k == d]
                for d in range(max(levels, default=-1) + 1)]

    def estimate_s(self, jobs: int = 1) -> float:
        """Rough wall time: each stage's runs spread over ``jobs`` workers (see ``ESTIMATES``)."""
        total = 0.0
        for stage in self.stages():
            work = sum(r.estimate_s for r in stage)
            longest = max(r.estimate_s for r in stage)
            total += max(work / max(1, jobs), longest)
        return total

    def describe(self, jobs: int = 1) -> str:
        """The dry-run listing: one line per run plus the estimate and how it was made."""
        lines = [
            f"plan: profile={self.profile} seeds={list(self.seeds)} suites={','.join(self.suites)} "
            f"runs={len(self.runs)} jobs={jobs}"
        ]
        lines += [f"note: {n}" for n in self.notes]
        for k, stage in enumerate(self.stages()):
            lines.append(f"stage {k}: {len(stage)} run(s)")
            for r in stage:
                params = " ".join(
                    f"{k}={v}" for k, v in r.parameters.items() if k not in ("PROFILE", "LIVE")
                )
                cell = f"{r.target.table}/{r.target.row}" if r.target else r.suite
                if r.target and r.target.column:
                    cell += f"/{r.target.column}"
                lines.append(
                    f"  {r.run_id:<46} {cell:<26} ~{format_duration(r.estimate_s):>8}  {params}"
                )
        lines.append(
            f"estimate: ~{format_duration(self.estimate_s(jobs))} wall with {jobs} job(s) "
            f"({ESTIMATE_BASIS[self.profile]}; rough, for planning only)"
        )
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Cost estimates (seconds per run). smoke: measured on the shared 2-core CPU machine (a full
# `optnb reproduce --profile smoke --jobs 2`, papermill time plus ~20 s of process start-up per
# run; the NAS notebooks were then well above their one-minute target).
# paper: one H100/H200-class GPU, from notes/performance.md (targets G2-G4: CIFAR epoch times,
# NAS search/evaluation hours) times the paper's schedules (300 CIFAR epochs, 50 search epochs,
# 600 evaluation epochs; ImageNet ~90 epochs, loader-bound). quick: a tenth of paper (shortened
# schedules), at least a minute.

ESTIMATE_BASIS = {
    "smoke": "2-core CPU, smoke sizes",
    "quick": "one H100/H200-class GPU, ~1/10 of the paper's schedules",
    "paper": "one H100/H200-class GPU, the paper's schedules",
}
_SMOKE_S = {"theory": 45.0, NB_CIFAR: 55.0, NB_IMAGENET: 60.0, NB_SEARCH: 200.0,
            NB_EVALUATE: 80.0}
_CIFAR_EPOCH_S = {  # performance.md G2 targets; HB +10 %, AGD +20 %
    "resnet56": 3.0, "hbnet56": 3.3, "resnet110": 6.0, "hbnet110": 6.6,
    "densenet40": 8.0, "agdnet40": 9.6, "densenet52": 12.0, "agdnet52": 14.4,
}
_IMAGENET_H = {  # ~90 epochs, JPEG-decoding-bound on one GPU
    "resnet34": 10.0, "hbnet34": 10.5, "resnet50": 14.0, "hbnet50": 14.5,
    "resnet101": 22.0, "hbnet101": 23.0, "densenet121": 18.0, "agdnet121": 19.0,
}
_SEARCH_H = {"darts_1st": 1.5, "darts_2nd": 3.75, "hb": 1.1, "hb_init": 1.1, "agd": 1.6}
_EVALUATE_H = 6.0  # 600 epochs, 20 cells, C = 36
_TRANSFER_H = 48.0  # ImageNet mobile setting, 250 epochs
_QUICK_FRACTION = 0.1


def estimate_run_s(profile: str, notebook: str, target: Target | None) -> float:
    """Seconds one run is expected to take (see ``ESTIMATE_BASIS``)."""
    if profile == "smoke":
        return _SMOKE_S.get(notebook, _SMOKE_S["theory"])
    if target is None:  # theory notebooks do not scale with the profile much
        return 60.0
    row = target.row
    if notebook == NB_CIFAR:
        seconds = 300 * _CIFAR_EPOCH_S.get(row, 10.0)
    elif notebook == NB_IMAGENET:
        seconds = 3600 * _IMAGENET_H.get(row, 15.0)
    elif notebook == NB_SEARCH:
        seconds = 3600 * _SEARCH_H.get(row, 1.5)
    elif target.role == "transfer":
        seconds = 3600 * _TRANSFER_H
    else:
        seconds = 3600 * _EVALUATE_H
    return seconds if profile == "paper" else max(60.0, _QUICK_FRACTION * seconds)


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f}min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


# ----------------------------------------------------------------------------------------------
# Building plans


def _make_id(notebook: str, parameters: Mapping[str, Any]) -> str:
    from optnb.experiments.runner import make_run_id

    return make_run_id(notebook, dict(parameters))


def parse_only(only: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"table1,table4"`` -> ("table1", "table4"); None or "" or "all" -> every suite."""
    if only is None:
        return SUITES
    items = only.split(",") if isinstance(only, str) else list(only)
    names = [s.strip().lower() for s in items if s.strip()]
    if not names or names == ["all"]:
        return SUITES
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise PlanError(f"unknown --only entry {unknown[0]!r}; valid: all, {', '.join(SUITES)}")
    return tuple(n for n in SUITES if n in names)


def _table1_columns(profile: str) -> tuple[str, ...]:
    if profile == "smoke":
        return SMOKE_TABLE1_COLUMNS
    return paper.table("table1").column_keys("error")


def _rows(table: str, profile: str) -> tuple[str, ...]:
    if profile == "smoke":
        return SMOKE_ROWS[table]
    return tuple(r.key for r in paper.table(table).reproducible_rows)


def build(
    profile: str,
    only: str | Iterable[str] | None = None,
    seeds: int | Sequence[int] = 1,
    available: Callable[[str], bool] | None = None,
    make_id: Callable[[str, Mapping[str, Any]], str] | None = None,
) -> Plan:
    """The plan for ``profile`` (smoke | quick | paper), the ``only`` suites and ``seeds``.

    ``seeds`` is a count (seeds 0..N-1) or explicit seeds; smoke always uses one seed.
    ``available(name)`` says whether a real dataset is present (default ``optnb.data.available``);
    a missing one is replaced by the embedded dataset and said loudly in ``plan.notes``.
    """
    if profile not in PROFILES:
        raise PlanError(f"unknown profile {profile!r} for a plan; valid: {', '.join(PROFILES)}")
    suites = parse_only(only)
    seed_list = tuple(range(seeds)) if isinstance(seeds, int) else tuple(seeds)
    if not seed_list or any(not isinstance(s, int) or s < 0 for s in seed_list):
        raise PlanError(f"seeds must be a positive count or non-negative ints, got {seeds!r}")
    if profile == "smoke":
        seed_list = seed_list[:1]
    if available is None:
        from optnb import data

        available = data.available
    make_id = make_id or _make_id
    plan = Plan(profile=profile, seeds=seed_list, suites=suites)
    builder = _Builder(plan, available, make_id)
    for suite in suites:
        getattr(builder, suite)()
    return plan


class _Builder:
    def __init__(self, plan: Plan, available: Callable[[str], bool], make_id: Callable) -> None:
        self.plan, self.available, self.make_id = plan, available, make_id
        self._missing: set[str] = set()

    @property
    def profile(self) -> str:
        return self.plan.profile

    def _dataset(self, real: str) -> str:
        """The DATASET value for a run that wants ``real``: smoke -> auto (embedded)."""
        if self.profile == "smoke":
            return "auto"
        if self.available(real):
            return real
        if real not in self._missing:
            self._missing.add(real)
            self.plan.notes.append(
                f"{real} is NOT present under data/: its rows run on the EMBEDDED dataset and "
                "are not comparable with the paper"
            )
        return "embedded"

    def _add(self, notebook: str, params: dict[str, Any], suite: str,
             target: Target | None = None, needs: tuple[str, ...] = ()) -> PlannedRun:
        params = {"PROFILE": self.profile, **params}
        run = PlannedRun(
            notebook=notebook,
            parameters=params,
            run_id=self.make_id(notebook, params),
            suite=suite,
            target=target,
            needs=needs,
            estimate_s=estimate_run_s(self.profile, notebook, target),
        )
        self.plan.add(run)
        return run

    # suites --------------------------------------------------------------------------------
    def notebooks(self) -> None:
        for nb in NOTEBOOKS_SUITE:
            self._add(nb, {}, "notebooks")

    def table1(self) -> None:
        for column in _table1_columns(self.profile):
            real, augment = column.rstrip("+"), column.endswith("+")
            dataset = self._dataset(real)
            if dataset == "embedded" and real != "cifar10":
                continue  # one embedded stand-in per model is enough
            for model in _rows("table1", self.profile):
                for seed in self.plan.seeds:
                    params = {P_MODEL: model, P_DATASET: dataset, P_AUGMENT: augment, "SEED": seed}
                    self._add(NB_CIFAR, params, "table1", Target("table1", model, column))

    def table2(self) -> None:
        dataset = self._dataset("imagenet")
        for model in _rows("table2", self.profile):
            for seed in self.plan.seeds:
                params = {P_MODEL: model, P_DATASET: dataset, "SEED": seed}
                self._add(NB_IMAGENET, params, "table2", Target("table2", model))

    def table3(self) -> None:
        """Table 3 needs no runs: the report checks the operation registry against the paper."""

    def _search(self, row: str, seed: int, suite: str) -> PlannedRun:
        space, init, order = SEARCH_ROWS[row]
        params = {P_SPACE: space, P_INIT: init, P_ORDER: order,
                  P_DATASET: self._dataset("cifar10"), "SEED": seed}
        return self._add(NB_SEARCH, params, suite, Target("table4", row, None, "search"))

    def table4(self) -> None:
        for row in _rows("table4", self.profile):
            for seed in self.plan.seeds:
                search = self._search(row, seed, "table4")
                params = {P_TASK: "cifar10", P_SEARCH_RUN: search.run_id, P_GENOTYPE: "",
                          P_DATASET: self._dataset("cifar10"), "SEED": seed}
                self._add(NB_EVALUATE, params, "table4", Target("table4", row, None, "evaluate"),
                          needs=(search.run_id,))

    def table5(self) -> None:
        for row in _rows("table5", self.profile):
            source, name = TRANSFER_ROWS[row]
            for seed in self.plan.seeds:
                params: dict[str, Any] = {P_TASK: "imagenet", P_DATASET: self._dataset("imagenet"),
                                          "SEED": seed}
                needs: tuple[str, ...] = ()
                if source == "search":  # the genotype of the seed-0 search of that Table 4 row
                    search = self._search(name, self.plan.seeds[0], "table5")
                    params.update({P_SEARCH_RUN: search.run_id, P_GENOTYPE: ""})
                    needs = (search.run_id,)
                else:
                    params.update({P_SEARCH_RUN: "", P_GENOTYPE: name})
                self._add(NB_EVALUATE, params, "table5", Target("table5", row, None, "transfer"),
                          needs=needs)


# ----------------------------------------------------------------------------------------------
# From a finished run back to its table cell


def search_row(space: Any, init: Any, order: Any) -> str | None:
    """The Table 4 row of a search setting, or None when the paper has no such row."""
    for row, setting in SEARCH_ROWS.items():
        if setting == (space, init, _as_int(order)):
            return row
    return None


def _as_int(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def target_of(
    sidecar: Mapping[str, Any],
    lookup: Callable[[str], Mapping[str, Any] | None] | None = None,
) -> Target | None:
    """The table cell a run's sidecar fills, from its notebook and recorded parameters.

    ``lookup(run_id)`` returns another run's sidecar (used for evaluations that name the search
    run they took their genotype from). Runs that match no paper row return None.
    """
    notebook = Path(str(sidecar.get("notebook", ""))).stem
    params = sidecar.get("parameters") or {}
    if notebook == NB_CIFAR:
        model = params.get(P_MODEL)
        if model not in {r.key for r in paper.table("table1").reproducible_rows}:
            return None
        requested = params.get(P_DATASET)
        real = requested if requested in ("cifar10", "cifar100") else "cifar10"
        column = real + ("+" if params.get(P_AUGMENT) else "")
        return Target("table1", model, column)
    if notebook == NB_IMAGENET:
        model = params.get(P_MODEL)
        keys = {r.key for r in paper.table("table2").reproducible_rows}
        return Target("table2", model) if model in keys else None
    if notebook == NB_SEARCH:
        row = search_row(params.get(P_SPACE), params.get(P_INIT), params.get(P_ORDER))
        return Target("table4", row, None, "search") if row else None
    if notebook == NB_EVALUATE:
        return _evaluate_target(params, lookup)
    return None


def _evaluate_target(params: Mapping[str, Any], lookup: Callable | None) -> Target | None:
    transfer = params.get(P_TASK) == "imagenet"
    table, role = ("table5", "transfer") if transfer else ("table4", "evaluate")
    row = None
    search_id = params.get(P_SEARCH_RUN) or ""
    genotype = params.get(P_GENOTYPE) or ""
    if search_id and lookup is not None:
        search = lookup(search_id) or {}
        sp = search.get("parameters") or {}
        row = search_row(sp.get(P_SPACE), sp.get(P_INIT), sp.get(P_ORDER))
    elif genotype in ("DARTS_V2", "DARTS"):
        row = "darts_2nd"
    elif genotype == "DARTS_V1":
        row = "darts_1st"
    if row is None:
        return None
    keys = {r.key for r in paper.table(table).reproducible_rows}
    return Target(table, row, None, role) if row in keys else None


def torchrun_command(run: PlannedRun, nproc: int, results_dir: str | os.PathLike,
                     resume: bool = False) -> list[str]:
    """The ``torchrun ... -m optnb train`` command that executes a Table 1/2 run of a plan with
    ``nproc`` processes (DDP: NCCL on GPUs, gloo on CPUs; rank 0 writes), into the same run folder
    ``<results>/runs/<run id>/`` the notebook would use. Its ``train_result.json`` is read by
    ``optnb.experiments.tables`` like a notebook's sidecar."""
    if run.notebook not in TORCHRUN_NOTEBOOKS:
        raise PlanError(f"only Table 1/2 runs ({NB_CIFAR}, {NB_IMAGENET}) can run under torchrun, "
                        f"not {run.notebook}")
    if nproc < 1:
        raise PlanError(f"--torchrun needs at least 1 process, got {nproc}")
    p = run.parameters
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "optnb", "train",
           "--model", str(p[P_MODEL]), "--dataset", str(p.get(P_DATASET, "auto")),
           "--augment" if p.get(P_AUGMENT, True) else "--no-augment",
           "--profile", str(p.get("PROFILE", "auto")), "--seed", str(p.get("SEED", 0)),
           "--results-dir", str(results_dir), "--run-id", run.run_id, "--quiet"]
    if p.get("EPOCHS"):
        cmd += ["--epochs", str(p["EPOCHS"])]
    return cmd + (["--resume"] if resume else [])


def default_jobs(profile: str) -> int:
    """``--jobs`` when not given: both cores of a small CPU box in smoke, two runs per GPU else."""
    if profile == "smoke":
        return max(1, min(2, os.cpu_count() or 1))
    return 2

