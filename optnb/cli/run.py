"""``optnb run NOTEBOOK [-p NAME=VALUE ...] [-y YAML]``: one parameterised papermill run.

Parameters are typed by the notebook's own defaults (so ``-p AUGMENT=false`` is False, not the
truthy string papermill's ``-p`` would pass) and validated like every other entry point.
``-p RUN_ID=ID`` and ``-p RESULTS_DIR=DIR`` are ``--run-id ID`` and ``--results DIR`` (the runner
sets both in the notebook); giving a parameter and its option with different values is refused.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import yaml

from optnb.cli.common import RUN_FAILED, CliError, bounded, one_line
from optnb.experiments.notebooks import find_notebook, notebook_parameters
from optnb.experiments.runner import Run, report, run_notebook
from optnb.paths import notebooks_dir
from optnb.specs import PROFILE_CHOICES

NAME = "run"
HELP = "execute one notebook headlessly with papermill"

_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")
#: notebook parameters the runner sets, and the option that sets them
RUNNER_OPTIONS = {"RUN_ID": ("run_id", "--run-id"), "RESULTS_DIR": ("results", "--results")}


def coerce(name: str, raw: str, default: Any) -> Any:
    """Turn ``raw`` into the type of the notebook's ``default``."""

    def bad(expected: str) -> CliError:
        return CliError(f"parameter {name} expects {expected} (default {default!r}), got {raw!r}")

    if isinstance(default, bool):
        if raw.strip().lower() in _TRUE:
            return True
        if raw.strip().lower() in _FALSE:
            return False
        raise bad("a bool (true/false)")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise bad("an int") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise bad("a float") from None
    if isinstance(default, str):
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        raise bad("a YAML value") from None


def parse_parameters(pairs: Sequence[str], yaml_text: str | None,
                     defaults: dict[str, Any], notebook: str) -> dict[str, Any]:
    """``-y`` YAML first, then ``-p NAME=VALUE`` pairs, each typed by ``defaults``."""
    params: dict[str, Any] = {}
    if yaml_text:
        try:
            loaded = yaml.safe_load(yaml_text)
        except yaml.YAMLError as err:
            raise CliError(f"-y is not valid YAML: {one_line(err)}") from None
        if not isinstance(loaded, dict):
            raise CliError(f"-y must be a YAML mapping like 'SEED: 1', got {yaml_text!r}")
        params.update(loaded)
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise CliError(f"-p expects NAME=VALUE, got {pair!r}")
        if name not in defaults:
            raise CliError(f"{notebook}: unknown parameter {name}; its parameters cell defines: "
                           f"{', '.join(defaults) or '(nothing)'}")
        params[name] = coerce(name, raw, defaults[name])
    return params


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", help="stem (00_tour), two-digit prefix (00) or path")
    p.add_argument("-p", "--param", action="append", metavar="NAME=VALUE",
                   help="a parameter, typed by the notebook's default (repeatable)")
    p.add_argument("-y", "--yaml", metavar="YAML", help="parameters as a YAML mapping")
    p.add_argument("--profile", choices=PROFILE_CHOICES, help="sets PROFILE")
    p.add_argument("--results", "--results-dir", dest="results", metavar="DIR",
                   help="results folder (default: results/)")
    p.add_argument("--run-id", metavar="ID", help="default: stem + hash of the parameters")
    p.add_argument("--timeout", type=bounded("--timeout", float, 0, above=True), metavar="S",
                   help="per-cell timeout in seconds (> 0; default: by profile)")
    p.add_argument("--force", action="store_true", help="run even if the sidecar says complete")
    p.add_argument("--keep-widgets", action="store_true", help="store widget state in the output")
    p.add_argument("-q", "--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    path = find_notebook(args.notebook)
    defaults = {n: p.default for n, p in notebook_parameters(path).items()}
    params = parse_parameters(args.param or [], args.yaml, defaults, path.stem)
    for name, (dest, option) in RUNNER_OPTIONS.items():
        if name not in params:
            continue
        value, given = params.pop(name), getattr(args, dest)
        if not isinstance(value, str):
            raise CliError(f"parameter {name} expects a string, got {value!r}; or use {option}")
        if value and given and value != given:
            raise CliError(f"-p {name}={value!r} and {option} {given!r} disagree; give one of them")
        setattr(args, dest, given or value)
    if args.profile:
        if "PROFILE" not in defaults:
            raise CliError(f"{path.stem} has no PROFILE parameter; --profile does not apply")
        params["PROFILE"] = args.profile
    env_profile = os.environ.get("OPTNB_PROFILE")
    if env_profile and params.get("PROFILE", env_profile) != env_profile and not args.quiet:
        print(f"note: $OPTNB_PROFILE={env_profile} overrides PROFILE={params['PROFILE']!r} "
              "inside the notebook (resolve applies environment overrides)", file=sys.stderr)
    notebook = path.stem if path.parent == notebooks_dir() else str(path)
    result = run_notebook(Run(notebook, params, args.run_id or ""), args.results,
                          timeout=args.timeout, log=not args.quiet, skip_complete=not args.force,
                          store_widget_state=args.keep_widgets)
    if not result.ok:
        print(report([result]), file=sys.stderr)
        return RUN_FAILED
    print(result.output_path or result.sidecar_path)
    return 0
