"""optnb.teach's checking core on a made-up exercise: the three outcomes, the grading switch,
what a student sees for a wrong answer, a crash and a wrong shape."""

from __future__ import annotations

import numpy as np
import pytest

from optnb import teach
from optnb.teach.feedback import GRADING_VARIABLE, Exercise, Wrong, expect_close


def check_double(fn) -> str:
    for x in (0.0, 1.5, -3.0):
        expect_close(fn(x), 2 * x, f"double({x})", hint="multiply by two")
    return "double is right on 0, 1.5 and -3"


DOUBLE = Exercise("99.1", "none", "double a number", "quick check", minutes=1, points=1, check=check_double)


def test_three_outcomes():
    assert teach.evaluate(DOUBLE, lambda x: 2 * x).status == "correct"
    assert teach.evaluate(DOUBLE, lambda x: (_ for _ in ()).throw(NotImplementedError())).status == "not done"
    wrong = teach.evaluate(DOUBLE, lambda x: x + 1.5)
    assert wrong.status == "wrong"
    assert "double(0.0) is off by up to 1.5" in wrong.message
    assert "expected: 0\n" in wrong.message and "found:    1.5" in wrong.message
    assert "hint:     multiply by two" in wrong.message


def test_a_crash_and_a_wrong_type_are_explained_not_raised():
    crash = teach.evaluate(DOUBLE, lambda x: 1 / 0)
    assert crash.status == "wrong" and "ZeroDivisionError: division by zero" in crash.message
    text = teach.evaluate(DOUBLE, lambda x: "two")
    assert text.status == "wrong" and "should be numbers, got str" in text.message
    shape = teach.evaluate(DOUBLE, lambda x: np.array([2 * x, 0.0]))
    assert shape.status == "wrong" and "wrong shape" in shape.message and "shape ()" in shape.message
    nan = teach.evaluate(DOUBLE, lambda x: float("nan"))
    assert nan.status == "wrong" and "NaN" in nan.message


def test_expect_close_uses_the_stated_tolerance():
    assert expect_close(1.0 + 1e-12, 1.0, "x", atol=1e-10) == pytest.approx(1e-12, abs=1e-15)
    with pytest.raises(Wrong, match="tolerance 1e-13"):
        expect_close(1.0 + 1e-12, 1.0, "x", atol=1e-13, rtol=0.0)


def test_check_prints_raises_and_obeys_the_grading_switch(monkeypatch, capsys):
    monkeypatch.setitem(teach.EXERCISES, DOUBLE.id, DOUBLE)
    monkeypatch.delenv(GRADING_VARIABLE, raising=False)

    def not_done(x):
        raise NotImplementedError()

    teach.check("99.1", lambda x: 2 * x)
    assert capsys.readouterr().out.startswith("[correct] Exercise 99.1 (double a number): ")
    teach.check("99.1", not_done)
    assert capsys.readouterr().out.startswith("[not done yet] Exercise 99.1")
    with pytest.raises(teach.ExerciseError) as err:
        teach.check("99.1", lambda x: -2 * x)
    assert isinstance(err.value, AssertionError)  # nbgrader counts it as a failed test
    assert err.value._render_traceback_() == [str(err.value)]  # IPython: the message, no traceback
    monkeypatch.setenv(GRADING_VARIABLE, "1")
    with pytest.raises(teach.NotDoneError, match=r"\[not done yet\] Exercise 99.1"):
        teach.check("99.1", not_done)


def test_unknown_exercise_names_the_valid_ones():
    with pytest.raises(teach.UnknownExerciseError, match=r"no exercise '7.7'; the exercises are 01.1"):
        teach.get("7.7")


def test_an_exercise_needs_a_known_kind():
    with pytest.raises(ValueError, match="kind 'essay' is not one of"):
        Exercise("99.2", "none", "t", "essay", minutes=1, points=1, check=check_double)


def test_a_typical_mistake_gets_its_own_hint():
    from optnb.teach.feedback import expect_close_or_mistake, known_mistake

    mistakes = [(np.array([1.0, 2.0]), "forgot the square"), (np.array([-1.0, -4.0]), "sign")]
    assert known_mistake([-1.0, -4.0 + 1e-12], mistakes) == "sign"
    assert known_mistake([3.0, 3.0], mistakes, default="generic") == "generic"
    assert known_mistake("text", mistakes, default="generic") == "generic"
    assert known_mistake([1.0, 2.0, 3.0], mistakes) == ""  # another shape matches nothing
    with pytest.raises(Wrong) as err:
        expect_close_or_mistake([1.0, 2.0], [1.0, 4.0], "squares", mistakes, hint="square each entry")
    assert err.value.hint == "forgot the square" and "off by up to 2" in err.value.problem
    with pytest.raises(Wrong) as err:
        expect_close_or_mistake([0.0, 0.0], [1.0, 4.0], "squares", mistakes, hint="square each entry")
    assert err.value.hint == "square each entry"
