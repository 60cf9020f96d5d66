"""Beyond the paper, NAS: cheaper and collapse-resistant searches, as a table beside Table 4.

**Not from the paper.** Each row is a Table 4 search (``targets.SEARCH_ROWS``) with one of the
options the paper leaves open, followed by the evaluation of its cell (notebook 09), on the same
recipe and columns as Table 4:

* **partial channels** (PC-DARTS, Xu et al. 2020; ``PARTIAL_CHANNELS=4``) in each of the three
  spaces. Only the channel sampling and the edge normalisation change: the search keeps the
  profile's (DARTS's) recipe, so the row isolates the sampling from PC-DARTS's larger batch and
  learning rates (``optnb.nas.search.RECIPES["pc_darts"]`` is that recipe, outside the table);
* **the collapse remedies** (``optnb.nas.collapse``): the P-DARTS cap of two skips in the derived
  normal cell and the DARTS+ early stop, in the DARTS space and in the HB space (where the
  eq. (18) identity pair is not counted as skips), each read against the paper's own remedy, the
  HB initialisation (Table 4's ``hb_init`` row).

How stable a search is across seeds is notebook ``08b_search_stability``'s question; the plans
run it in this suite too. Nothing here is compared with a published number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from optnb.experiments import paper
from optnb.experiments.paper import unpublished_table

__all__ = ["DEFAULT_OPTIONS", "STABILITY_NOTEBOOK", "STABILITY_SEEDS", "TABLE", "VARIANTS", "NasVariant",
           "options_of", "variant", "variant_of"]

#: the notebook-08 parameters a Table 4 search leaves at these values; a search that changes one
#: of them is a row of this table (or of no table), never a Table 4 row
DEFAULT_OPTIONS: Mapping[str, Any] = MappingProxyType({
    "PARTIAL_CHANNELS": 1, "MAX_SKIP": -1, "SKIP_HB_PAIR": False, "EARLY_STOP": "off",
    "STABLE_EPOCHS": 10, "DERIVE": "auto", "HB_INIT_LOGIT": 5.0,
})
#: the notebook that compares searches across seeds, and how many seeds it compares per profile
STABILITY_NOTEBOOK = "08b_search_stability"
STABILITY_SEEDS: Mapping[str, int] = MappingProxyType({"smoke": 2, "quick": 4, "paper": 4})


@dataclass(frozen=True)
class NasVariant:
    """One row: the Table 4 search row it modifies (``search``), the notebook-08 options that make
    it, the Table 4 rows it is read against (``baselines``) and the question it asks."""

    key: str
    label: str
    search: str
    options: Mapping[str, Any] = field(default_factory=dict)
    baselines: tuple[str, ...] = ()
    question: str = ""


VARIANTS: tuple[NasVariant, ...] = (
    NasVariant("darts_pc4", "DARTS space, partial channels K = 4", "darts_1st",
               {"PARTIAL_CHANNELS": 4}, ("darts_1st",),
               "how much does sampling 1/4 of the channels cost in error, and save in time?"),
    NasVariant("hb_pc4", "HB space (15), partial channels K = 4", "hb", {"PARTIAL_CHANNELS": 4},
               ("hb",), "does the HB space keep its edge under partial channels?"),
    NasVariant("agd_pc4", "AGD space (20)-(21), partial channels K = 4", "agd",
               {"PARTIAL_CHANNELS": 4}, ("agd",), "does the AGD space keep its edge under partial channels?"),
    NasVariant("darts_skip2", "DARTS space, at most 2 skips (P-DARTS cap)", "darts_1st",
               {"MAX_SKIP": 2}, ("darts_1st", "hb_init"), "does a cap on skips do what the HB initialisation does?"),
    NasVariant("darts_plus", "DARTS space, DARTS+ early stop", "darts_1st", {"EARLY_STOP": "darts+"},
               ("darts_1st", "hb_init"), "does stopping before the collapse do what the HB initialisation does?"),
    NasVariant("hb_skip2", "HB space, at most 2 skips beside the eq. (18) pair", "hb",
               {"MAX_SKIP": 2, "SKIP_HB_PAIR": True}, ("hb", "hb_init"),
               "a skip cap or the HB initialisation, in the HB space?"),
    NasVariant("hb_plus", "HB space, DARTS+ early stop beside the eq. (18) pair", "hb",
               {"EARLY_STOP": "darts+", "SKIP_HB_PAIR": True}, ("hb", "hb_init"),
               "early stopping or the HB initialisation, in the HB space?"),
)

_COLUMNS = tuple(c for c in paper.table("table4").columns if c.kind != "text")  # Table 4's numbers

TABLE = unpublished_table(
    name="beyond_nas",
    title="Beyond the paper: NAS (not from the paper)",
    caption=("Table 4 searches with partial channels or a collapse remedy, each evaluated with the "
             "Table 4 recipe and read beside its Table 4 rows measured under the same profile and "
             "data. No paper values."),
    columns=_COLUMNS,
    rows=((v.key, v.label) for v in VARIANTS),
    notes=("Not from the paper: these rows are never compared with a published number.",
           f"Stability across seeds: notebook {STABILITY_NOTEBOOK}."),
)

_BY_KEY = {v.key: v for v in VARIANTS}


def variant(key: str) -> NasVariant:
    """The variant of row ``key``; ``KeyError`` names the valid rows."""
    if key not in _BY_KEY:
        raise KeyError(f"no beyond-the-paper NAS row {key!r}; valid rows: {', '.join(_BY_KEY)}")
    return _BY_KEY[key]


def options_of(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The options of a notebook-08 run that differ from a Table 4 search's (:data:`DEFAULT_OPTIONS`);
    a parameter the run did not record counts as its default."""
    return {k: parameters[k] for k, default in DEFAULT_OPTIONS.items()
            if k in parameters and parameters[k] != default}


def variant_of(search_row: str | None, parameters: Mapping[str, Any]) -> NasVariant | None:
    """The row a notebook-08 run of Table 4 search row ``search_row`` with ``parameters`` fills."""
    wanted = options_of(parameters)
    for v in VARIANTS:
        if v.search == search_row and options_of({**DEFAULT_OPTIONS, **v.options}) == wanted:
            return v
    return None
