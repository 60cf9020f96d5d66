"""The ``optnb`` command (also ``python -m optnb``): one argparse tree, a module per subcommand.

    optnb list | info | run NOTEBOOK | train | search | evaluate | reproduce | bench | site | present | teach

Each subcommand module has ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
Commands that produce a result (run, train, search, evaluate, reproduce) go through the same
``resolve``/``record`` as the notebooks and write the same sidecar. Bad input (including a run id
outside the results root, a results folder that cannot be written and a run folder another
process holds) prints one line to stderr and exits 2; a failed run, and a write the file system
refuses (a full disk), exit 1 with one line; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from optnb.cli import bench, evaluate, info, listing, present, reproduce, run, search, site, teach, train
from optnb.cli.common import CliError, Parser, exit_code

COMMANDS = (listing, info, run, train, search, evaluate, reproduce, bench, site, present, teach)


def build_parser() -> Parser:
    parser = Parser(prog="optnb", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in COMMANDS:
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def _dispatch(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not getattr(args, "func", None):
        raise CliError("a command is required: " + ", ".join(m.NAME for m in COMMANDS))
    args.argv = argv  # as typed, for the provenance of what the command writes
    return args.func(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the subcommand; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return exit_code(lambda: _dispatch(argv))
