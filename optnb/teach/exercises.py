"""The exercises of notebooks 01-05 and 08, by id ("01.2"), in notebook order.

One module per notebook defines its exercises (``EXERCISES``, a tuple of
:class:`~optnb.teach.feedback.Exercise`) with their checkers; this module only collects them.
"""

from __future__ import annotations

from optnb.teach import activation_costs, architectures, forward_pass, momentum, rates, search_space
from optnb.teach.feedback import Exercise

MODULES = (forward_pass, momentum, activation_costs, rates, architectures, search_space)
EXERCISES: dict[str, Exercise] = {e.id: e for m in MODULES for e in m.EXERCISES}
#: the notebooks that carry exercises, in order
NOTEBOOKS: tuple[str, ...] = tuple(dict.fromkeys(e.notebook for e in EXERCISES.values()))


class UnknownExerciseError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def get(exercise_id: str) -> Exercise:
    """The exercise ``exercise_id``; an unknown id raises naming the valid ones."""
    try:
        return EXERCISES[exercise_id]
    except KeyError:
        raise UnknownExerciseError(f"no exercise {exercise_id!r}; the exercises are "
                                   + ", ".join(EXERCISES)) from None


def for_notebook(notebook: str) -> list[Exercise]:
    """The exercises of one notebook (its stem), in order; [] for a notebook without any."""
    return [e for e in EXERCISES.values() if e.notebook == notebook]
