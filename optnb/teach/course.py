"""The student and solution builds of the exercise notebooks, through nbgrader (docs/teaching.md).

One nbgrader *assignment* per notebook of :data:`optnb.teach.NOTEBOOKS`: the assignment id is the
notebook's stem and the assignment holds that one notebook (``source/<stem>/<stem>.ipynb``).

* the **student build** (``optnb teach student``) is nbgrader's ``generate_assignment`` run in a
  private course folder in a temporary directory, with its own SQLite gradebook: the solution
  regions become nbgrader's stub (``raise NotImplementedError()``), outputs are cleared, the task
  and check cells locked and checksummed; ``DIR/<stem>.ipynb`` plus a README for students;
* the **solution build** (``optnb teach solutions``) is the source notebooks with outputs cleared
  and nbgrader's metadata kept, laid out as nbgrader's ``source/`` (``DIR/<stem>/<stem>.ipynb``).

nbgrader is driven through its converters with an explicit ``Config``: no ``nbgrader_config.py``,
no ``~/.jupyter`` is read or written. A build goes to a staging folder first and replaces ``DIR``
only when it is complete; ``DIR`` is replaced only when it is empty or a previous build of the same
kind (``--force`` replaces anything else).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import nbformat
from nbgrader.converters import GenerateAssignment
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config

from optnb.paths import notebooks_dir, repo_root
from optnb.teach.cells import BEGIN, END, exercise_cells, missing_cells
from optnb.teach.exercises import NOTEBOOKS, for_notebook

COURSE_ID = "optnb"
#: the file that marks a folder as one of our builds (JSON: kind, notebooks, created)
MARKER = ".optnb-build"
BUILD_KINDS = ("student", "solutions")


class BuildError(ValueError):
    """A build that cannot be made or written where asked; the message is one line."""


@dataclass(frozen=True)
class Build:
    kind: str              # one of BUILD_KINDS
    out: Path
    notebooks: tuple[Path, ...]


# --------------------------------------------------------------------------------------------
# nbgrader plumbing shared with optnb.teach.autograding
# --------------------------------------------------------------------------------------------


def nbgrader_config(root: Path, db: Path) -> Config:
    """nbgrader's configuration for a course folder ``root`` with the gradebook ``db`` (SQLite)."""
    c = Config()
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.course_id = COURSE_ID
    c.CourseDirectory.db_url = f"sqlite:///{db}"
    return c


def course_directory(config: Config, log: logging.Logger) -> CourseDirectory:
    return CourseDirectory(config=config, log=log)


@contextmanager
def environment(**variables: str) -> Iterator[None]:
    """``os.environ`` with ``variables`` set (kernels that nbgrader starts inherit it) and the
    interpreter's script folder on ``PATH`` (nbgrader runs ``alembic`` when it creates a gradebook);
    restored afterwards."""
    scripts = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if shutil.which("alembic") is None and scripts not in path.split(os.pathsep):
        variables = {**variables, "PATH": scripts + os.pathsep + path if path else scripts}
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def quiet_log(name: str) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger for nbgrader's converters that writes to a buffer, not to the terminal."""
    log = logging.getLogger(f"optnb.teach.nbgrader.{name}")
    log.propagate = False
    log.setLevel(logging.INFO)
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    log.addHandler(handler)
    try:
        yield log, buffer
    finally:
        log.removeHandler(handler)


def check_ready(nb: nbformat.NotebookNode, stem: str) -> None:
    """Refuse a notebook that lacks a cell of one of its exercises or has other nbgrader metadata."""
    problems = missing_cells(nb, stem)
    if problems:
        raise BuildError(f"notebook {stem} is not ready for nbgrader: " + "; ".join(problems))


def stage_source(root: Path, stems: tuple[str, ...]) -> None:
    """Copy the repository's notebooks into ``root/source/<stem>/<stem>.ipynb``, after checking
    that each carries the task, solution and check cells of all its exercises."""
    for stem in stems:
        path = notebooks_dir() / f"{stem}.ipynb"
        if not path.is_file():
            raise BuildError(f"notebook {path} is missing; the notebooks with exercises are: " + ", ".join(NOTEBOOKS))
        check_ready(nbformat.read(path, as_version=4), stem)
        target = root / "source" / stem
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / path.name)


