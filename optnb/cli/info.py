"""``optnb info [--json]``: versions, device, paths and the datasets found."""

from __future__ import annotations

import argparse
import json

from optnb.info import environment_info, format_info

NAME = "info"
HELP = "versions, device, datasets found"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    info = environment_info()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
