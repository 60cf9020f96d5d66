"""Autograding a folder of completed student notebooks with nbgrader (``optnb teach grade``).

The input is ``DIR/<student_id>/<notebook>.ipynb``. Everything the grading writes goes under
``OUT`` (default ``<results>/grading/<timestamp>``):

* ``nbgrader/``: a course folder (``source/`` = the repository's notebooks, ``release/``,
  ``submitted/`` = copies of DIR, ``autograded/``, ``feedback/``) and ``gradebook.db`` (SQLite);
* ``results/<student>/``: what the notebooks record (``$OPTNB_RESULTS`` of their kernels);
* ``feedback/<student>/report.md`` (points, status and feedback of every exercise) and
  ``feedback/<student>/<notebook>.html`` (nbgrader's feedback);
* ``grades.csv`` (student, notebook, exercise, points, max_points, status) and ``logs/``.

The notebooks run with ``OPTNB_GRADING=1`` (a missing answer raises ``NotDoneError``, so nbgrader
gives it no points), headless, in the chosen profile, one kernel per student and notebook, in the
interpreter that runs this (a kernel spec in ``OUT`` pins it). A notebook that cannot run at all
(not JSON, a dead kernel) is reported for its student; the others are graded as usual.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.converters import Autograde, GenerateFeedback
from sqlalchemy.exc import SAWarning
from traitlets.config import Config

from optnb.paths import ensure_dir, results_dir
from optnb.teach.cells import metadata
from optnb.teach.course import (
    COURSE_ID,
    course_directory,
    environment,
    generate_assignments,
    last_error,
    nbgrader_config,
    quiet_log,
    stage_source,
)
from optnb.teach.exercises import NOTEBOOKS, for_notebook
from optnb.teach.feedback import GRADING_VARIABLE

#: a student id: a folder name nbgrader can use as it is (it globs and formats paths with it)
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
STUDENT_ID_RULE = "letters, digits, '_', '-' and '.', starting with a letter or digit, at most 100 characters"
STATUSES = ("correct", "not done yet", "wrong", "not run", "not submitted")
#: the default limit of one cell, seconds (the smoke profile runs a whole notebook in well under a minute)
CELL_TIMEOUT = 300


class GradingInputError(ValueError):
    """A grading folder or output folder that cannot be used; the message is one line."""


@dataclass(frozen=True)
class ExerciseGrade:
    student: str
    notebook: str
    exercise: str      # "01.1"
    title: str
    points: float
    max_points: float
    status: str        # one of STATUSES
    feedback: str      # the checker's message (expected/found/hint for a wrong answer)


@dataclass
class Grading:
    out: Path
    students: list[str]
    notebooks: list[str]
    grades: list[ExerciseGrade] = field(default_factory=list)
    problems: dict[tuple[str, str], str] = field(default_factory=dict)   # (student, notebook) -> why not run

    def of(self, student: str, notebook: str | None = None) -> list[ExerciseGrade]:
        return [g for g in self.grades if g.student == student and notebook in (None, g.notebook)]


# --------------------------------------------------------------------------------------------
# the input
# --------------------------------------------------------------------------------------------


def find_submissions(folder: str | Path) -> dict[str, dict[str, Path]]:
    """``{student: {notebook stem: path}}`` of ``folder`` (``DIR/<student_id>/<notebook>.ipynb``),
    or :class:`GradingInputError` naming what is wrong and what is expected."""
    root = Path(folder).expanduser()
    layout = "expected DIR/<student_id>/<notebook>.ipynb"
    if not root.exists():
        raise GradingInputError(f"grading folder {root} does not exist; {layout}")
    if not root.is_dir():
        raise GradingInputError(f"grading folder {root} is a file, not a folder; {layout}")
    loose = sorted(p.name for p in root.glob("*.ipynb"))
    if loose:
        raise GradingInputError(f"{root} holds notebooks directly ({', '.join(loose[:3])}); {layout}: "
                                f"put each student's notebooks in a folder named by their id")
    submissions: dict[str, dict[str, Path]] = {}
    for student_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        student = student_dir.name
        if not STUDENT_ID.fullmatch(student):
            raise GradingInputError(f"student folder {student!r} in {root} is not a usable student id; "
                                    f"expected {STUDENT_ID_RULE}")
        notebooks = {}
        for path in sorted(student_dir.glob("*.ipynb")):
            if path.stem not in NOTEBOOKS:
                raise GradingInputError(f"{student}/{path.name}: no such notebook with exercises; the notebooks "
                                        f"are: " + ", ".join(f"{s}.ipynb" for s in NOTEBOOKS))
            notebooks[path.stem] = path
        submissions[student] = notebooks
    if not any(submissions.values()):
        raise GradingInputError(f"no student notebooks in {root}; {layout} (the notebooks are: "
                                + ", ".join(f"{s}.ipynb" for s in NOTEBOOKS) + ")")
    return submissions


def default_out() -> Path:
    """``<results>/grading/<UTC timestamp>`` (a suffix when two gradings start in one second)."""
    base = results_dir() / "grading" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def _prepare_out(out: str | Path | None, folder: Path) -> Path:
    target = (Path(out).expanduser() if out else default_out()).resolve()
    if target.is_dir() and any(target.iterdir()):
        raise GradingInputError(f"output folder {target} is not empty; choose a new --out (default: "
                                f"<results>/grading/<timestamp>)")
    if target.is_relative_to(folder.resolve()):
        raise GradingInputError(f"output folder {target} is inside the grading folder {folder}; choose "
                                "another --out")
    return ensure_dir(target, what="grading output folder", options="--out")


# --------------------------------------------------------------------------------------------
# grading
# --------------------------------------------------------------------------------------------


def grade(folder: str | Path, out: str | Path | None = None, profile: str = "smoke",
          timeout: int = CELL_TIMEOUT, progress: Callable[[str], Any] = print) -> Grading:
    """Autograde ``folder`` into ``out`` and write the reports; ``progress`` gets one line per
    student and notebook."""
    folder = Path(folder).expanduser()
    submissions = find_submissions(folder)
    out = _prepare_out(out, folder)
    stems = [s for s in NOTEBOOKS if any(s in nbs for nbs in submissions.values())]
    grading = Grading(out, list(submissions), stems)
    progress(f"grading {len(submissions)} student(s) on {len(stems)} notebook(s) into {out} (profile {profile})")
    root, db = out / "nbgrader", out / "gradebook.db"
    config = _config(root, db, timeout)
    with quiet_log("setup") as (log, buffer), environment():
        stage_source(root, tuple(stems))
        generate_assignments(course_directory(config, log), config, log, buffer, tuple(stems))
    (out / "logs" / "setup.log").parent.mkdir(parents=True, exist_ok=True)
    (out / "logs" / "setup.log").write_text(buffer.getvalue())
    for student, notebooks in submissions.items():
        for stem in stems:
            if stem in notebooks:
                _grade_one(grading, root, db, config, student, stem, notebooks[stem], profile, progress)
            else:
                grading.grades += [_ungraded(student, e, "not submitted", f"{stem}.ipynb was not handed in")
                                   for e in for_notebook(stem)]
                progress(f"skipped {student} {stem}: not handed in")
    write_reports(grading, profile)
    return grading


def _grade_one(grading: Grading, root: Path, db: Path, config: Config, student: str, stem: str, handed_in: Path,
               profile: str, progress: Callable[[str], Any]) -> None:
    """Autograde one student's notebook and add its grades (or why it could not run) to ``grading``."""
    out = grading.out
    submitted = root / "submitted" / student / stem / f"{stem}.ipynb"
    submitted.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(handed_in, submitted)
    started = time.monotonic()
    kernels = _pin_kernel(out / ".jupyter")
    kernel_env = {GRADING_VARIABLE: "1", "OPTNB_HEADLESS": "1", "OPTNB_PROFILE": profile,
                  "OPTNB_RESULTS": str(ensure_dir(out / "results" / student, what="results folder")),
                  "JUPYTER_PATH": os.pathsep.join(filter(None, (str(kernels), os.environ.get("JUPYTER_PATH")))),
                  **_home_redirects(out)}
    problem = _autograde_one(root, config, student, stem, out, kernel_env)
    if problem:
        grading.problems[(student, stem)] = problem
        grading.grades += [_ungraded(student, e, "not run", f"the notebook could not be run: {problem}")
                           for e in for_notebook(stem)]
    else:
        grading.grades += _read_grades(root, db, student, stem)
    progress(_progress_line(grading, student, stem, time.monotonic() - started))