def generate_assignments(coursedir: CourseDirectory, config: Config, log: logging.Logger,
                         buffer: io.StringIO, stems: tuple[str, ...]) -> None:
    """nbgrader's ``generate_assignment`` for every stem: ``release/<stem>/<stem>.ipynb`` and the
    source cells in the gradebook (``autograde`` overwrites locked cells with them)."""
    for stem in stems:
        coursedir.assignment_id = stem
        converter = GenerateAssignment(coursedir=coursedir, config=config, log=log)
        converter.force = True
        try:
            converter.start()
        except Exception as err:
            raise BuildError(f"nbgrader could not generate the student version of {stem}: "
                             f"{last_error(buffer.getvalue()) or err}") from None


def last_error(log_text: str) -> str:
    """The most telling line of an nbgrader log: the last line of its last traceback."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    for line in reversed(lines):
        if not line.startswith(("[", "File ", "^", "~")) and ("Error" in line or "Exception" in line):
            return line
    errors = [line for line in lines if line.startswith("[ERROR]")]
    return errors[-1][len("[ERROR] "):] if errors else ""


# --------------------------------------------------------------------------------------------
# the builds
# --------------------------------------------------------------------------------------------


def default_out(kind: str) -> Path:
    """``student/`` or ``solutions/`` in the checkout."""
    return repo_root() / kind


def build_student(out: str | os.PathLike | None = None, force: bool = False) -> Build:
    """The student build of every notebook with exercises into ``out`` (default ``student/``)."""
    target = _check_target(Path(out) if out else default_out("student"), "student", force)
    with (tempfile.TemporaryDirectory(prefix="optnb-student-") as tmp, quiet_log("student") as (log, buffer),
          environment()):
        root = Path(tmp) / "course"
        config = nbgrader_config(root, Path(tmp) / "gradebook.db")
        stage_source(root, NOTEBOOKS)
        generate_assignments(course_directory(config, log), config, log, buffer, NOTEBOOKS)
        with _staging(target, "student") as staging:
            for stem in NOTEBOOKS:
                released = root / "release" / stem / f"{stem}.ipynb"
                _check_student_notebook(released, stem)
                shutil.copyfile(released, staging / released.name)
            (staging / "README.md").write_text(student_readme())
    return Build("student", target, tuple(target / f"{stem}.ipynb" for stem in NOTEBOOKS))


def build_solutions(out: str | os.PathLike | None = None, force: bool = False) -> Build:
    """The solution build into ``out`` (default ``solutions/``), laid out as nbgrader's ``source/``."""
    target = _check_target(Path(out) if out else default_out("solutions"), "solutions", force)
    with _staging(target, "solutions") as staging:
        for stem in NOTEBOOKS:
            path = notebooks_dir() / f"{stem}.ipynb"
            nb = nbformat.read(path, as_version=4)
            check_ready(nb, stem)
            for cell in nb.cells:
                if cell.cell_type == "code":
                    cell.outputs, cell.execution_count = [], None
            (staging / stem).mkdir()
            nbformat.write(nb, staging / stem / path.name)
        (staging / "README.md").write_text(solutions_readme())
    return Build("solutions", target, tuple(target / stem / f"{stem}.ipynb" for stem in NOTEBOOKS))


def _check_student_notebook(path: Path, stem: str) -> None:
    """Refuse a student notebook that still holds a solution region (a malformed BEGIN/END pair
    that nbgrader left alone) or lost an exercise cell."""
    nb = nbformat.read(path, as_version=4)
    leaked = [i for i, cell in enumerate(nb.cells) if BEGIN in cell.source or END in cell.source]
    if leaked:
        raise BuildError(f"the student version of {stem} still holds a solution region in cell(s) "
                         f"{leaked}; check the ### BEGIN/END SOLUTION markers")
    present = exercise_cells(nb)
    lost = [e.id for e in for_notebook(stem) if not all(present.get(e.id, {}).values())]
    if lost:
        raise BuildError(f"the student version of {stem} lost the cells of exercise(s) {', '.join(lost)}")


