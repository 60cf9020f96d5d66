"""Full-size parameter counts and multiply-accumulates of every reproducible row, no training.

Tables 1-2 and the beyond-the-paper variants come from ``optnb.models.measure`` (registry models
at their paper size, with the variant's options). Tables 4-5
come from the evaluation network of a genotype (``optnb.nas.network``): CIFAR with C = 36 and 20
cells, ImageNet mobile with C = 48 and 14 cells, parameters without the auxiliary head as DARTS
counts them. Everything is built on the ``meta`` device, so nothing is allocated or computed.

Convention: ``flops_g`` is G multiply-accumulates (``optnb.models.flops.CONVENTION``); the
paper's Table 2 "FLOPs" are multiply-adds too.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import torch

from optnb.experiments import beyond, beyond_nas
from optnb.models import count_compute, measure
from optnb.nas import genotypes
from optnb.nas.network import NetworkCIFAR, NetworkImageNet, count_parameters

#: Table 4/5 rows whose paper numbers are DARTS's published cells (used when no search is given).
PUBLISHED = {"darts_1st": "DARTS_V1", "darts_2nd": "DARTS_V2"}
#: Rows whose printed size the standard construction does not reach (never altered to match).
NOTES = {
    "densenet52": "standard L = 52 DenseNet (16 layers per block); the paper prints 1.4M",
    "agdnet52": "same skeleton as DenseNet L = 52; the paper prints 1.4M",
}


def full_size(table: str, row: str, genotype: Any = None) -> dict[str, Any]:
    """``{"params_m", "flops_g", "note"}`` for a row; ``genotype`` (dict, JSON or DARTS text)
    is the searched cell for Tables 4-5. Raises ``LookupError`` when a row has no genotype."""
    if table in ("table1", "table2"):
        size = dict(_model_size(row))
        if row in NOTES:
            size["note"] = NOTES[row]
        return size
    if table == beyond.TABLE.name:
        found = beyond.variant(row)
        m = measure(found.model, **found.options)
        return {"params_m": m["params_m"], "flops_g": m["macs_g"],
                "note": f"baseline {found.baseline}" if found.baseline else ""}
    if table not in ("table4", "table5", beyond_nas.TABLE.name):
        raise LookupError(f"no model sizes for {table!r}; valid: table1, table2, table4, table5, "
                          f"{beyond.TABLE.name}, {beyond_nas.TABLE.name}")
    if table == beyond_nas.TABLE.name:  # a searched cell in Table 4's evaluation network
        if genotype is None or genotype == "":
            raise LookupError(f"no searched genotype for {table}/{beyond_nas.variant(row).key} yet "
                              "(run its search)")
        table = "table4"
    if genotype is None or genotype == "":
        if row not in PUBLISHED:
            raise LookupError(f"no searched genotype for {table}/{row} yet (run its search)")
        name = PUBLISHED[row]
        size = dict(_cell_size(table, name))
        size["note"] = f"published {name} cell"
        return size
    text = genotype if isinstance(genotype, str) else json.dumps(genotype, sort_keys=True)
    return dict(_cell_size(table, text))


@lru_cache(maxsize=64)
def _model_size(name: str) -> tuple[tuple[str, Any], ...]:
    m = measure(name)
    return (("params_m", m["params_m"]), ("flops_g", m["macs_g"]))


@lru_cache(maxsize=64)
def _cell_size(table: str, genotype_text: str) -> tuple[tuple[str, Any], ...]:
    try:
        spec: Any = json.loads(genotype_text)
    except json.JSONDecodeError:
        spec = genotype_text
    genotype = genotypes.parse(spec)
    with torch.device("meta"):
        if table == "table4":
            net, side = NetworkCIFAR(genotype, C=36, layers=20, auxiliary=True), 32
        else:
            net, side = NetworkImageNet(genotype, C=48, layers=14, auxiliary=True), 224
    macs = count_compute(net, side)["macs"]
    return (("params_m", count_parameters(net) / 1e6), ("flops_g", macs / 1e9))
