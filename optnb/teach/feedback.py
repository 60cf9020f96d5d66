"""Checking a student's answer and saying what was wrong (the teaching edition, docs/teaching.md).

An exercise is a function the student completes; its checker (one per exercise, in the modules
of :mod:`optnb.teach.exercises`) calls it on chosen inputs and compares against the package's
own implementation in float64. Three outcomes:

* **correct**: one line saying what was checked;
* **not done yet**: the function still raises ``NotImplementedError`` (nbgrader's stub). Reported
  and not raised, so a student build runs top to bottom headless; when grading
  (``$OPTNB_GRADING=1``, set by ``optnb teach grade``) it raises, and nbgrader gives no points;
* **wrong**: :class:`ExerciseError`, an ``AssertionError`` whose message says what was expected,
  what was found and a hint. IPython shows the message without a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

GRADING_VARIABLE = "OPTNB_GRADING"
STATUSES = ("correct", "not done", "wrong")


class Wrong(Exception):
    """Raised by a checker: the answer is wrong. ``problem`` says what, for which input."""

    def __init__(self, problem: str, expected: Any = None, found: Any = None, hint: str = ""):
        super().__init__(problem)
        self.problem, self.expected, self.found, self.hint = problem, expected, found, hint


class ExerciseError(AssertionError):
    """A wrong answer (or, when grading, a missing one), with feedback that helps."""

    def __init__(self, message: str):
        super().__init__(message)

    def _render_traceback_(self) -> list[str]:  # IPython prints this instead of a traceback
        return [str(self)]


class NotDoneError(ExerciseError):
    """Raised instead of reporting "not done yet" when grading."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: where it is, what it asks, what it is worth and how it is checked.

    ``check(*answers)`` returns a one-line success message or raises :class:`Wrong`; calling a
    student's unfinished function inside it raises ``NotImplementedError``, which is fine.
    """

    id: str          # "01.2": notebook number, exercise number
    notebook: str    # the notebook stem
    title: str
    kind: str        # "quick check" | "computation" | "derivation"
    minutes: int     # expected time for a student
    points: int
    check: Callable[..., str]
    hint: str = ""   # the default hint, used when a checker gives none

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"exercise {self.id}: kind {self.kind!r} is not one of {KINDS}")

    @property
    def grade_id(self) -> str:
        """nbgrader's id of the exercise's solution cell (its check cell adds ``_check``)."""
        return "ex" + self.id.replace(".", "_")


KINDS = ("quick check", "computation", "derivation")


@dataclass(frozen=True)
class Outcome:
    exercise: Exercise
    status: str      # one of STATUSES
    message: str

    @property
    def passed(self) -> bool:
        return self.status == "correct"

    def line(self) -> str:
        mark = {"correct": "[correct]", "not done": "[not done yet]", "wrong": "[wrong]"}[self.status]
        return f"{mark} Exercise {self.exercise.id} ({self.exercise.title}): {self.message}"


def grading() -> bool:
    """True under ``optnb teach grade`` (``$OPTNB_GRADING`` set to 1/true/yes)."""
    return os.environ.get(GRADING_VARIABLE, "").strip().lower() in ("1", "true", "yes")


def _format_wrong(exercise: Exercise, wrong: Wrong) -> str:
    lines = [f"Exercise {exercise.id} ({exercise.title}): not right yet. {wrong.problem}"]
    if wrong.expected is not None:
        lines.append(f"  expected: {wrong.expected}")
    if wrong.found is not None:
        lines.append(f"  found:    {wrong.found}")
    hint = wrong.hint or exercise.hint
    if hint:
        lines.append(f"  hint:     {hint}")
    return "\n".join(lines)


def evaluate(exercise: Exercise, *answers: Any) -> Outcome:
    """Run the exercise's checker on the student's answers; never raises for a student's error."""
    try:
        message = exercise.check(*answers)
    except NotImplementedError:
        return Outcome(exercise, "not done",
                       "replace `raise NotImplementedError()` in the cell above with your code, then run both cells")
    except Wrong as wrong:
        return Outcome(exercise, "wrong", _format_wrong(exercise, wrong))
    except Exception as err:  # the student's code crashed: say where, not a traceback
        crash = Wrong(f"Calling your code raised {type(err).__name__}: {err}",
                      hint=exercise.hint or "run your function on a small input and read the error")
        return Outcome(exercise, "wrong", _format_wrong(exercise, crash))
    return Outcome(exercise, "correct", message)


