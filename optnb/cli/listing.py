"""``optnb list [--json]``: the notebooks of the suite, their parameters and the valid values."""

from __future__ import annotations

import argparse
import json
import sys

from optnb.experiments.notebooks import discover
from optnb.experiments.profiles import COMMON, notebook_spec

NAME = "list"
HELP = "notebooks and their parameters"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    infos = discover()
    if args.json:
        print(json.dumps({i.stem: {"path": str(i.path), "parameters": {
            n: {"default": p.default, "type": type(p.default).__name__}
            for n, p in i.parameters.items()}} for i in infos}, indent=2))
        return 0
    for info in infos:
        print(f"{info.stem}  ({info.path.name})")
        spec = {**COMMON, **notebook_spec(info.stem)}
        for name, p in info.parameters.items():
            rule = spec[name].describe() if name in spec else type(p.default).__name__
            print(f"    {name:<14} = {p.default!r:<22} {rule}")
    if not infos:
        print("no notebooks found", file=sys.stderr)
    return 0
