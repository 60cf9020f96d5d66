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
* ``beyond`` (quick and paper only; not from the paper): the variants of
  ``optnb.experiments.beyond`` and their Table 1 baselines on CIFAR-10+ and CIFAR-100+. The smoke
  profile covers them in notebook 10 instead.
* ``beyond_nas`` (not from the paper): notebook ``08b_search_stability`` over the searches of the
  Table 4 rows under ``beyond_nas.STABILITY_SEEDS`` seeds (at least ``N``; smoke: its Table 4 rows,
  2 seeds, which shows the machinery only); with quick and paper also the NAS variants of
  ``optnb.experiments.beyond_nas`` (search + evaluation, ``N`` seeds) and their Table 4 rows.

The inverse map, :func:`target_of`, turns a finished run's sidecar back into its table cell; the
tables never depend on the plan that produced a run, only on its recorded parameters.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from optnb.experiments import beyond, beyond_nas, paper, seeds
from optnb.experiments.costs import Gpu, resolve_gpu
from optnb.experiments.estimates import (
    GPU_PROFILES,
    basis,
    cost_lines,
    estimate_run_s,
    format_duration,
    run_label,
)
from optnb.experiments.notebooks import UnknownNotebookError, find_notebook
from optnb.experiments.results import run_id_for
from optnb.experiments.runner import Run, validate_runs
from optnb.experiments.targets import (
    NB_CIFAR,
    NB_EVALUATE,
    NB_IMAGENET,
    NB_SEARCH,
    P_AUGMENT,
    P_DATASET,
    P_GENOTYPE,
    P_MODEL,
    P_MODEL_OPTIONS,
    P_SEARCH_RUN,
    P_TASK,
    TORCHRUN_NOTEBOOKS,
    TRANSFER_ROWS,
    Target,
)
from optnb.specs import PROFILES

SUITES = ("notebooks", "table1", "table2", "table3", "table4", "table5", "beyond", "beyond_nas")

NOTEBOOKS_SUITE = (
    "00_tour",
    "01_forward_pass_is_gradient_descent",
    "02_momentum_networks",
    "03_activation_cost_functions",
    "04_faster_optimizer_better_network",
    "05_hbnet_agdnet",
    "10_beyond_the_paper_design",
)
SMOKE_ROWS: Mapping[str, tuple[str, ...]] = {
    "table1": ("resnet56", "hbnet56", "densenet40", "agdnet40"),
    "table2": ("resnet34", "hbnet34"),
    "table4": ("darts_1st", "hb", "hb_init", "agd"),
    "table5": ("agd",),
}
SMOKE_TABLE1_COLUMNS = ("cifar10+",)

class PlanError(ValueError):
    """A plan cannot be built or does not validate (one line naming the problem and the choices)."""


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

    def to_run(self) -> Run:
        return Run(self.notebook, dict(self.parameters), self.run_id)


