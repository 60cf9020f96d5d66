"""What every subcommand of ``optnb`` shares: the parser that reports errors in one line, the exit
codes, the typed options (ranges checked by argparse, one line each), and the options of the
commands that produce a recorded result (train, search, evaluate).
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from optnb.specs import DATASET_CHOICES, PROFILE_CHOICES

RUN_FAILED, BAD_INPUT, INTERRUPTED = 1, 2, 130
#: the largest ``--jobs``/``--workers`` accepted (processes at once)
MAX_PROCESSES = 256
#: the range of a seed (``optnb.experiments.profiles.COMMON["SEED"]``)
SEED_MAX = 2**31 - 1


class CliError(ValueError):
    """Bad command-line input: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but an error raises :class:`CliError` (one line, exit 2) instead of exiting.

    A typed option's own message (``--jobs must be >= 0 (0 = auto), got -1``) is kept as it is,
    without argparse's ``argument --jobs:`` in front."""

    def error(self, message: str) -> NoReturn:
        found = re.match(r"argument (\S+): ((\S+) .*)$", message)
        if found and found.group(3) in found.group(1).split("/"):
            message = found.group(2)
        raise CliError(message)


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def exit_code(command: Callable[[], int]) -> int:
    """Run ``command`` and map what it raises to the exit codes: optnb's input errors (ValueError
    and LookupError subclasses naming the valid choices) print one line and give 2; a diverged run
    (FloatingPointError; its last good checkpoint is kept) and a file system that refuses a write
    (OSError: a full disk, a read-only folder) print one line and give 1; Ctrl-C gives 130.
    ``$OPTNB_DEBUG`` re-raises, for the whole traceback."""
    try:
        return int(command())
    except (ValueError, LookupError, FloatingPointError, OSError) as err:
        if os.environ.get("OPTNB_DEBUG"):
            raise
        print(f"optnb: error: {describe_error(err)}", file=sys.stderr)
        return BAD_INPUT if isinstance(err, (ValueError, LookupError)) else RUN_FAILED
    except KeyboardInterrupt:
        print("optnb: interrupted", file=sys.stderr)
        return INTERRUPTED


#: errors of a file system that refuses a write (full, read-only, a file where a folder should be)
_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
                 errno.EISDIR, errno.EEXIST, errno.EFBIG}


def describe_error(err: BaseException) -> str:
    """One line; an OSError says what failed on which file (``No space left on device: PATH``)."""
    if isinstance(err, OSError) and err.strerror:
        where = f": {err.filename}" if err.filename else ""
        hint = (" (a write was refused; what was written before stays as it was: free space or "
                "choose another folder, then run the same command again)") if err.errno in _WRITE_ERRORS else ""
        return one_line(f"{err.strerror}{where}{hint}")
    return one_line(err)


def bounded(option: str, kind: type = int, lo: float | None = None, hi: float | None = None,
            meaning: str = "", above: bool = False) -> Callable[[str], Any]:
    """An argparse ``type`` for a CLI-only operational option: an ``int`` (or a finite ``float``)
    at least ``lo`` (``above``: more than ``lo``) and at most ``hi``, else one line naming the
    option, the bound and what was given (``--jobs must be >= 0 (0 = auto), got -1``)."""
    noun = "an int" if kind is int else "a finite number"
    note = f" ({meaning})" if meaning else ""

    def convert(raw: str) -> Any:
        try:
            value = kind(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} must be {noun}{note}, got {raw!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{option} must be {noun}{note}, got {raw}")
        if lo is not None and (value <= lo if above else value < lo):
            raise argparse.ArgumentTypeError(f"{option} must be {'>' if above else '>='} {lo}{note}, got {raw}")
        if hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"{option} must be <= {hi}{note}, got {raw}")
        return value

    convert.__name__ = kind.__name__
    return convert


def int_list(option: str, lo: int, hi: int) -> Callable[[str], list[int]]:
    """An argparse ``type`` for a list of ints given as ``0,1,2`` (and, with ``nargs="+"``, as
    ``0 1 2``; :func:`flatten` joins the two forms): each one bounded as :func:`bounded` does."""
    one = bounded(option, int, lo, hi)

    def convert(raw: str) -> list[int]:
        items = [item.strip() for item in raw.split(",")]
        if not all(items):
            raise argparse.ArgumentTypeError(f"{option} takes ints separated by commas or spaces "
                                             f"(e.g. {option} 0,1,2,3), got {raw!r}")
        return [one(item) for item in items]

    convert.__name__ = "int list"
    return convert


def flatten(groups: list[list[int]] | None) -> list[int] | None:
    """``[[0, 1], [2]]`` (``--seeds 0,1 2``) -> ``[0, 1, 2]``; None stays None."""
    return None if groups is None else [item for group in groups for item in group]


def add_run_options(p: argparse.ArgumentParser, seed: bool = True) -> None:
    """``--profile --device --dataset --seed --epochs --results --run-id`` (and ``--compile``, how
    the step runs, not what the run is): the parameters every
    producing notebook shares, so that a command and its notebook share one run folder. Their
    values are checked by ``resolve`` with the notebook's own specs (the same one-line errors)."""
    p.add_argument("--profile", default="auto", choices=PROFILE_CHOICES,
                   help="smoke (CI CPU) | quick (one GPU) | paper | auto (default)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dataset", default="auto", choices=DATASET_CHOICES,
                   help="auto: the paper's dataset when present under data/, else embedded")
    if seed:
        p.add_argument("--seed", type=int, default=0, help=f"SEED, 0 to {SEED_MAX}")
    p.add_argument("--epochs", type=int, default=0, help="EPOCHS; 0 (default): the profile's schedule")
    p.add_argument("--results", "--results-dir", dest="results", default="",
                   help="results root (default: results/ or $OPTNB_RESULTS)")
    p.add_argument("--run-id", default="", help="run folder name under <results>/runs/ (default: "
                                                "notebook + hash of the parameters, as the "
                                                "notebook would use)")
    p.add_argument("--compile", type=compile_option, nargs="?", const=True, default=None,
                   help="torch.compile the training step: on | off | a mode (reduce-overhead, "
                        "max-autotune) (default: the profile's choice: training and evaluation "
                        "compile in quick and paper)")


def compile_option(text: str) -> bool | str:
    """``--compile`` text, checked (``optnb.train.compiling``)."""
    from optnb.train import compiling  # deferred: torch

    try:
        return compiling.parse(text)
    except compiling.CompileOptionError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def compile_choice(args: argparse.Namespace, profile: str, task: str) -> bool | str:
    """``--compile`` when given, else the profile's default for ``task``."""
    # deferred: heavy (torch, the networks, the plans) and only needed here
    from optnb.train import compiling

    return args.compile if args.compile is not None else compiling.default_for(profile, task)


def run_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The common notebook parameters from :func:`add_run_options` (no widgets from a CLI)."""
    return {"PROFILE": args.profile, "SEED": args.seed, "DEVICE": args.device,
            "DATASET": args.dataset, "LIVE": "off", "RESULTS_DIR": args.results,
            "RUN_ID": args.run_id, "EPOCHS": args.epochs}
