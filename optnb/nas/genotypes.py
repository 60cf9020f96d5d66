"""DARTS-compatible genotypes: the named published cells, a safe parser, JSON, validation.

``Genotype(normal, normal_concat, reduce, reduce_concat)``: ``normal``/``reduce`` are flat lists of
``(op_name, input_index)`` grouped by intermediate node, in node order. Index 0 is c_{k-2}, 1 is
c_{k-1}, 2, 3, ... the intermediate nodes; ``*_concat`` lists the states concatenated into the
cell output (eq. (14): ``range(2, 6)`` for 4 nodes).

Arity: nothing is added to the tuple. ``steps = max(concat) - 1`` and ``arity = len(ops) // steps``,
which gives 2 for DARTS/AGD cells and 3 for HB cells (eq. (15)), so every published genotype
still loads.

Text is parsed with :mod:`ast` and a whitelist (a ``Genotype(...)`` call of lists of
``(str, int)`` pairs and int lists or ``range(a, b)``); nothing is ever evaluated.
"""

from __future__ import annotations

import ast
import json
from collections import namedtuple
from collections.abc import Iterable, Sequence
from typing import Any

from optnb.nas.errors import GenotypeError, unknown
from optnb.nas.operations import PARAMETER_FREE, PRIMITIVES

Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")
FIELDS: tuple[str, ...] = Genotype._fields