@dataclass
class Plan:
    """The runs of one ``optnb reproduce`` invocation, deduplicated by run id, in stage order."""

    profile: str
    seeds: tuple[int, ...]
    suites: tuple[str, ...]
    runs: list[PlannedRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    gpu: Gpu | None = None  # the device the quick/paper estimates are for (``--gpu``)

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

    def cost(self) -> None:
        """Set each run's ``estimate_s`` (``optnb.experiments.estimates``) for ``gpu``. Deferred
        from ``build`` to the dry run: counting a step's FLOPs can take seconds per model.
        Plans read from a file keep the file's estimates."""
        if self.suites != ("plan",):
            self.runs[:] = [replace(r, estimate_s=estimate_run_s(self.profile, r.notebook, r.target,
                                                                 self.gpu)) for r in self.runs]

    def estimate_s(self, jobs: int = 1) -> float:
        """Rough wall time: each stage's runs spread over ``jobs`` workers (see :meth:`cost`)."""
        self.cost()
        total = 0.0
        for stage in self.stages():
            work = sum(r.estimate_s for r in stage)
            longest = max(r.estimate_s for r in stage)
            total += max(work / max(1, jobs), longest)
        return total

    def describe(self, jobs: int = 1) -> str:
        """The dry-run listing: one line per run plus the estimate and how it was made."""
        self.cost()
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
                    f"  {r.run_id:<46} {cell:<26} {run_label(self.profile, r.estimate_s):>11}  {params}"
                )
        lines += cost_lines(self.profile, self.runs, self.gpu)
        how = ("estimate_s of the plan file, 60 s where absent" if self.suites == ("plan",)
               else basis(self.profile, self.gpu))
        lines.append(
            f"estimate: ~{format_duration(self.estimate_s(jobs))} wall with {jobs} job(s) "
            f"({how}; rough, for planning only)"
        )
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Building plans


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
    gpu: str | None = None,
) -> Plan:
    """The plan for ``profile`` (smoke | quick | paper), the ``only`` suites and ``seeds``.

    ``seeds`` is a count (seeds 0..N-1) or explicit seeds; smoke always uses one seed.
    ``available(name)`` says whether a real dataset is present (default ``optnb.data.available``);
    a missing one is replaced by the embedded dataset and said loudly in ``plan.notes``.
    ``gpu`` (``costs.GPUS`` or ``current``; default H200) is the device the quick/paper
    estimates are for.
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
        # deferred: optnb.data imports torch, which `optnb --help` and `optnb list` never need
        from optnb import data

        available = data.available
    make_id = make_id or run_id_for
    checked = resolve_gpu(gpu) if profile in GPU_PROFILES or str(gpu).lower() != "current" else None
    plan = Plan(profile=profile, seeds=seed_list, suites=suites, gpu=checked)
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

    def beyond(self) -> None:
        """Each variant and the Table 1 rows it is read against (its baseline and ``also``), on
        the augmented ("+") columns, N seeds."""
        if self.profile == "smoke":
            self.plan.notes.append("the beyond-the-paper rows run with the quick and paper profiles; "
                                   "at smoke size notebook 10 (suite notebooks) studies them")
            return
        for column in beyond.TABLE.column_keys("error"):
            real = column.rstrip("+")
            dataset = self._dataset(real)
            if dataset == "embedded" and real != "cifar10":
                continue  # one embedded stand-in per variant is enough (as in Table 1)
            for v in beyond.VARIANTS:
                for seed in self.plan.seeds:
                    common = {P_DATASET: dataset, P_AUGMENT: True, "SEED": seed}
                    options = {P_MODEL_OPTIONS: dict(v.options)} if v.options else {}
                    self._add(NB_CIFAR, {P_MODEL: v.model, **options, **common}, "beyond",
                              Target("beyond", v.key, column))
                    for row in (v.baseline, *v.also):
                        self._add(NB_CIFAR, {P_MODEL: row, **common}, "beyond",
                                  Target("table1", row, column))

    def table2(self) -> None:
        dataset = self._dataset("imagenet")
        for model in _rows("table2", self.profile):
            for seed in self.plan.seeds:
                params = {P_MODEL: model, P_DATASET: dataset, "SEED": seed}
                self._add(NB_IMAGENET, params, "table2", Target("table2", model))

    def table3(self) -> None:
        """Table 3 needs no runs: the report checks the operation registry against the paper."""

    def _search(self, row: str, seed: int, suite: str, variant: beyond_nas.NasVariant | None = None) -> PlannedRun:
        """The search of Table 4 row ``row`` (or of ``variant``, a row of ``beyond_nas``)."""
        params = dict(seeds.search_run(row, seed, self.profile, self._dataset("cifar10")).parameters)
        params.pop("PROFILE")
        target = Target("table4", row, None, "search")
        if variant is not None:
            params.update(variant.options)
            target = Target(beyond_nas.TABLE.name, variant.key, None, "search")
        return self._add(NB_SEARCH, params, suite, target)

    def _evaluate(self, search: PlannedRun, seed: int, suite: str) -> PlannedRun:
        """The CIFAR-10 evaluation of ``search``'s genotype (its Table 4 or ``beyond_nas`` row)."""
        assert search.target is not None
        params = {P_TASK: "cifar10", P_SEARCH_RUN: search.run_id, P_GENOTYPE: "",
                  P_DATASET: self._dataset("cifar10"), "SEED": seed}
        target = Target(search.target.table, search.target.row, None, "evaluate")
        return self._add(NB_EVALUATE, params, suite, target, needs=(search.run_id,))

    def table4(self) -> None:
        for row in _rows("table4", self.profile):
            for seed in self.plan.seeds:
                self._evaluate(self._search(row, seed, "table4"), seed, "table4")

    def beyond_nas(self) -> None:
        """Notebook 08b over the Table 4 rows' searches under several seeds; with quick and paper
        also each NAS variant and the Table 4 rows it is read against (search + evaluation)."""
        count = max(beyond_nas.STABILITY_SEEDS[self.profile], len(self.plan.seeds))
        study_seeds = tuple(range(count))
        rows = _rows("table4", self.profile)
        searches = [self._search(row, s, "beyond_nas") for row in rows for s in study_seeds]
        params = {"ROWS": ",".join(rows), "SEEDS": ",".join(map(str, study_seeds)),
                  P_DATASET: self._dataset("cifar10")}
        self._add(beyond_nas.STABILITY_NOTEBOOK, params, "beyond_nas",
                  needs=tuple(r.run_id for r in searches))
        if self.profile == "smoke":
            self.plan.notes.append("the beyond-the-paper NAS variants run with the quick and paper "
                                   f"profiles; at smoke size the suite runs {beyond_nas.STABILITY_NOTEBOOK} "
                                   "only, which shows the machinery (embedded data)")
            return
        for v in beyond_nas.VARIANTS:
            for seed in self.plan.seeds:
                self._evaluate(self._search(v.search, seed, "beyond_nas", v), seed, "beyond_nas")
                for row in v.baselines:
                    self._evaluate(self._search(row, seed, "beyond_nas"), seed, "beyond_nas")

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