# --------------------------------------------------------------------------------------------
# comparisons the checkers share (float64, stated tolerances)
# --------------------------------------------------------------------------------------------


def as_float64(value: Any, what: str) -> np.ndarray:
    """``value`` as a float64 array, or :class:`Wrong` naming what could not be converted."""
    try:
        return np.asarray(value.detach().cpu() if hasattr(value, "detach") else value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise Wrong(f"{what} should be numbers, got {type(value).__name__}",
                    hint=f"return a number or a numpy array ({err})") from None


def expect_close(found: Any, expected: Any, what: str, *, atol: float = 1e-10, rtol: float = 1e-8,
                 hint: str = "") -> float:
    """Raise :class:`Wrong` unless ``found`` equals ``expected`` within ``atol + rtol*|expected|``
    (float64, same shape); returns the largest absolute deviation."""
    f, e = as_float64(found, what), as_float64(expected, what)
    if f.shape != e.shape:
        raise Wrong(f"{what} has the wrong shape.", expected=f"shape {e.shape}", found=f"shape {f.shape}",
                    hint=hint)
    if not np.all(np.isfinite(f)):
        raise Wrong(f"{what} contains NaN or infinity.", expected=_short(e), found=_short(f), hint=hint)
    deviation = np.abs(f - e)
    bad = deviation > atol + rtol * np.abs(e)
    if bad.any():
        index = np.unravel_index(int(np.argmax(deviation)), deviation.shape) if deviation.ndim else ()
        where = f" at index {tuple(int(i) for i in index)}" if index else ""
        raise Wrong(f"{what} is off by up to {float(deviation.max()):.3g}{where} "
                    f"(tolerance {atol:g} + {rtol:g}*|expected|).",
                    expected=_short(e), found=_short(f), hint=hint)
    return float(deviation.max()) if deviation.size else 0.0


def known_mistake(found: Any, mistakes: Iterable[tuple[Any, str]], default: str = "", *,
                  rtol: float = 1e-6, atol: float = 1e-9) -> str:
    """The hint of the first typical mistake (pairs of the answer it gives and its hint) whose
    answer ``found`` reproduces within ``atol + rtol*|answer|``, else ``default``."""
    try:
        f = np.asarray(found, dtype=np.float64)
    except (TypeError, ValueError):
        return default
    for answer, hint in mistakes:
        a = np.asarray(answer, dtype=np.float64)
        if a.shape == f.shape and np.all(np.isfinite(a)) and np.allclose(f, a, rtol=rtol, atol=atol):
            return hint
    return default


def expect_close_or_mistake(found: Any, expected: Any, what: str, mistakes: Sequence[tuple[Any, str]], *,
                            atol: float = 1e-10, rtol: float = 1e-8, hint: str = "") -> float:
    """:func:`expect_close`, but a wrong answer that reproduces a typical mistake (``mistakes``:
    pairs of that answer and its hint) gets that mistake's hint."""
    try:
        return expect_close(found, expected, what, atol=atol, rtol=rtol, hint=hint)
    except Wrong as wrong:
        mistake = known_mistake(found, mistakes)
        if not mistake:
            raise
        raise Wrong(wrong.problem, expected=wrong.expected, found=wrong.found, hint=mistake) from None


def _short(a: np.ndarray) -> str:
    if a.ndim == 0:
        return f"{float(a):.10g}"
    return np.array2string(a, precision=6, threshold=8, edgeitems=3, suppress_small=True)
