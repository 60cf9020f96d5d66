"""Notebook parameter spec for ``90_reproduce_tables`` (``NB90``).

The common parameters (PROFILE, SEED, DEVICE, DATASET, LIVE, RESULTS_DIR, RUN_ID) are validated by
``optnb.experiments.resolve``; ``RESULTS_DIR`` is the folder whose runs the report reads.
"""

from __future__ import annotations

from optnb.experiments.targets import table_names
from optnb.specs import PROFILES, choice, text


def _tables_ok(value: str) -> bool:
    names = [n.strip().lower() for n in value.split(",") if n.strip()]
    return names == ["all"] or (bool(names) and all(n in table_names() for n in names))


NB90 = {
    "TABLES": text(help=f"'all' or a comma-separated list of {', '.join(table_names())}",
                   check=_tables_ok,
                   rule=f"'all' or a comma-separated list of {', '.join(table_names())}"),
    "SHOW_PROFILE": choice("all", *PROFILES,
                           help="only the runs of this profile ('all': every run, labelled)"),
}
