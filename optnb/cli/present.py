"""``optnb present [--port N] [--ip ADDR] [--token T]``: the beta explorer (notebook 04) and the
activation explorer (notebook 03) as Voila apps, code hidden (``make present``).

Prints each app's address with its token, then becomes the Voila server until Ctrl-C. The token
is always on: Voila hides the code but a page can still run code in its kernel.
"""

from __future__ import annotations

import argparse

from optnb.experiments import present

NAME = "present"
HELP = "serve the explorers as Voila apps (code hidden)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=present.DEFAULT_PORT,
                   help="0 picks a free port (default %(default)s)")
    p.add_argument("--ip", default="127.0.0.1",
                   help="address to listen on; 0.0.0.0 lets a classroom connect (default %(default)s)")
    p.add_argument("--token", default="", help="the token visitors pass once (default: a fresh random one)")
    p.add_argument("--jupyter-home", default=None, help="Jupyter/IPython/matplotlib dirs (default <repo>/.jupyter)")


def run(args: argparse.Namespace) -> int:
    present.serve(args.port, args.ip, args.token, args.jupyter_home)
    return 0  # pragma: no cover - serve execs Voila
