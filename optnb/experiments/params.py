"""Notebook parameter specs for ``08b_search_stability`` (``NB08B``) and ``90_reproduce_tables``
(``NB90``).

The common parameters (PROFILE, SEED, DEVICE, DATASET, LIVE, RESULTS_DIR, RUN_ID) are validated by
``optnb.experiments.resolve``; ``RESULTS_DIR`` is the folder whose runs the report reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from optnb.experiments import seeds
from optnb.experiments.targets import SEARCH_ROWS, table_names
from optnb.specs import PROFILES, ParameterError, boolean, choice, integer, text


def _parses(parse: Callable[[str], Any]) -> Callable[[str], bool]:
    def ok(value: str) -> bool:
        try:
            parse(value)
        except ParameterError:
            return False
        return True
    return ok


def _tables_ok(value: str) -> bool:
    names = [n.strip().lower() for n in value.split(",") if n.strip()]
    return names == ["all"] or (bool(names) and all(n in table_names() for n in names))


NB08B = {
    "ROWS": text(help="Table 4 search rows to compare, comma-separated",
                 check=_parses(seeds.parse_rows),
                 rule=f"a comma-separated list of {', '.join(SEARCH_ROWS)}"),
    "SEEDS": text(help="the seeds whose searches are compared, e.g. '0,1,2,3'",
                  check=_parses(seeds.parse_seeds),
                  rule=f"2 to {seeds.MAX_SEEDS} different non-negative ints separated by commas"),
    "RUN_MISSING": boolean(help="search the (row, seed) pairs not found in the results folder first"),
    "JOBS": integer(1, 64, help="searches at once when RUN_MISSING (worker processes)"),
}

NB90 = {
    "TABLES": text(help=f"'all' or a comma-separated list of {', '.join(table_names())}",
                   check=_tables_ok,
                   rule=f"'all' or a comma-separated list of {', '.join(table_names())}"),
    "SHOW_PROFILE": choice("all", *PROFILES,
                           help="only the runs of this profile ('all': every run, labelled)"),
}