#: the largest plan file read, in bytes (4 MiB: 2,000 runs of 2 KB each; the paper plan with 10
#: seeds has about 530 runs of 300 bytes)
MAX_PLAN_BYTES = 4 * 1024 * 1024
#: runs in one plan file
MAX_PLAN_RUNS = 2_000
#: nesting of a plan file: plan -> runs -> run -> parameters -> a mapping value -> its items
MAX_PLAN_DEPTH = 6
#: parameters of one run (a notebook declares about a dozen)
MAX_RUN_PARAMETERS = 64
#: entries of one mapping or list parameter value (e.g. MODEL_OPTIONS)
MAX_PARAMETER_ITEMS = 64
#: characters of one string parameter value: ``optnb.nas.genotypes.MAX_TEXT_CHARS`` (a GENOTYPE
#: is the longest value a notebook takes; not imported, as optnb.nas loads torch)
MAX_PARAMETER_CHARS = 65_536
#: characters of a notebook name, parameter name, suite, run id in ``needs`` or target field
MAX_NAME_CHARS = 128


def _read_plan_text(path: str | os.PathLike) -> str:
    """At most ``MAX_PLAN_BYTES`` of ``path``, decoded; a larger file is refused unread."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_PLAN_BYTES + 1)
            size = os.fstat(handle.fileno()).st_size
    except OSError as err:
        raise PlanError(f"cannot read plan file {path}: {err}") from None
    if len(raw) > MAX_PLAN_BYTES:
        what = f"is {size:,} bytes" if size > MAX_PLAN_BYTES else f"holds more than {MAX_PLAN_BYTES:,} bytes"
        raise PlanError(f"plan file {path} {what}; the limit is {MAX_PLAN_BYTES:,} bytes (4 MiB, "
                        "optnb.experiments.plans.MAX_PLAN_BYTES)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PlanError(f"cannot read plan file {path}: not UTF-8 text ({err.reason} at byte "
                        f"{err.start})") from None


def _plan_depth(value: Any, limit: int) -> int:
    """Nesting depth of lists and dicts in ``value`` (iterative); stops once it passes ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= limit:
        item, level = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, level)
            stack.extend((c, level + 1) for c in (item.values() if isinstance(item, dict) else item))
    return deepest


