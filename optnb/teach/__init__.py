"""The teaching edition: exercises with autograded checks (docs/teaching.md).

In a notebook::

    from optnb import teach

    def sqrt_spd(W):
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

    teach.check("01.1", sqrt_spd)

``check`` prints one line (correct, or not done yet) or raises
:class:`~optnb.teach.feedback.ExerciseError` with what was expected, what was found and a hint.
"""

from __future__ import annotations

from typing import Any

from optnb.teach.exercises import EXERCISES, NOTEBOOKS, UnknownExerciseError, for_notebook, get
from optnb.teach.feedback import (
    Exercise,
    ExerciseError,
    NotDoneError,
    Outcome,
    Wrong,
    evaluate,
    grading,
)

__all__ = [
    "EXERCISES",
    "NOTEBOOKS",
    "Exercise",
    "ExerciseError",
    "NotDoneError",
    "Outcome",
    "UnknownExerciseError",
    "Wrong",
    "check",
    "evaluate",
    "for_notebook",
    "get",
    "grading",
]


def check(exercise_id: str, *answers: Any) -> None:
    """Check a student's answer to exercise ``exercise_id`` and say so in one line.

    Raises :class:`ExerciseError` for a wrong answer and, when grading, :class:`NotDoneError`
    for a missing one; otherwise prints the outcome.
    """
    outcome = evaluate(get(exercise_id), *answers)
    if outcome.status == "wrong":
        raise ExerciseError(outcome.message)
    if outcome.status == "not done" and grading():
        raise NotDoneError(outcome.line())
    print(outcome.line())
