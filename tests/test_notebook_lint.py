"""Structure lint for every ``notebooks/NN_*.ipynb`` (notebook_conventions.md, sections 2-9).

No kernel is started: the checks read the JSON, parse the code with ``ast`` and ask
``papermill.inspect_notebook`` what papermill will see.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest
from conftest import NOTEBOOKS

from optnb.experiments import plans
from optnb.experiments.notebooks import NAME_PATTERN, list_notebooks, notebook_parameters
from optnb.experiments.profiles import COMMON, notebook_spec
from optnb.experiments.runner import INJECTED, Run, validate_run
from optnb.specs import PROFILES

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
BANNED = ("%matplotlib widget", "%matplotlib ipympl", "interact_manual", "tqdm.auto",
          "tqdm.notebook", "sys.path.append", "sys.path.insert")
# Profiles' and plans' keys every notebook must declare: the runner injects INJECTED and resolve
# reads COMMON; a missing name would make papermill inject it in a cell nobody reads.
REQUIRED = tuple(dict.fromkeys((*COMMON, *INJECTED)))

SOURCES = list_notebooks()
ids = [p.stem for p in SOURCES]


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def parameters_cells(nb):
    return [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]


def assigned_literals(source: str) -> dict[str, object]:
    """``NAME = literal`` statements of a parameters cell; anything else raises AssertionError."""
    names: dict[str, object] = {}
    for node in ast.parse(source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.unparse(node)
        target = node.targets[0]
        assert isinstance(target, ast.Name), ast.unparse(node)
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", target.id), f"{target.id} is not UPPER_CASE"
        try:
            names[target.id] = ast.literal_eval(node.value)
        except ValueError:
            raise AssertionError(f"{target.id} is not a literal: {ast.unparse(node.value)}") from None
    return names


def names_used(source: str) -> set[str]:
    cleaned = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    return {n.id for n in ast.walk(ast.parse(cleaned)) if isinstance(n, ast.Name)}


def test_the_suite_has_notebooks():
    assert (NOTEBOOKS / "00_tour.ipynb") in SOURCES


def test_only_conforming_names_in_notebooks_folder():
    bad = [p.name for p in NOTEBOOKS.glob("*.ipynb") if not NAME_PATTERN.match(p.name)]
    assert not bad, f"notebook names must match {NAME_PATTERN.pattern}: {bad}"


@pytest.fixture(params=SOURCES, ids=ids)
def notebook(request) -> tuple[Path, nbformat.NotebookNode]:
    path = request.param
    return path, nbformat.read(str(path), as_version=4)


def test_kernelspec_is_python3(notebook):
    path, nb = notebook
    assert nb.metadata.get("kernelspec") == KERNELSPEC


def test_outputs_and_counts_are_stripped_without_papermill_leftovers(notebook):
    path, nb = notebook
    assert "papermill" not in nb.metadata and "widgets" not in nb.metadata
    for cell in code_cells(nb):
        assert cell.outputs == [], f"{path.name}: outputs in {cell.source[:60]!r}"
        assert cell.execution_count is None, f"{path.name}: execution count in {cell.source[:60]!r}"
    for cell in nb.cells:
        assert "injected-parameters" not in cell.metadata.get("tags", [])
        assert "papermill" not in cell.metadata and "execution" not in cell.metadata


def test_exactly_one_parameters_cell_of_literals_before_any_use(notebook):
    path, nb = notebook
    [params] = parameters_cells(nb)
    assert params.cell_type == "code"
    declared = assigned_literals(params.source)
    cells = code_cells(nb)
    index = cells.index(params)
    for cell in cells[:index]:
        early = names_used(cell.source) & set(declared)
        assert not early, f"{path.name}: {sorted(early)} used before the parameters cell"
    follower = cells[index + 1].source
    call = f'cfg = optnb.experiments.resolve(globals(), notebook="{path.stem}")'
    assert call in follower, f"{path.name}: the cell after the parameters cell must contain {call}"


def test_papermill_sees_every_name_of_the_parameters_cell(notebook):
    path, nb = notebook
    [params] = parameters_cells(nb)
    declared = list(assigned_literals(params.source))
    seen = list(notebook_parameters(path))
    assert seen == declared, (
        f"{path.name}: papermill.inspect_notebook sees {seen} but the cell assigns {declared}; "
        "papermill cannot parse a line whose comment contains '=' (reword the comment)"
    )


def test_parameters_match_profiles_runner_and_spec(notebook):
    path, nb = notebook
    names = set(notebook_parameters(path))  # what papermill sees
    missing = [n for n in REQUIRED if n not in names]
    assert not missing, f"{path.name}: the parameters cell lacks {missing}"
    spec = notebook_spec(path.stem)
    assert set(spec) <= names, f"{path.name}: spec names missing from the cell: {set(spec) - names}"
    stray = names - set(COMMON) - set(spec)
    assert not stray, f"{path.name}: {sorted(stray)} are not in COMMON or the notebook's spec"


def test_no_banned_patterns_and_results_are_recorded(notebook):
    path, nb = notebook
    source = "\n".join(c.source for c in code_cells(nb))
    for pattern in BANNED:
        assert pattern not in source, f"{path.name} uses {pattern!r}"
    if not path.stem.startswith("00_"):
        assert "record(" in source, f"{path.name} records no result"


def test_notebook_prose_cites_how_ci_runs_it(notebook):
    path, nb = notebook
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert any(c.cell_type == "markdown" and "CI" in c.source for c in nb.cells[:4])


@pytest.mark.parametrize("profile", PROFILES)
def test_every_planned_run_validates_against_its_notebook(profile):
    plan = plans.build(profile, available=lambda name: False)
    present = {p.stem for p in SOURCES}
    checked = 0
    for planned in plan.runs:
        if planned.notebook not in present:
            continue  # notebooks of other areas that are not written yet
        validate_run(Run(planned.notebook, dict(planned.parameters), planned.run_id))
        checked += 1
    assert checked >= 1  # at least 00_tour is planned and present