def _label(key: Any) -> str:
    text = str(key)
    return text if len(text) <= 32 else f"{text[:32]}..."


def _strings(value: Any) -> Iterable[tuple[str, str]]:
    """``(where, string)`` for every string in ``value``, dict keys included (iterative).

    ``where`` is a path such as ``target.row``, ``needs[0]`` or ``target key``."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, dict):
            for key, child in item.items():
                yield f"{where} key".strip(), key
                stack.append((f"{where}.{_label(key)}".lstrip("."), child))
        elif isinstance(item, list):
            stack.extend((f"{where}[{n}]", child) for n, child in enumerate(item))


def _check_run_sizes(path: str | os.PathLike, i: int, entry: dict[str, Any]) -> None:
    """Refuse a run whose names or parameter values exceed this module's limits (one line)."""
    where = f"plan {path}: run {i}"
    params = entry.get("parameters", {})
    if isinstance(params, (dict, list)) and len(params) > MAX_RUN_PARAMETERS:
        raise PlanError(f"{where} has {len(params):,} parameters; the limit is {MAX_RUN_PARAMETERS} "
                        "(optnb.experiments.plans.MAX_RUN_PARAMETERS)")
    named = (params.items() if isinstance(params, dict)  # a list of [name, value] pairs: by index
             else ((f"#{n}", v) for n, v in enumerate(params)) if isinstance(params, list) else ())
    for name, value in named:
        if isinstance(name, str) and len(name) > MAX_NAME_CHARS:
            raise PlanError(f"{where} has a parameter name of {len(name):,} characters; the limit "
                            f"is {MAX_NAME_CHARS} (optnb.experiments.plans.MAX_NAME_CHARS)")
        if isinstance(value, (dict, list)) and len(value) > MAX_PARAMETER_ITEMS:
            raise PlanError(f"{where}: parameter {name} has {len(value):,} entries; the limit is "
                            f"{MAX_PARAMETER_ITEMS} (optnb.experiments.plans.MAX_PARAMETER_ITEMS)")
        for inner, text in _strings(value):
            if len(text) > MAX_PARAMETER_CHARS:
                inner = f".{inner}" if inner and not inner.startswith("[") else inner
                raise PlanError(f"{where}: parameter {name}{inner} is a string of {len(text):,} "
                                f"characters; the limit is {MAX_PARAMETER_CHARS:,} (the genotype "
                                "text limit, optnb.experiments.plans.MAX_PARAMETER_CHARS)")
    for inner, text in _strings({k: v for k, v in entry.items() if k != "parameters"}):
        if len(text) > MAX_NAME_CHARS:
            raise PlanError(f"{where}: {inner or 'a key'} is a string of {len(text):,} "
                            f"characters; the limit is {MAX_NAME_CHARS} "
                            "(optnb.experiments.plans.MAX_NAME_CHARS)")


