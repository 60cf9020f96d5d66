"""Checking runs before anything executes: notebook, parameter names, types and values.

A bad run of a long plan should fail in the first second with one line, not hours later inside a
kernel. Names are checked against ``papermill.inspect_notebook`` (what papermill will inject),
types against the notebook's literal defaults, values against ``optnb.experiments.profiles`` (the
same specs and checks ``resolve`` applies in the kernel), and the run id against
``optnb.paths.check_run_id``. ``RUN_ID`` and ``RESULTS_DIR`` are the runner's to inject: a run
that sets them is refused with the option to use instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from optnb.experiments.notebooks import NAME_PATTERN, find_notebook, notebook_parameters
from optnb.experiments.profiles import COMMON, notebook_check, notebook_spec
from optnb.experiments.runs import Run
from optnb.paths import check_run_id
from optnb.specs import ParameterError

#: parameters the runner injects itself, and how a caller sets them instead
RUNNER_SETS = {
    "RUN_ID": "the run id (optnb run --run-id; Run(notebook, parameters, run_id); plan run ids "
              "come from the parameters)",
    "RESULTS_DIR": "the results folder (optnb run/reproduce --results; results_dir=...)",
}

#: what papermill can write into a parameters cell as a Python literal
_INJECTABLE = (str, int, float, bool, type(None), list, tuple, dict)


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def check_type(stem: str, name: str, value: Any, default: Any) -> None:
    """Raise ``ParameterError`` unless ``value`` can replace the notebook's literal ``default``.

    Ints are accepted for floats and anything for a ``None`` default; bools are never ints here,
    because ``EPOCHS=True`` is a typo, not a count.
    """
    if not isinstance(value, _INJECTABLE) or (isinstance(value, float) and not math.isfinite(value)):
        raise ParameterError(
            f"{stem}: parameter {name}={value!r} cannot be injected; use str, int, finite float, "
            "bool, None, list or dict"
        )
    if default is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ParameterError(
            f"{stem}: parameter {name} expects {_type_name(default)} (the notebook's default is "
            f"{default!r}), got {_type_name(value)} {value!r}"
        )


def _has_parameters_cell(path: Path) -> bool:
    import nbformat  # deferred: a multi-second import the optnb CLI should not pay at start-up

    nb = nbformat.read(str(path), as_version=4)
    return any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells)


def validate_run(run: Run) -> tuple[Path, dict[str, Any]]:
    """Check ``run`` without executing it; returns the notebook path and its declared defaults.

    Raises ``UnknownNotebookError`` (a KeyError) or ``ParameterError`` (a ValueError) with a
    one-line message naming the problem and the valid choices.
    """
    path = find_notebook(run.notebook)
    stem = path.stem
    check_run_id(run.run_id, what=f"{stem}: run id")
    for name, instead in RUNNER_SETS.items():
        if name in run.parameters:
            raise ParameterError(f"{stem}: parameter {name} is set by the runner, not by a run's "
                                 f"parameters; give {instead}")
    declared = notebook_parameters(path)
    if not declared and not _has_parameters_cell(path):
        raise ParameterError(
            f"{stem} has no cell tagged 'parameters': papermill would inject at the top and the "
            "notebook's own values would win; tag its parameters cell"
        )
    for name, value in run.parameters.items():
        if name not in declared:
            raise ParameterError(
                f"{stem}: unknown parameter {name}; its parameters cell defines: "
                f"{', '.join(declared) or '(nothing)'}"
            )
        check_type(stem, name, value, declared[name].default)
    spec: dict[str, Any] = {}
    if NAME_PATTERN.match(path.name):  # only the suite's notebooks have a Param spec
        try:
            spec = notebook_spec(stem)
        except (ImportError, AttributeError) as err:
            raise ParameterError(f"{stem}: cannot load its parameter spec ({err})") from None
    checks = {**COMMON, **spec}
    for name, value in run.parameters.items():
        if name in checks:
            checks[name].validate(name, value)
    if spec and (together := notebook_check(stem)) is not None:
        merged = {name: p.default for name, p in declared.items()} | dict(run.parameters)
        together({name: checks[name].validate(name, v) for name, v in merged.items() if name in spec})
    return path, {name: p.default for name, p in declared.items()}


def validate_runs(runs: Iterable[Run]) -> None:
    """Validate every run (and reject two different runs sharing a run id) before anything executes."""
    seen: dict[str, Run] = {}
    for run in runs:
        validate_run(run)
        if run.run_id in seen and seen[run.run_id] != run:
            raise ParameterError(f"two different runs share the run id {run.run_id!r}")
        seen[run.run_id] = run
