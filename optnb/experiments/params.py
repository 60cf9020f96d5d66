"""Notebook parameter spec for ``90_reproduce_tables`` (``NB90``).

The common parameters (PROFILE, SEED, DEVICE, DATASET, LIVE, RESULTS_DIR, RUN_ID) are validated by
``optnb.experiments.resolve``; ``RESULTS_DIR`` is the folder whose runs the report reads.
"""

from __future__ import annotations

from optnb.specs import PROFILES, choice, text

NB90 = {
    "TABLES": text(help="'all' or a comma-separated list of table1, table2, table4, table5"),
    "SHOW_PROFILE": choice("all", *PROFILES,
                           help="only the runs of this profile ('all': every run, labelled)"),
}