def _config(root: Path, db: Path, timeout: int) -> Config:
    c = nbgrader_config(root, db)
    c.Execute.timeout = timeout
    c.Execute.extra_arguments = ["--IPKernelApp.log_level=ERROR"]  # no kernel chatter on the terminal
    c.Autograde.permissions = 644      # nbgrader's 444 makes OUT awkward to remove
    c.GenerateFeedback.permissions = 644
    c.HTMLExporter.template_name = "feedback"
    return c


def _pin_kernel(folder: Path) -> Path:
    """A ``python3`` kernel spec running this interpreter, first on ``$JUPYTER_PATH`` for the
    grading: the notebooks run with the optnb being graded against, whatever kernels the user has."""
    spec = folder / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (optnb grading)", "language": "python"}, indent=1))
    return folder


def _home_redirects(out: Path) -> dict[str, str]:
    """IPython's, matplotlib's and Jupyter's runtime folders inside ``out`` unless already chosen
    (``make`` chooses them), so that grading writes nothing in the home folder."""
    wanted = {"IPYTHONDIR": out / ".jupyter" / "ipython", "MPLCONFIGDIR": out / ".jupyter" / "mpl",
              "JUPYTER_RUNTIME_DIR": out / ".jupyter" / "runtime"}
    return {name: str(path) for name, path in wanted.items() if not os.environ.get(name)}


