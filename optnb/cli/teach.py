"""``optnb teach ACTION``: the teaching edition's exercises, student and solution builds, autograding.

    optnb teach list                             the exercises: notebook, kind, minutes, points
    optnb teach student [--out DIR] [--force]    student notebooks, solutions removed (default student/)
    optnb teach solutions [--out DIR] [--force]  solution notebooks as nbgrader's source/ (default solutions/)
    optnb teach grade DIR [--out OUT] [--profile smoke] [--timeout S]
                                                 autograde DIR/<student_id>/<notebook>.ipynb with nbgrader

A build replaces DIR only when it is empty or a previous build of the same kind (``--force``
replaces anything else). ``grade`` writes everything under OUT (default
``<results>/grading/<timestamp>``): per student ``feedback/<student>/report.md`` and nbgrader's
HTML feedback, ``grades.csv``, the gradebook (SQLite) and nbgrader's course folder.
"""

from __future__ import annotations

import argparse

from optnb.cli.common import CliError, Parser, bounded
from optnb.specs import PROFILE_CHOICES

NAME = "teach"
HELP = "exercises: student build, autograding (nbgrader)"
ACTIONS = ("list", "student", "solutions", "grade")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    sub.add_parser("list", help="the exercises, one line each, and the totals per notebook")
    for kind, what in (("student", "the student build: solutions removed, outputs cleared, task and check cells "
                                   "locked"),
                       ("solutions", "the solution build: the source notebooks with outputs cleared, as "
                                     "nbgrader's source/")):
        q = sub.add_parser(kind, help=what)
        q.add_argument("--out", default="", help=f"output folder (default: {kind}/ in the checkout)")
        q.add_argument("--force", action="store_true",
                       help="replace --out even when it is not empty and not a previous build")
    g = sub.add_parser("grade", help="autograde DIR/<student_id>/<notebook>.ipynb; a report per student")
    g.add_argument("dir", metavar="DIR", help="the completed notebooks, DIR/<student_id>/<notebook>.ipynb")
    g.add_argument("--out", default="", help="output folder, new or empty (default: <results>/grading/<timestamp>)")
    g.add_argument("--profile", default="smoke", choices=PROFILE_CHOICES,
                   help="the profile the notebooks run in (default: smoke)")
    g.add_argument("--timeout", type=bounded("--timeout", int, 1, 24 * 3600, "seconds per cell"), default=300,
                   metavar="S", help="the longest one cell may run, seconds (default: 300)")


def run(args: argparse.Namespace) -> int:
    if not args.action:
        raise CliError("optnb teach needs an action: " + ", ".join(ACTIONS))
    # deferred: optnb.teach loads torch, nbgrader and nbconvert; `optnb --help` must not
    from optnb.teach import autograding, course

    if args.action == "list":
        print("\n".join(course.listing()))
        return 0
    if args.action in ("student", "solutions"):
        build = (course.build_student if args.action == "student" else course.build_solutions)(
            args.out or None, force=args.force)
        print(f"{build.kind} build of {len(build.notebooks)} notebook(s) in {build.out}")
        return 0
    grading = autograding.grade(args.dir, args.out or None, profile=args.profile, timeout=args.timeout,
                                progress=lambda line: print(line, flush=True))
    print("\n".join(autograding.summary(grading)))
    return 0
