"""The ``optnb`` command (also ``python -m optnb``).

``optnb list`` (notebooks and their parameters), ``optnb info`` (versions, device, datasets),
``optnb run NOTEBOOK [-p NAME=VALUE ...]`` (one parameterised papermill run). ``train``, ``bench``,
``search``, ``evaluate`` and ``reproduce`` are delegated to their modules' ``main(argv)``.
Bad input prints one line to stderr and exits with code 2; a failed run exits with code 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

#: subcommand -> (module whose ``main(argv) -> int`` handles it, pass the subcommand as argv[0])
DELEGATES: dict[str, tuple[str, bool]] = {
    "train": ("optnb.train.cli", False),
    "bench": ("optnb.train.bench", False),
    "search": ("optnb.nas.cli", True),
    "evaluate": ("optnb.nas.cli", True),
    "reproduce": ("optnb.experiments.reproduce", False),
}
BAD_INPUT = 2
RUN_FAILED = 1


class CliError(Exception):
    """Bad command-line input: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CliError(message)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# ------------------------------------------------------------------------------------------------
# Parameter parsing: NAME=VALUE typed by the notebook's own defaults


_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def coerce(name: str, raw: str, default: Any) -> Any:
    """Turn ``raw`` into the type of the notebook's ``default`` (so ``-p AUGMENT=false`` is False,
    not the truthy string papermill's own ``-p`` would pass)."""
    import yaml

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
    import yaml

    params: dict[str, Any] = {}
    if yaml_text:
        try:
            loaded = yaml.safe_load(yaml_text)
        except yaml.YAMLError as err:
            raise CliError(f"-y is not valid YAML: {_one_line(err)}") from None
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


# ------------------------------------------------------------------------------------------------
# Subcommands


def cmd_list(args: argparse.Namespace) -> int:
    from optnb.experiments.notebooks import discover
    from optnb.experiments.profiles import COMMON, notebook_spec

    infos = discover()
    if args.json:
        print(json.dumps({i.stem: {"path": str(i.path), "parameters": {
            n: {"default": p.default, "type": type(p.default).__name__}
            for n, p in i.parameters.items()}} for i in infos}, indent=2))
        return 0
    for info in infos:
        print(f"{info.stem}  ({info.path.name})")
        try:
            spec = {**COMMON, **notebook_spec(info.stem)}
        except (ImportError, AttributeError):
            spec = dict(COMMON)
        for name, p in info.parameters.items():
            rule = spec[name].describe() if name in spec else type(p.default).__name__
            print(f"    {name:<14} = {p.default!r:<22} {rule}")
    if not infos:
        print("no notebooks found", file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from optnb.info import environment_info, format_info

    info = environment_info()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from optnb.experiments.notebooks import find_notebook, notebook_parameters
    from optnb.experiments.runner import Run, report, run_notebook

    path = find_notebook(args.notebook)
    defaults = {n: p.default for n, p in notebook_parameters(path).items()}
    params = parse_parameters(args.param or [], args.yaml, defaults, path.stem)
    if args.profile:
        if "PROFILE" not in defaults:
            raise CliError(f"{path.stem} has no PROFILE parameter; --profile does not apply")
        params["PROFILE"] = args.profile
    env_profile = os.environ.get("OPTNB_PROFILE")
    if env_profile and params.get("PROFILE", env_profile) != env_profile and not args.quiet:
        print(f"note: $OPTNB_PROFILE={env_profile} overrides PROFILE={params['PROFILE']!r} "
              "inside the notebook (resolve applies environment overrides)", file=sys.stderr)
    from optnb.paths import notebooks_dir

    notebook = path.stem if path.parent == notebooks_dir() else str(path)
    run = Run(notebook, params, args.run_id or "")
    result = run_notebook(run, args.results, timeout=args.timeout, log=not args.quiet,
                          skip_complete=not args.force, store_widget_state=args.keep_widgets)
    if not result.ok:
        print(report([result]), file=sys.stderr)
        return RUN_FAILED
    print(result.output_path or result.sidecar_path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from optnb.experiments.profiles import PROFILE_CHOICES

    parser = _Parser(prog="optnb", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p = sub.add_parser("list", help="notebooks and their parameters")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("info", help="versions, device, datasets found")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("run", help="execute one notebook headlessly with papermill")
    p.add_argument("notebook", help="stem (00_tour), two-digit prefix (00) or path")
    p.add_argument("-p", "--param", action="append", metavar="NAME=VALUE",
                   help="a parameter, typed by the notebook's default (repeatable)")
    p.add_argument("-y", "--yaml", metavar="YAML", help="parameters as a YAML mapping")
    p.add_argument("--profile", choices=PROFILE_CHOICES, help="sets PROFILE")
    p.add_argument("--results", metavar="DIR", help="results folder (default: results/)")
    p.add_argument("--run-id", metavar="ID", help="default: stem + hash of the parameters")
    p.add_argument("--timeout", type=float, metavar="S", help="per-cell timeout in seconds")
    p.add_argument("--force", action="store_true", help="run even if the sidecar says complete")
    p.add_argument("--keep-widgets", action="store_true", help="store widget state in the output")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_run)
    for name in DELEGATES:
        sub.add_parser(name, help=f"delegated to {DELEGATES[name][0]} (see optnb {name} --help)")
    return parser


def delegate(command: str, argv: list[str]) -> int:
    """Hand ``argv`` to the subcommand's module; a missing module is reported, not a traceback."""
    module_name, with_name = DELEGATES[command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and (module_name == err.name or module_name.startswith(err.name + ".")):
            print(f"optnb {command}: not available in this checkout ({module_name} is missing)",
                  file=sys.stderr)
            return BAD_INPUT
        raise
    code = module.main([command, *argv] if with_name else list(argv))
    return int(code or 0)


def main(argv: Sequence[str] | None = None) -> int:
    from optnb.experiments.notebooks import UnknownNotebookError
    from optnb.experiments.profiles import ParameterError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATES:
        return delegate(argv[0], argv[1:])
    try:
        args = build_parser().parse_args(argv)
        if not getattr(args, "func", None):
            raise CliError("a command is required: " + ", ".join(["list", "info", "run",
                                                                  *DELEGATES]))
        return int(args.func(args))
    except (CliError, ParameterError, UnknownNotebookError) as err:
        print(f"optnb: error: {_one_line(err)}", file=sys.stderr)
        return BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