def read_marker(folder: Path) -> dict | None:
    """The build marker of ``folder`` (kind, notebooks, created), or None."""
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _check_target(target: Path, kind: str, force: bool) -> Path:
    target = target.expanduser().resolve()
    if notebooks_dir().resolve().is_relative_to(target) or target == Path.home().resolve():
        raise BuildError(f"--out {target} would replace the repository's notebooks or your home folder; "
                         f"choose a new folder (default {default_out(kind)})")
    if target.exists() and not target.is_dir():
        raise BuildError(f"--out {target} is a file, not a folder; choose another folder")
    if target.is_dir() and any(target.iterdir()) and not force:
        marker = read_marker(target)
        if not marker or marker.get("kind") != kind:
            raise BuildError(f"{target} is not empty and is not a previous {kind} build; choose another "
                             f"--out or pass --force to replace it")
    return target


@contextmanager
def _staging(target: Path, kind: str) -> Iterator[Path]:
    """A staging folder beside ``target`` that replaces it once the build is complete (an earlier
    build stays as it was when the build fails)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    umask = os.umask(0o022)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the build is an ordinary folder
    try:
        yield staging
        (staging / MARKER).write_text(json.dumps({
            "kind": kind, "notebooks": list(NOTEBOOKS),
            "created": datetime.now(UTC).isoformat(timespec="seconds")}, indent=1) + "\n")
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            target.rename(old / "previous")
        staging.rename(target)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


# --------------------------------------------------------------------------------------------
# what the builds say
# --------------------------------------------------------------------------------------------


def listing() -> list[str]:
    """``optnb teach list``: one line per exercise, the totals of each notebook and of all."""
    rows = [("id", "notebook", "title", "kind", "min", "points")]
    for stem in NOTEBOOKS:
        exercises = for_notebook(stem)
        rows += [(e.id, stem, e.title, e.kind, str(e.minutes), str(e.points)) for e in exercises]
        rows.append(("", "", f"{stem}: {len(exercises)} exercise{'s' if len(exercises) != 1 else ''}", "total",
                     str(sum(e.minutes for e in exercises)), str(sum(e.points for e in exercises))))
    exercises = [e for stem in NOTEBOOKS for e in for_notebook(stem)]
    rows.append(("", "", f"all {len(NOTEBOOKS)} notebooks: {len(exercises)} exercises", "total",
                 str(sum(e.minutes for e in exercises)), str(sum(e.points for e in exercises))))
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    return ["  ".join(cell.rjust(w) if i >= 4 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            .rstrip() for row in rows]


def student_readme() -> str:
    lines = ["# Exercises", "",
             "These notebooks are the course's notebooks with exercises left for you. Each exercise has",
             "three cells:", "",
             "1. the **task** (read it; it says the kind of exercise, the expected time and the points);",
             "2. **your cell**: replace `raise NotImplementedError()` with your code;",
             "3. the **check**, which you run after your cell (do not edit it; it is locked).", "",
             "The check prints one line:", "",
             "* `[correct] Exercise 01.1 (...)`: done;",
             "* `[not done yet] Exercise 01.1 (...)`: your cell still raises `NotImplementedError`;",
             "* a wrong answer stops with what was **expected**, what your code **found** and a **hint**.", "",
             "Run the notebook top to bottom (Kernel > Restart & Run All) before you hand it in: the",
             "grader runs it that way. If your cell fails to run, its function is not defined and its",
             "check gives no points.",
             "Hand in the notebooks under their names, unchanged apart from your cells.", "",
             "| notebook | exercises | about | points |", "|---|---|---|---|"]
    for stem in NOTEBOOKS:
        exercises = for_notebook(stem)
        lines.append(f"| {stem}.ipynb | {', '.join(e.id for e in exercises)} | "
                     f"{sum(e.minutes for e in exercises)} min | {sum(e.points for e in exercises)} |")
    return "\n".join(lines) + "\n"


def solutions_readme() -> str:
    return "\n".join([
        "# Solutions (teachers only)", "",
        "The notebooks with their solutions and nbgrader's cell metadata, outputs cleared, laid out as",
        "nbgrader's `source/` folder (`<assignment>/<notebook>.ipynb`, one assignment per notebook).",
        "Copy this folder to `<your course>/source/` to use them with your own nbgrader set-up, or",
        "grade with `optnb teach grade DIR` (make grade DIR=...), which needs none.", ""])
