"""The three notebook cells of an exercise, in nbgrader's conventions (schema version 3).

* the **task** (markdown, locked): ``### Exercise 01.1 · title (kind, about N min)`` and the
  question; grade id ``ex01_1_task``;
* the **solution** (code, the student's): a function whose body sits between
  ``### BEGIN SOLUTION`` and ``### END SOLUTION``; nbgrader's student build replaces the body by
  ``raise NotImplementedError()``; grade id ``ex01_1``;
* the **check** (code, locked, autograded, worth the exercise's points):
  ``teach.check("01.1", function)``; grade id ``ex01_1_check``.
"""

from __future__ import annotations

from typing import Any

import nbformat

from optnb.teach.exercises import EXERCISES, for_notebook
from optnb.teach.feedback import Exercise

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
ROLES = ("task", "solution", "check")


def metadata(exercise: Exercise, role: str) -> dict[str, Any]:
    """nbgrader's cell metadata for ``role`` (one of ROLES) of ``exercise``."""
    base = {"schema_version": 3, "task": False}
    if role == "task":
        return {**base, "grade": False, "solution": False, "locked": True, "grade_id": exercise.grade_id + "_task"}
    if role == "solution":
        return {**base, "grade": False, "solution": True, "locked": False, "grade_id": exercise.grade_id}
    if role == "check":
        return {**base, "grade": True, "solution": False, "locked": True, "grade_id": exercise.grade_id + "_check",
                "points": exercise.points}
    raise ValueError(f"role {role!r} is not one of {ROLES}")


def heading(exercise: Exercise) -> str:
    return (f"### Exercise {exercise.id} · {exercise.title} "
            f"({exercise.kind}, about {exercise.minutes} min, {exercise.points} "
            f"point{'s' if exercise.points != 1 else ''})")


def make_cells(exercise: Exercise, task: str, solution: str, function: str) -> list[Any]:
    """The task, solution and check cells of ``exercise``: ``task`` is the question (markdown,
    under the heading), ``solution`` the code cell with its BEGIN/END SOLUTION region, ``function``
    the name the check passes to :func:`optnb.teach.check`."""
    if BEGIN not in solution or END not in solution:
        raise ValueError(f"exercise {exercise.id}: the solution cell needs {BEGIN!r} and {END!r}")
    cells = [nbformat.v4.new_markdown_cell(heading(exercise) + "\n\n" + task.strip()),
             nbformat.v4.new_code_cell(solution.strip()),
             nbformat.v4.new_code_cell(f'teach.check("{exercise.id}", {function})')]
    for cell, role in zip(cells, ROLES):
        cell.metadata["nbgrader"] = metadata(exercise, role)
    return cells


def exercise_cells(nb: Any) -> dict[str, dict[str, Any]]:
    """``{exercise id: {role: cell}}`` for the exercise cells of a notebook (by nbgrader grade id)."""
    by_grade_id = {}
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id:
            by_grade_id[grade_id] = cell
    found: dict[str, dict[str, Any]] = {}
    for exercise in EXERCISES.values():
        roles = {role: by_grade_id.get(metadata(exercise, role)["grade_id"]) for role in ROLES}
        if any(roles.values()):
            found[exercise.id] = roles
    return found


def missing_cells(nb: Any, notebook: str) -> list[str]:
    """What the notebook ``notebook`` lacks of its exercises' cells, one phrase each ([] when whole)."""
    present = exercise_cells(nb)
    problems = []
    for exercise in for_notebook(notebook):
        for role in ROLES:
            cell = present.get(exercise.id, {}).get(role)
            if cell is None:
                problems.append(f"exercise {exercise.id}: no {role} cell")
            elif cell.metadata["nbgrader"] != metadata(exercise, role):
                problems.append(f"exercise {exercise.id}: the {role} cell's nbgrader metadata differs")
    return problems