# The published cells, verbatim (quark0/darts, yuhuixu1993/PC-DARTS, chenxin061/pdarts).
DARTS_V1 = Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])  # noqa: E501
DARTS_V2 = Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])  # noqa: E501
PC_DARTS_cifar = Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 0), ('dil_conv_3x3', 1), ('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('avg_pool_3x3', 0), ('dil_conv_3x3', 1)], normal_concat=range(2, 6), reduce=[('sep_conv_5x5', 1), ('max_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_5x5', 2), ('sep_conv_3x3', 0), ('sep_conv_3x3', 3), ('sep_conv_3x3', 1), ('sep_conv_3x3', 2)], reduce_concat=range(2, 6))  # noqa: E501
PDARTS = Genotype(normal=[('skip_connect', 0), ('dil_conv_3x3', 1), ('skip_connect', 0),('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('sep_conv_3x3', 3), ('sep_conv_3x3',0), ('dil_conv_5x5', 4)], normal_concat=range(2, 6), reduce=[('avg_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_3x3', 0), ('dil_conv_5x5', 2), ('max_pool_3x3', 0), ('dil_conv_3x3', 1), ('dil_conv_3x3', 1), ('dil_conv_5x5', 3)], reduce_concat=range(2, 6))  # noqa: E501,E231
DARTS = DARTS_V2

#: name -> published genotype (``get(name)``).
REFERENCE: dict[str, Genotype] = {
    "DARTS_V1": DARTS_V1, "DARTS_V2": DARTS_V2, "DARTS": DARTS,
    "PC_DARTS": PC_DARTS_cifar, "PC_DARTS_cifar": PC_DARTS_cifar, "PDARTS": PDARTS,
}


def get(name: str) -> Genotype:
    """A published genotype by name (``DARTS_V1``, ``DARTS_V2``, ``PC_DARTS``, ``PDARTS``)."""
    if name not in REFERENCE:
        raise unknown("genotype", name, REFERENCE)
    return normalize(REFERENCE[name])


# -------------------------------------------------------------------------------- structure
def cell_steps(concat: Iterable[int]) -> int:
    """Number of intermediate nodes: ``max(concat) - 1``."""
    concat = list(concat)
    if not concat:
        raise GenotypeError("a cell's concat list is empty")
    return max(concat) - 1


def arity(genotype: Genotype, cell: str = "normal") -> int:
    """Ops per node: ``len(ops) // steps`` (2 for DARTS and AGD cells, 3 for HB cells)."""
    ops, concat = _cell(genotype, cell)
    return len(ops) // cell_steps(concat)


def _cell(genotype: Genotype, cell: str) -> tuple[list, list]:
    if cell not in ("normal", "reduce"):
        raise unknown("cell type", cell, ("normal", "reduce"))
    return list(getattr(genotype, cell)), list(getattr(genotype, f"{cell}_concat"))


def normalize(genotype: Genotype, primitives: Sequence[str] = PRIMITIVES) -> Genotype:
    """Validate and return a canonical copy: lists of ``(str, int)`` tuples, concat as lists.

    Checks, per cell: known op names, ``len(ops)`` a multiple of ``steps``, node i reading only
    states ``< 2 + i``, concat indices inside ``[0, steps + 1]``.
    """
    if not isinstance(genotype, tuple) or len(genotype) != 4:
        raise GenotypeError(f"expected a Genotype{FIELDS}, got {type(genotype).__name__}")
    genotype = Genotype(*genotype)
    out = {}
    for cell in ("normal", "reduce"):
        ops, concat = _cell(genotype, cell)
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in concat):
            raise GenotypeError(f"{cell}_concat must hold ints, got {concat!r}")
        steps = cell_steps(concat)
        if steps < 1 or not ops or len(ops) % steps:
            raise GenotypeError(f"{cell} cell: {len(ops)} ops do not split evenly over {steps} "
                                f"nodes (steps = max({cell}_concat) - 1)")
        k = len(ops) // steps
        clean = []
        for pos, item in enumerate(ops):
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise GenotypeError(f"{cell}[{pos}] must be an (op, index) pair, got {item!r}")
            name, index = item
            if name not in primitives:
                raise GenotypeError(f"{cell}[{pos}]: unknown operation {name!r}; valid: "
                                    f"{', '.join(primitives)}")
            node = pos // k
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 2 + node:
                raise GenotypeError(f"{cell}[{pos}] ({name!r}, {index!r}): node {node} can only "
                                    f"read states 0..{1 + node}")
            clean.append((name, index))
        bad = [c for c in concat if not 0 <= c <= steps + 1]
        if bad:
            raise GenotypeError(f"{cell}_concat {concat} has indices outside 0..{steps + 1}")
        out[cell], out[f"{cell}_concat"] = clean, list(concat)
    return Genotype(**out)


def same(a: Genotype, b: Genotype) -> bool:
    """Equality up to representation (``range`` vs list, tuples vs lists)."""
    return normalize(a) == normalize(b)


def count_parameter_free(genotype: Genotype) -> dict[str, int]:
    """How many ops of each cell are parameter-free (pools, skip, neg-skip): the collapse sign."""
    return {cell: sum(name in PARAMETER_FREE for name, _ in getattr(genotype, cell))
            for cell in ("normal", "reduce")}


# -------------------------------------------------------------------------------- text and JSON
def to_text(genotype: Genotype) -> str:
    """DARTS's repr form (lists for concat); ``parse(to_text(g))`` gives ``g`` back."""
    return repr(normalize(genotype))


def to_json(genotype: Genotype) -> str:
    g = normalize(genotype)
    return json.dumps({f: [list(x) for x in getattr(g, f)] if f in ("normal", "reduce")
                       else getattr(g, f) for f in FIELDS})


def to_dict(genotype: Genotype) -> dict[str, Any]:
    return json.loads(to_json(genotype))


def from_json(text: str | dict) -> Genotype:
    """Read the ``to_json`` form (keys ``normal``, ``normal_concat``, ``reduce``, ``reduce_concat``)."""
    try:
        data = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError as err:
        raise GenotypeError(f"genotype JSON is malformed: {err}") from None
    if not isinstance(data, dict) or set(data) != set(FIELDS):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise GenotypeError(f"genotype JSON needs exactly the keys {list(FIELDS)}, got {keys}")
    ops = {c: [tuple(x) if isinstance(x, list) else x for x in data[c]] for c in ("normal", "reduce")}
    return normalize(Genotype(ops["normal"], data["normal_concat"], ops["reduce"],
                              data["reduce_concat"]))


def _literal(node: ast.AST, what: str) -> Any:
    """Whitelisted literals: str/int constants, lists/tuples of them, ``range(int, int)``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int)) \
            and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) \
            and isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, int):
        return -node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e, what) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range" \
            and not node.keywords and 1 <= len(node.args) <= 3:
        return list(range(*[_int(a, what) for a in node.args]))
    raise GenotypeError(f"{what}: only (op, index) pairs, int lists and range(a, b) are allowed, "
                        f"found {ast.dump(node)[:60]}")


def _int(node: ast.AST, what: str) -> int:
    value = _literal(node, what)
    if not isinstance(value, int):
        raise GenotypeError(f"{what}: range() takes ints, got {value!r}")
    return value


def parse_text(text: str) -> Genotype:
    """Parse DARTS's ``Genotype(normal=[...], normal_concat=range(2, 6), ...)`` text safely."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise GenotypeError(f"genotype text is malformed ({err.msg} at column {err.offset}); "
                            "expected Genotype(normal=[...], normal_concat=..., reduce=[...], "
                            "reduce_concat=...)") from None
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, (ast.Name, ast.Attribute))
            and (getattr(call.func, "id", None) or getattr(call.func, "attr", None)) == "Genotype"):
        raise GenotypeError("genotype text must be a Genotype(...) expression, e.g. "
                            "Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5],"
                            " reduce=[...], reduce_concat=[2, 3, 4, 5])")
    if len(call.args) > 4:
        raise GenotypeError(f"Genotype takes 4 fields {list(FIELDS)}, got {len(call.args)}")
    values = {FIELDS[i]: _literal(a, FIELDS[i]) for i, a in enumerate(call.args)}
    for kw in call.keywords:
        if kw.arg not in FIELDS or kw.arg in values:
            raise GenotypeError(f"unexpected or repeated Genotype field {kw.arg!r}; fields: "
                                f"{', '.join(FIELDS)}")
        values[kw.arg] = _literal(kw.value, kw.arg)
    missing = [f for f in FIELDS if f not in values]
    if missing:
        raise GenotypeError(f"Genotype text lacks the fields {missing}")
    return normalize(Genotype(**values))


def parse(spec: str | Genotype | dict) -> Genotype:
    """A genotype from a published name, JSON, DARTS text, or a Genotype/dict (validated)."""
    if isinstance(spec, tuple):
        return normalize(spec)
    if isinstance(spec, dict):
        return from_json(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise GenotypeError(f"expected a genotype name, JSON or Genotype(...) text, got {spec!r}")
    text = spec.strip()
    if text in REFERENCE:
        return get(text)
    if text.startswith("{"):
        return from_json(text)
    if "(" in text:
        return parse_text(text)
    raise unknown("genotype", text, [*REFERENCE, "<JSON>", "<Genotype(...) text>"])