def _autograde_one(root: Path, config: Config, student: str, stem: str, out: Path,
                   kernel_env: dict[str, str]) -> str:
    """nbgrader's autograde and feedback for one student's notebook; '' or why it could not run."""
    log_file = out / "logs" / student / f"{stem}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with quiet_log(f"{student}.{stem}") as (log, buffer), environment(**kernel_env):
        coursedir = course_directory(config, log)
        coursedir.assignment_id, coursedir.student_id = stem, student
        problem = ""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SAWarning)  # nbgrader's own use of its session; harmless
            try:
                autograde = Autograde(coursedir=coursedir, config=config, log=log)
                autograde.force, autograde.create_student = True, True
                autograde.start()
                feedback = GenerateFeedback(coursedir=coursedir, config=config, log=log)
                feedback.force = True
                feedback.start()
            except Exception as err:  # nbgrader logs the traceback and raises NbGraderException
                problem = last_error(buffer.getvalue()) or f"{type(err).__name__}: {err}"
        log_file.write_text(buffer.getvalue())
    html = root / "feedback" / student / stem / f"{stem}.html"
    if html.is_file():
        target = out / "feedback" / student / html.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(html, target)
    return problem


def _ungraded(student: str, exercise: Any, status: str, why: str) -> ExerciseGrade:
    return ExerciseGrade(student, exercise.notebook, exercise.id, exercise.title, 0.0, float(exercise.points),
                         status, why)


def _read_grades(root: Path, db: Path, student: str, stem: str) -> list[ExerciseGrade]:
    """Points from nbgrader's gradebook, status and feedback from the check cells' outputs."""
    nb = nbformat.read(root / "autograded" / student / stem / f"{stem}.ipynb", as_version=4)
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
    grades = []
    with Gradebook(f"sqlite:///{db}", COURSE_ID) as gb:
        for exercise in for_notebook(stem):
            check_id = metadata(exercise, "check")["grade_id"]
            try:
                record = gb.find_grade(check_id, stem, stem, student)
                points, max_points = float(record.score or 0.0), float(record.max_score)
            except MissingEntry:
                points, max_points = 0.0, float(exercise.points)
            status, text = _outcome(by_id.get(check_id), by_id.get(exercise.grade_id))
            grades.append(ExerciseGrade(student, stem, exercise.id, exercise.title, points, max_points, status, text))
    return grades


def _errors(cell: Any) -> list[Any]:
    return [o for o in (cell.get("outputs", []) if cell is not None else []) if o.get("output_type") == "error"]


def _outcome(check: Any, solution: Any) -> tuple[str, str]:
    """(status, feedback) from the check cell's outputs after the run."""
    if check is None:
        return "wrong", "the check cell is missing from the notebook"
    errors = _errors(check)
    if not errors:
        text = "".join(o.get("text", "") for o in check.outputs if o.get("output_type") == "stream").strip()
        return "correct", text
    error = errors[0]
    if error.ename == "NotDoneError":
        return "not done yet", error.evalue
    if error.ename == "ExerciseError":
        return "wrong", error.evalue
    if error.ename == "CellTimeoutError":
        return "wrong", "The check ran past the time limit of a cell (optnb teach grade --timeout): does your code end?"
    text = f"The check stopped with {error.ename}: {error.evalue}".rstrip(": ")
    mine = _errors(solution)
    if mine:
        text += f"\nYour cell above it raised {mine[0].ename}: {mine[0].evalue} (fix it first)."
    return "wrong", text


