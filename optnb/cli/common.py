"""What every subcommand of ``optnb`` shares: the parser that reports errors in one line, the exit
codes, and the options of the commands that produce a recorded result (train, search, evaluate).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from optnb.specs import DATASET_CHOICES, PROFILE_CHOICES

RUN_FAILED, BAD_INPUT, INTERRUPTED = 1, 2, 130


class CliError(ValueError):
    """Bad command-line input: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but an error raises :class:`CliError` (one line, exit 2) instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise CliError(message)


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def exit_code(command: Callable[[], int]) -> int:
    """Run ``command`` and map what it raises to the exit codes: optnb's input errors (ValueError
    and LookupError subclasses naming the valid choices) print one line and give 2; a diverged run
    (FloatingPointError; its last good checkpoint is kept) gives 1; Ctrl-C gives 130.
    ``$OPTNB_DEBUG`` re-raises, for the whole traceback."""
    try:
        return int(command())
    except (ValueError, LookupError, FloatingPointError) as err:
        if os.environ.get("OPTNB_DEBUG"):
            raise
        print(f"optnb: error: {one_line(err)}", file=sys.stderr)
        return RUN_FAILED if isinstance(err, FloatingPointError) else BAD_INPUT
    except KeyboardInterrupt:
        print("optnb: interrupted", file=sys.stderr)
        return INTERRUPTED


def add_run_options(p: argparse.ArgumentParser, seed: bool = True) -> None:
    """``--profile --device --dataset --seed --epochs --results --run-id``: the parameters every
    producing notebook shares, so that a command and its notebook share one run folder."""
    p.add_argument("--profile", default="auto", choices=PROFILE_CHOICES,
                   help="smoke (CI CPU) | quick (one GPU) | paper | auto (default)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dataset", default="auto", choices=DATASET_CHOICES,
                   help="auto: the paper's dataset when present under data/, else embedded")
    if seed:
        p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=0, help="0: the profile's schedule")
    p.add_argument("--results", "--results-dir", dest="results", default="",
                   help="results root (default: results/ or $OPTNB_RESULTS)")
    p.add_argument("--run-id", default="", help="run folder name (default: notebook + hash of "
                                                "the parameters, as the notebook would use)")


def run_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The common notebook parameters from :func:`add_run_options` (no widgets from a CLI)."""
    return {"PROFILE": args.profile, "SEED": args.seed, "DEVICE": args.device,
            "DATASET": args.dataset, "LIVE": "off", "RESULTS_DIR": args.results,
            "RUN_ID": args.run_id, "EPOCHS": args.epochs}
