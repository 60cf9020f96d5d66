"""``optnb site [--results DIR] [--out DIR]``: static HTML of the latest reproduction's executed notebooks.

An index in notebook order (the runs of one notebook grouped, with their parameters) and a page
per run with its provenance line (notebook, run, status, profile, dataset and whether it is the
paper's, device, seed, git commit, torch, finished time), figures embedded; readable offline,
without a kernel. Nothing is executed: run ``optnb reproduce`` (``make reproduce``) first.
The site replaces the previous one only once it is complete. Exit 2 when there is nothing to render.
"""

from __future__ import annotations

import argparse
import time

NAME = "site"
HELP = "static HTML site of the latest reproduction's executed notebooks"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", "--results-dir", dest="results", default=None,
                   help="results folder (default results/ or $OPTNB_RESULTS)")
    p.add_argument("--out", default=None, help="site folder (default <results>/site)")


def run(args: argparse.Namespace) -> int:
    from optnb.experiments import site  # deferred: nbconvert, only when a site is built

    start = time.monotonic()
    index, pages = site.build(args.results, args.out)
    print(f"site: {pages} run page(s) in {time.monotonic() - start:.1f} s: {index}", flush=True)
    return 0