# --------------------------------------------------------------------------------------------
# what the grading says
# --------------------------------------------------------------------------------------------


def _num(x: float) -> str:
    return f"{x:g}"


def _counts(grades: list[ExerciseGrade]) -> str:
    counts = {s: sum(g.status == s for g in grades) for s in STATUSES}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n)


def _progress_line(grading: Grading, student: str, stem: str, seconds: float) -> str:
    grades = grading.of(student, stem)
    score = f"{_num(sum(g.points for g in grades))}/{_num(sum(g.max_points for g in grades))} points"
    problem = grading.problems.get((student, stem))
    detail = f"not run: {problem}" if problem else _counts(grades)
    return f"graded {student} {stem}: {score} ({detail}) [{seconds:.0f} s]"


def write_reports(grading: Grading, profile: str) -> None:
    """``grades.csv`` and ``feedback/<student>/report.md`` for every student."""
    with open(grading.out / "grades.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "notebook", "exercise", "points", "max_points", "status"])
        for g in grading.grades:
            writer.writerow([g.student, g.notebook, g.exercise, _num(g.points), _num(g.max_points), g.status])
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    for student in grading.students:
        folder = grading.out / "feedback" / student
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.md").write_text(student_report(grading, student, when, profile))


def student_report(grading: Grading, student: str, when: str, profile: str) -> str:
    grades = grading.of(student)
    lines = [f"# Feedback for {student}", "",
             f"**{_num(sum(g.points for g in grades))} / {_num(sum(g.max_points for g in grades))} points** "
             f"({_counts(grades)}), graded {when} (profile {profile}).", "",
             "| exercise | notebook | points | status |", "|---|---|---|---|"]
    lines += [f"| {g.exercise} {g.title} | {g.notebook} | {_num(g.points)} / {_num(g.max_points)} | {g.status} |"
              for g in grades]
    for stem in grading.notebooks:
        mine = grading.of(student, stem)
        lines += ["", f"## {stem}: {_num(sum(g.points for g in mine))} / {_num(sum(g.max_points for g in mine))} "
                      "points", ""]
        if (grading.out / "feedback" / student / f"{stem}.html").is_file():
            lines += [f"The graded notebook, with nbgrader's marks: [{stem}.html]({stem}.html)", ""]
        if (student, stem) in grading.problems:
            lines += [f"**The notebook could not be run:** {grading.problems[(student, stem)]}", ""]
        for g in mine:
            lines += [f"### Exercise {g.exercise} · {g.title}: {_num(g.points)} / {_num(g.max_points)}, {g.status}",
                      "", "```text", g.feedback or "(no message)", "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def summary(grading: Grading) -> list[str]:
    """The one-screen summary: one line per student (points per notebook and total) and where the
    reports are."""
    short = {stem: stem.split("_")[0] for stem in grading.notebooks}
    lines = [f"graded {len(grading.students)} student(s) on {len(grading.notebooks)} notebook(s) "
             f"({', '.join(grading.notebooks)})"]
    width = max(len(s) for s in grading.students)
    for student in grading.students:
        parts = []
        for stem in grading.notebooks:
            mine = grading.of(student, stem)
            mark = "" if (student, stem) not in grading.problems else " not run"
            if mine and all(g.status == "not submitted" for g in mine):
                mark = " missing"
            parts.append(f"{short[stem]}: {_num(sum(g.points for g in mine))}/{_num(sum(g.max_points for g in mine))}"
                         f"{mark}")
        grades = grading.of(student)
        lines.append(f"  {student.ljust(width)}  " + "  ".join(parts)
                     + f"  total {_num(sum(g.points for g in grades))}/{_num(sum(g.max_points for g in grades))}")
    lines += [f"reports: {grading.out / 'feedback'}/<student>/report.md (and nbgrader's <notebook>.html)",
              f"grades:  {grading.out / 'grades.csv'}"]
    return lines
