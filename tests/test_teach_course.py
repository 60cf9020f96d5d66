"""The teaching edition's builds and autograding (optnb.teach.course, optnb.teach.autograding,
``optnb teach``), through nbgrader with a private course folder and a SQLite gradebook in tmp_path.

The student notebooks of every notebook with exercises are built, checked and run headless (smoke),
two at a time beside the grading. Grading uses notebook 01:
alice hands in the solutions, bob a Cholesky factor for 01.1 and nothing else, dave a file that is
not a notebook, erin nothing.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import nbformat
import numpy as np
import pytest

import optnb.cli
from optnb import teach
from optnb.paths import notebooks_dir
from optnb.teach import autograding, course
from optnb.teach.cells import BEGIN, END, ROLES, exercise_cells, metadata

NB01 = teach.get("01.1").notebook
STUB = "raise NotImplementedError()"
STUDENTS = ("alice", "bob", "dave", "erin")


def cholesky_sqrt(W):
    return np.linalg.cholesky(W)


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return course.build_student(tmp_path_factory.mktemp("build") / "student").out


def read(path: Path):
    return nbformat.read(path, as_version=4)


def source_cells(stem: str) -> dict:
    return exercise_cells(read(notebooks_dir() / f"{stem}.ipynb"))


# --------------------------------------------------------------------------------------------
# the student build
# --------------------------------------------------------------------------------------------


def test_the_student_build_has_no_solutions_and_locks_the_task_and_check_cells(student_dir):
    assert sorted(p.name for p in student_dir.glob("*.ipynb")) == sorted(f"{s}.ipynb" for s in teach.NOTEBOOKS)
    assert course.read_marker(student_dir)["kind"] == "student"
    readme = (student_dir / "README.md").read_text()
    assert "[not done yet]" in readme and "hint" in readme
    for stem in teach.NOTEBOOKS:
        nb = read(student_dir / f"{stem}.ipynb")
        for cell in nb.cells:
            assert BEGIN not in cell.source and END not in cell.source, f"{stem}: solution left in\n{cell.source}"
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{stem}: outputs left"
        found, source = exercise_cells(nb), source_cells(stem)
        for exercise in teach.for_notebook(stem):
            cells = found.get(exercise.id, {})
            assert all(cells.get(role) is not None for role in ROLES), f"{stem}: cells of {exercise.id} missing"
            for role in ("task", "check"):
                meta = cells[role].metadata
                assert meta["nbgrader"]["locked"] and meta["editable"] is False and meta["deletable"] is False
                assert meta["nbgrader"]["checksum"], f"{exercise.id} {role}: no checksum"
                assert meta["nbgrader"]["grade_id"] == metadata(exercise, role)["grade_id"]
                assert cells[role].source == source[exercise.id][role].source
            assert cells["check"].metadata["nbgrader"]["points"] == exercise.points
            solution = cells["solution"]
            assert STUB in solution.source and solution.metadata.get("editable", True) is not False
            assert solution.source != source[exercise.id]["solution"].source


# --------------------------------------------------------------------------------------------
# the student notebooks run headless: every exercise "not done yet", no crash
# --------------------------------------------------------------------------------------------

RUNNER = textwrap.dedent("""
    import sys, nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(sys.argv[1], as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": sys.argv[3]}}).execute()
    nbformat.write(nb, sys.argv[2])
""")


def run_student_notebook(student_dir: Path, stem: str, work: Path, environ: dict[str, str]) -> tuple[int, str, Path]:
    """Run the student notebook ``stem`` headless (smoke) in a fresh kernel: (return code, stderr,
    executed notebook)."""
    executed = work / f"{stem}.executed.ipynb"
    env = {**environ, "OPTNB_HEADLESS": "1", "OPTNB_PROFILE": "smoke", "OPTNB_RESULTS": str(work / "results")}
    env.pop("OPTNB_GRADING", None)
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(student_dir / f"{stem}.ipynb"), str(executed), str(work)],
                          env=env, capture_output=True, text=True, timeout=900)
    return proc.returncode, proc.stderr[-3000:], executed


@pytest.fixture(scope="module")
def student_runs(student_dir, tmp_path_factory) -> Iterator[dict[str, Future]]:
    """The runs of the student notebooks, two at a time in the background (10-60 s each on two
    cores, notebook 08 the longest): the grading fixture starts them so that they run beside it."""
    work = tmp_path_factory.mktemp("student-runs")
    environ = dict(os.environ)  # as it is now: the grading changes os.environ while it runs
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield {stem: pool.submit(run_student_notebook, student_dir, stem, work, environ)
               for stem in teach.NOTEBOOKS}


def check_not_done(stem: str, result: tuple) -> None:
    returncode, stderr, executed = result
    assert returncode == 0, f"the student version of {stem} crashed headless:\n{stderr}"
    cells = exercise_cells(read(executed))
    for exercise in teach.for_notebook(stem):
        text = "".join(o.get("text", "") for o in cells[exercise.id]["check"].outputs)
        assert f"[not done yet] Exercise {exercise.id} " in text, f"{stem}, {exercise.id}: {text!r}"


# --------------------------------------------------------------------------------------------
# grading notebook 01: alice (the solutions), bob (a wrong 01.1, the rest left), dave (not JSON)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graded(student_dir, student_runs, tmp_path_factory) -> dict:
    assert len(teach.for_notebook(NB01)) > 1, "bob's undone exercises need a second exercise in notebook 01"
    root = tmp_path_factory.mktemp("grading")
    handed_in, out, results = root / "handed_in", root / "out", root / "results"
    results.mkdir()
    student, source = read(student_dir / f"{NB01}.ipynb"), source_cells(NB01)
    alice, bob = nbformat.from_dict(student), nbformat.from_dict(student)
    for exercise_id, cells in exercise_cells(alice).items():
        cells["solution"].source = source[exercise_id]["solution"].source
    exercise_cells(bob)["01.1"]["solution"].source = (
        "import numpy as np\n\n\ndef sqrt_spd(W):\n    return np.linalg.cholesky(W)\n")
    for name, nb in (("alice", alice), ("bob", bob)):
        (handed_in / name).mkdir(parents=True)
        nbformat.write(nb, handed_in / name / f"{NB01}.ipynb")
    (handed_in / "dave").mkdir()
    (handed_in / "dave" / f"{NB01}.ipynb").write_text('{"cells": [')
    (handed_in / "erin").mkdir()  # handed in nothing

    mp = pytest.MonkeyPatch()
    mp.setenv("OPTNB_RESULTS", str(results))  # where an un-isolated kernel would write
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            code = optnb.cli.main(["teach", "grade", str(handed_in), "--out", str(out)])
    finally:
        mp.undo()
    rows = list(csv.DictReader((out / "grades.csv").read_text().splitlines()))
    return {"code": code, "out": out, "results": results, "printed": printed.getvalue(),
            "rows": {(r["student"], r["exercise"]): r for r in rows},
            "report": {s: (out / "feedback" / s / "report.md").read_text() for s in STUDENTS}}


def test_alice_with_the_solutions_pasted_back_gets_full_points(graded):
    assert graded["code"] == 0
    for exercise in teach.for_notebook(NB01):
        row = graded["rows"][("alice", exercise.id)]
        assert row["status"] == "correct", graded["report"]["alice"]
        assert float(row["points"]) == float(row["max_points"]) == exercise.points
    total = sum(e.points for e in teach.for_notebook(NB01))
    assert f"**{total} / {total} points**" in graded["report"]["alice"]
    assert (graded["out"] / "feedback" / "alice" / f"{NB01}.html").is_file()


def test_bob_gets_no_points_for_a_cholesky_factor_and_its_specific_feedback(graded):
    row = graded["rows"][("bob", "01.1")]
    assert (row["status"], float(row["points"]), float(row["max_points"])) == ("wrong", 0.0, 1.0)
    expected = teach.evaluate(teach.get("01.1"), cholesky_sqrt)
    assert expected.status == "wrong" and "hint:" in expected.message
    assert expected.message in graded["report"]["bob"]   # the checker's own message: problem and hint
    assert "Cholesky" in graded["report"]["bob"]


def test_an_exercise_left_undone_gets_no_points_and_says_not_done_yet(graded):
    for exercise in teach.for_notebook(NB01)[1:]:
        row = graded["rows"][("bob", exercise.id)]
        assert (row["status"], float(row["points"])) == ("not done yet", 0.0)
        assert f"[not done yet] Exercise {exercise.id} " in graded["report"]["bob"]


def test_a_notebook_that_cannot_run_or_was_not_handed_in_is_reported_for_its_student_only(graded):
    for exercise in teach.for_notebook(NB01):
        assert graded["rows"][("dave", exercise.id)]["status"] == "not run"
        assert graded["rows"][("erin", exercise.id)]["status"] == "not submitted"
    assert "could not be run" in graded["report"]["dave"] and "JSON" in graded["report"]["dave"]
    assert "was not handed in" in graded["report"]["erin"]


def test_the_command_prints_a_line_per_student_and_notebook_and_a_summary(graded):
    lines = graded["printed"].splitlines()
    total = sum(e.points for e in teach.for_notebook(NB01))
    assert any(li.startswith(f"graded alice {NB01}: {total}/{total} points") for li in lines), lines
    assert any(li.startswith(f"graded bob {NB01}: 0/{total} points") for li in lines), lines
    assert any(li.startswith(f"graded dave {NB01}:") and "not run" in li for li in lines), lines
    assert any(li.split()[:2] == ["alice", f"{NB01[:2]}:"] and li.endswith(f"total {total}/{total}") for li in lines)
    assert len(lines) < 25, "the summary should fit on a screen"


def test_grades_csv_agrees_with_the_reports_and_everything_stays_in_out(graded):
    rows, out = graded["rows"], graded["out"]
    assert set(rows) == {(s, e.id) for s in STUDENTS for e in teach.for_notebook(NB01)}
    for (student, exercise_id), row in rows.items():
        title = teach.get(exercise_id).title
        line = f"| {exercise_id} {title} | {NB01} | {row['points']} / {row['max_points']} | {row['status']} |"
        assert line in graded["report"][student]
    assert (out / "gradebook.db").is_file()
    assert list((out / "results" / "alice" / "runs").iterdir()), "the notebook recorded nothing in OUT"
    assert not any(graded["results"].iterdir()), "grading wrote into $OPTNB_RESULTS, outside OUT"


@pytest.mark.parametrize("stem", teach.NOTEBOOKS)
def test_the_student_notebooks_run_headless_with_every_exercise_not_done_yet(stem, student_runs):
    check_not_done(stem, student_runs[stem].result())



# --------------------------------------------------------------------------------------------
# the solution build and the folders a build may replace
# --------------------------------------------------------------------------------------------


def test_the_solution_build_is_nbgraders_source_with_outputs_cleared(tmp_path):
    build = course.build_solutions(tmp_path / "solutions")
    for stem in teach.NOTEBOOKS:
        nb = read(build.out / stem / f"{stem}.ipynb")
        assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code")
        cells = exercise_cells(nb)
        for exercise in teach.for_notebook(stem):
            for role in ROLES:
                assert cells[exercise.id][role].metadata["nbgrader"] == metadata(exercise, role)
            assert BEGIN in cells[exercise.id]["solution"].source


def test_a_build_replaces_only_an_empty_folder_or_an_earlier_build(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert optnb.cli.main(["teach", "solutions", "--out", str(mine)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not empty and is not a previous solutions build" in err and "--force" in err and "\n" not in err
    assert (mine / "notes.txt").read_text() == "keep me"
    assert optnb.cli.main(["teach", "solutions", "--out", str(mine), "--force"]) == 0
    assert not (mine / "notes.txt").exists() and (mine / NB01 / f"{NB01}.ipynb").is_file()
    assert optnb.cli.main(["teach", "solutions", "--out", str(mine)]) == 0       # an earlier build
    assert optnb.cli.main(["teach", "student", "--out", str(mine)]) == 2         # not a student build
    assert "not a previous student build" in capsys.readouterr().err
    assert optnb.cli.main(["teach", "solutions", "--out", str(notebooks_dir().parent), "--force"]) == 2
    assert "notebooks" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# bad input: one line, exit 2
# --------------------------------------------------------------------------------------------


def _one_line_error(capsys, argv: list[str]) -> str:
    assert optnb.cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("optnb: error: "), captured.err
    return lines[0]


def _handed_in(root: Path, student: str, name: str) -> Path:
    (root / student).mkdir(parents=True)
    (root / student / name).write_text("{}")
    return root


def test_grading_input_errors_are_one_line(tmp_path, capsys):
    assert "does not exist" in _one_line_error(capsys, ["teach", "grade", str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    assert "no student notebooks" in _one_line_error(capsys, ["teach", "grade", str(tmp_path / "empty")])
    unknown = _handed_in(tmp_path / "unknown", "alice", "99_homework.ipynb")
    line = _one_line_error(capsys, ["teach", "grade", str(unknown)])
    assert "99_homework.ipynb" in line and all(f"{s}.ipynb" in line for s in teach.NOTEBOOKS)
    bad_id = _handed_in(tmp_path / "bad_id", "alice smith*", f"{NB01}.ipynb")
    assert "not a usable student id" in _one_line_error(capsys, ["teach", "grade", str(bad_id)])
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / f"{NB01}.ipynb").write_text("{}")
    assert "<student_id>" in _one_line_error(capsys, ["teach", "grade", str(loose)])
    ok = _handed_in(tmp_path / "ok", "alice", f"{NB01}.ipynb")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    assert "not empty" in _one_line_error(capsys, ["teach", "grade", str(ok), "--out", str(tmp_path / "used")])
    assert "--profile" in _one_line_error(capsys, ["teach", "grade", str(ok), "--profile", "huge"])
    assert "needs an action" in _one_line_error(capsys, ["teach"])


def test_list_shows_every_exercise_and_the_totals(capsys):
    assert optnb.cli.main(["teach", "list"]) == 0
    out = capsys.readouterr().out
    for exercise in teach.EXERCISES.values():
        line = next(li for li in out.splitlines() if li.startswith(exercise.id + " "))
        assert exercise.notebook in line and exercise.title in line and exercise.kind in line
    for stem in teach.NOTEBOOKS:
        exercises = teach.for_notebook(stem)
        total = next(li for li in out.splitlines() if f"{stem}: {len(exercises)} exercise" in li)
        assert total.split()[-2:] == [str(sum(e.minutes for e in exercises)), str(sum(e.points for e in exercises))]


def test_grading_goes_by_default_to_a_new_folder_under_the_results_root(tmp_results):
    first = autograding.default_out()
    assert first.parent == tmp_results / "grading" and not first.exists()
    first.mkdir(parents=True)
    second = autograding.default_out()
    assert second != first and second.parent == first.parent and not second.exists()