def load_plan(path: str | os.PathLike, profile: str) -> Plan:
    """A plan from JSON: ``{"profile"?, "runs": [{"notebook", "parameters", "suite"?,
    "target"?: {"table", "row", "column"?, "role"?}, "needs"?: [run ids or indices],
    "estimate_s"?}]}``. Run ids come from ``results.run_id_for``; ``needs`` may name earlier
    runs by their index in the list.

    Bounded before anything is validated or run (a ``PlanError``, one line naming the limit):
    the file (``MAX_PLAN_BYTES``, read no further), its nesting (``MAX_PLAN_DEPTH``), the runs
    (``MAX_PLAN_RUNS``), each run's parameters (``MAX_RUN_PARAMETERS``), their values (strings
    up to ``MAX_PARAMETER_CHARS``, the genotype text limit; mappings and lists up to
    ``MAX_PARAMETER_ITEMS`` entries) and its other strings (``MAX_NAME_CHARS``)."""
    text = _read_plan_text(path)
    try:
        spec = json.loads(text)
    except RecursionError:
        raise PlanError(f"plan file {path} nests deeper than the JSON decoder allows; the limit is "
                        f"{MAX_PLAN_DEPTH} levels (optnb.experiments.plans.MAX_PLAN_DEPTH)") from None
    except ValueError as err:  # JSONDecodeError, or an int beyond the str-conversion limit
        raise PlanError(f"cannot read plan file {path}: {' '.join(str(err).split())[:160]}") from None
    depth = _plan_depth(spec, MAX_PLAN_DEPTH)
    if depth > MAX_PLAN_DEPTH:
        raise PlanError(f"plan file {path} nests {depth} or more levels deep; the limit is "
                        f"{MAX_PLAN_DEPTH} (optnb.experiments.plans.MAX_PLAN_DEPTH)")
    if not isinstance(spec, dict) or spec.get("profile", profile) not in PROFILES:
        raise PlanError(f"plan {path}: 'profile' must be one of {', '.join(PROFILES)}")
    entries = spec.get("runs", [])
    if not isinstance(entries, list):
        raise PlanError(f"plan {path}: 'runs' must be a list of runs, got {type(entries).__name__}")
    if len(entries) > MAX_PLAN_RUNS:
        raise PlanError(f"plan {path} has {len(entries):,} runs; the limit is {MAX_PLAN_RUNS:,} "
                        "(optnb.experiments.plans.MAX_PLAN_RUNS)")
    plan = Plan(profile=spec.get("profile", profile), seeds=(0,), suites=("plan",))
    ids: list[str] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, dict):
            _check_run_sizes(path, i, entry)
        try:
            notebook, params = str(entry["notebook"]), dict(entry.get("parameters", {}))
            needs = tuple(ids[n] if isinstance(n, int) else str(n) for n in entry.get("needs", ()))
            target = Target(**entry["target"]) if entry.get("target") else None
            estimate = float(entry.get("estimate_s", 60.0))
            if not 0.0 <= estimate < float("inf"):
                raise ValueError(f"estimate_s must be a finite number >= 0, got {estimate}")
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            raise PlanError(f"plan {path}: run {i} is malformed ({type(err).__name__}: "
                            f"{' '.join(str(err).split())[:120]}); expected notebook, parameters, "
                            "and optionally suite, target, needs (indices of earlier runs), "
                            "estimate_s") from None
        run = PlannedRun(notebook, params, run_id_for(notebook, params), entry.get("suite", "plan"),
                         target, needs, estimate)
        ids.append(run.run_id)
        plan.add(run)
    if not plan.runs:
        raise PlanError(f"plan {path} has no runs")
    return plan


def validate(plan: Plan) -> None:
    """Check every run before anything executes; drops absent tour/theory notebooks (noted).

    Raises ``PlanError`` / ``ParameterError`` (ValueErrors) or ``UnknownNotebookError`` (a
    KeyError) with a one-line message.
    """
    kept = []
    for run in plan.runs:
        if run.suite == "notebooks":
            try:
                find_notebook(run.notebook)
            except UnknownNotebookError:
                plan.notes.append(f"{run.notebook} is not in notebooks/ yet: not run")
                continue
        kept.append(run)
    plan.runs[:] = kept
    ids = {r.run_id for r in plan.runs}
    for run in plan.runs:
        missing = [n for n in run.needs if n not in ids]
        if missing:
            raise PlanError(f"run {run.run_id} needs {missing[0]}, which is not in the plan")
    plan.stages()  # raises on a cycle
    validate_runs([r.to_run() for r in plan.runs])


def torchrun_command(run: PlannedRun, nproc: int, results_dir: str | os.PathLike,
                     resume: bool = False) -> list[str]:
    """The ``torchrun ... -m optnb train`` command that executes a Table 1/2 run of a plan with
    ``nproc`` processes (DDP: NCCL on GPUs, gloo on CPUs; rank 0 writes), into the same run folder
    ``<results>/runs/<run id>/`` the notebook would use, where ``optnb train`` writes the same
    sidecar as the notebook."""
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

