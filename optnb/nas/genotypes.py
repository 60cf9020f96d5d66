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

Limits (genotypes arrive from notebook parameters, the command line, plan files and sidecars, so
every entry point refuses oversized input in one line naming the limit, before anything is built;
the paper's cells have 4 nodes of arity 2 or 3, about 500 characters of text):

* ``MAX_TEXT_CHARS`` = 65,536: the length of a genotype's text or JSON (the largest cell the
  limits below allow is about 3 KB of text; 64 KiB leaves room for any formatting);
* ``MAX_NODES`` = 16 intermediate nodes per cell (``max(concat) - 1``; the paper uses 4);
* ``MAX_ARITY`` = 4 operations per node (the paper uses 2 and 3), so at most ``MAX_OPS`` = 64
  operations per cell; node ``i`` reads states ``0 .. i + 1`` only, so indices stay below 18;
* ``MAX_CONCAT`` = 18 entries in a concat list (every state of a 16-node cell); ``range(...)`` is
  measured symbolically (``len`` of the range object) before it is turned into a list;
* ``MAX_JSON_DEPTH`` = 3: an object of lists of ``[op, index]`` pairs; ``Genotype(...)`` text may
  nest lists of tuples only (``MAX_TEXT_DEPTH`` = 2 below a field).

A network built at the largest allowed cell (16 nodes x 4 ops) is 8 times the paper's 8 ops per
cell, large but finite; a research cell needing more is a deliberate edit of these constants.
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

#: the largest genotype text or JSON accepted, in characters (64 KiB)
MAX_TEXT_CHARS = 65_536
#: intermediate nodes per cell (``max(concat) - 1``); the paper's cells have 4
MAX_NODES = 16
#: operations per node; the paper's cells have 2 (darts, agd) or 3 (hb)
MAX_ARITY = 4
#: operations per cell
MAX_OPS = MAX_NODES * MAX_ARITY
#: entries of a concat list: every state of the largest cell (c_{k-2}, c_{k-1} and 16 nodes)
MAX_CONCAT = MAX_NODES + 2
#: nesting of genotype JSON: an object of lists of [op, index] pairs
MAX_JSON_DEPTH = 3
#: nesting below a field of Genotype(...) text: a list of (op, index) tuples
MAX_TEXT_DEPTH = 2
#: characters of an input value echoed in an error message
SHOWN_CHARS = 60

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
        raise unknown("genotype", _clip(name), REFERENCE)
    return normalize(REFERENCE[name])


# -------------------------------------------------------------------------------- limits
def _clip(text: object, limit: int = SHOWN_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters for a message, saying how long it was."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} chars)"


def _show(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` for a one-line message: shortened, and never failing on a huge int."""
    if isinstance(value, range):  # a range's repr is short whatever its length
        return repr(value) if len(repr(value)) <= limit else f"range of {_range_len(value):,} ints"
    if isinstance(value, (list, tuple)) and len(value) > limit:
        return f"a {type(value).__name__} of {len(value):,} items"
    try:
        text = repr(value)
    except ValueError:  # an int (or a list holding one) beyond sys.get_int_max_str_digits()
        return "an int too large to print" if isinstance(value, int) else \
            f"a {type(value).__name__} holding an int too large to print"
    return _clip(text, limit)


def _range_len(r: range) -> int:
    """``len(r)`` without the ``OverflowError`` of a range longer than ``sys.maxsize``."""
    try:
        return len(r)
    except OverflowError:
        return max(0, (r.stop - r.start + r.step - (1 if r.step > 0 else -1)) // r.step)


def _check_text(text: str, what: str) -> None:
    if len(text) > MAX_TEXT_CHARS:
        raise GenotypeError(f"{what} is {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,} "
                            "(optnb.nas.genotypes.MAX_TEXT_CHARS, 64 KiB)")


def _ops_list(cell: str, ops: Any) -> list:
    """A cell's operations as a list, refused before copying when not a list or too many."""
    if not isinstance(ops, (list, tuple)):
        raise GenotypeError(f"{cell} must be a list of (op, index) pairs, got {_show(ops)}")
    if len(ops) > MAX_OPS:
        raise GenotypeError(f"{cell} cell has {len(ops):,} operations; the limit is {MAX_OPS} "
                            f"({MAX_NODES} nodes x arity {MAX_ARITY}, optnb.nas.genotypes.MAX_OPS)")
    return list(ops)


def _concat_list(cell: str, concat: Any) -> list:
    """A cell's concat as a list; a ``range`` is measured before it is materialised."""
    field = f"{cell}_concat"
    if isinstance(concat, range):
        size = _range_len(concat)
    elif isinstance(concat, (list, tuple)):
        size = len(concat)
    else:
        raise GenotypeError(f"{field} must be a list of ints or range(a, b), got {_show(concat)}")
    if size > MAX_CONCAT:
        raise GenotypeError(f"{field} {_show(concat)} has {size:,} entries; the limit is "
                            f"{MAX_CONCAT} (the states of a {MAX_NODES}-node cell, "
                            "optnb.nas.genotypes.MAX_CONCAT)")
    return list(concat)


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of lists, tuples and dicts in ``value``; stops once it passes ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= limit:
        item, level = stack.pop()
        if isinstance(item, (list, tuple, dict)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict)
                                                          else item))
    return deepest


# -------------------------------------------------------------------------------- structure
def cell_steps(concat: Iterable[int]) -> int:
    """Number of intermediate nodes: ``max(concat) - 1``."""
    concat = _concat_list("cell", concat) if isinstance(concat, (range, list, tuple)) else list(concat)
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
    return (_ops_list(cell, getattr(genotype, cell)),
            _concat_list(cell, getattr(genotype, f"{cell}_concat")))


def normalize(genotype: Genotype, primitives: Sequence[str] = PRIMITIVES) -> Genotype:
    """Validate and return a canonical copy: lists of ``(str, int)`` tuples, concat as lists.

    Checks, per cell, sizes first (at most ``MAX_OPS`` ops, ``MAX_CONCAT`` concat entries with a
    ``range`` measured before it is listed, ``MAX_NODES`` nodes, arity ``MAX_ARITY``), then known
    op names, ``len(ops)`` a multiple of ``steps``, node i reading only states ``< 2 + i``, concat
    indices inside ``[0, steps + 1]``.
    """
    if not isinstance(genotype, tuple) or len(genotype) != 4:
        raise GenotypeError(f"expected a Genotype{FIELDS}, got {type(genotype).__name__}")
    genotype = Genotype(*genotype)
    out = {}
    for cell in ("normal", "reduce"):
        ops, concat = _cell(genotype, cell)
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in concat):
            raise GenotypeError(f"{cell}_concat must hold ints, got {_show(concat)}")
        steps = cell_steps(concat)
        if steps > MAX_NODES:
            raise GenotypeError(f"{cell} cell has {_show(steps)} nodes (max({cell}_concat) - 1); the "
                                f"limit is {MAX_NODES} (optnb.nas.genotypes.MAX_NODES)")
        if steps < 1 or not ops or len(ops) % steps:
            raise GenotypeError(f"{cell} cell: {len(ops)} ops do not split evenly over {steps} "
                                f"nodes (steps = max({cell}_concat) - 1)")
        k = len(ops) // steps
        if k > MAX_ARITY:
            raise GenotypeError(f"{cell} cell has {k} operations per node ({len(ops)} ops over "
                                f"{steps} nodes); the limit is arity {MAX_ARITY} "
                                "(optnb.nas.genotypes.MAX_ARITY)")
        clean = []
        for pos, item in enumerate(ops):
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise GenotypeError(f"{cell}[{pos}] must be an (op, index) pair, got {_show(item)}")
            name, index = item
            if not isinstance(name, str) or name not in primitives:
                raise GenotypeError(f"{cell}[{pos}]: unknown operation {_show(name)}; valid: "
                                    f"{', '.join(primitives)}")
            node = pos // k
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 2 + node:
                raise GenotypeError(f"{cell}[{pos}] ({name!r}, {_show(index)}): node {node} can "
                                    f"only read states 0..{1 + node}")
            clean.append((name, index))
        bad = [c for c in concat if not 0 <= c <= steps + 1]
        if bad:
            raise GenotypeError(f"{cell}_concat {_show(concat)} has indices outside 0..{steps + 1}")
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
    """Read the ``to_json`` form (keys ``normal``, ``normal_concat``, ``reduce``, ``reduce_concat``).

    Text longer than ``MAX_TEXT_CHARS`` or nested deeper than ``MAX_JSON_DEPTH`` is refused
    before it is decoded or walked.
    """
    if isinstance(text, str):
        _check_text(text, "genotype JSON")
        try:
            data = json.loads(text)
        except RecursionError:
            raise GenotypeError(f"genotype JSON nests deeper than the decoder allows; the limit is "
                                f"{MAX_JSON_DEPTH} levels (optnb.nas.genotypes.MAX_JSON_DEPTH: an "
                                "object of lists of [op, index] pairs)") from None
        except ValueError as err:  # JSONDecodeError, or an int beyond the str-conversion limit
            raise GenotypeError(f"genotype JSON is malformed: {_clip(str(err), 120)}") from None
    else:
        data = text
    if not isinstance(data, dict) or set(data) != set(FIELDS):
        keys = _show(sorted(map(str, data))) if isinstance(data, dict) else type(data).__name__
        raise GenotypeError(f"genotype JSON needs exactly the keys {list(FIELDS)}, got {keys}")
    ops = {c: _ops_list(c, data[c]) for c in ("normal", "reduce")}
    concat = {c: _concat_list(c, data[f"{c}_concat"]) for c in ("normal", "reduce")}
    depth = _depth({**ops, **{f"{c}_concat": v for c, v in concat.items()}}, MAX_JSON_DEPTH)
    if depth > MAX_JSON_DEPTH:
        raise GenotypeError(f"genotype JSON nests {depth} or more levels deep; the limit is "
                            f"{MAX_JSON_DEPTH} (optnb.nas.genotypes.MAX_JSON_DEPTH: an object of "
                            "lists of [op, index] pairs)")
    pairs = {c: [tuple(x) if isinstance(x, list) else x for x in ops[c]] for c in ops}
    return normalize(Genotype(pairs["normal"], concat["normal"], pairs["reduce"],
                              concat["reduce"]))


def _literal(node: ast.AST, what: str, depth: int = 0) -> Any:
    """Whitelisted literals: str/int constants, lists/tuples of them, ``range(int, int)``.

    ``range(...)`` stays a ``range`` object (``normalize`` measures it before listing it); lists
    and tuples nest at most ``MAX_TEXT_DEPTH`` levels below a field.
    """
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int)) \
            and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) \
            and isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, int):
        return -node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        if depth >= MAX_TEXT_DEPTH:
            raise GenotypeError(f"{what}: lists and tuples nest more than {MAX_TEXT_DEPTH} levels; "
                                f"the limit is {MAX_TEXT_DEPTH} (a list of (op, index) pairs, "
                                "optnb.nas.genotypes.MAX_TEXT_DEPTH)")
        items = [_literal(e, what, depth + 1) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range" \
            and not node.keywords and 1 <= len(node.args) <= 3:
        try:
            return range(*[_int(a, what, depth) for a in node.args])
        except ValueError:  # range() arg 3 must not be zero
            raise GenotypeError(f"{what}: range() step must not be zero") from None
    raise GenotypeError(f"{what}: only (op, index) pairs, int lists and range(a, b) are allowed, "
                        f"found {type(node).__name__} at column {getattr(node, 'col_offset', 0) + 1}")


def _int(node: ast.AST, what: str, depth: int = 0) -> int:
    value = _literal(node, what, depth)
    if not isinstance(value, int):
        raise GenotypeError(f"{what}: range() takes ints, got {_show(value)}")
    return value


def parse_text(text: str) -> Genotype:
    """Parse DARTS's ``Genotype(normal=[...], normal_concat=range(2, 6), ...)`` text safely.

    Text longer than ``MAX_TEXT_CHARS`` is refused before it is parsed; expressions nested too
    deeply for Python's parser are a ``GenotypeError``, not a ``RecursionError``.
    """
    _check_text(text, "genotype text")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise GenotypeError(f"genotype text is malformed ({_clip(str(err.msg), 120)} at column "
                            f"{err.offset}); expected Genotype(normal=[...], normal_concat=..., "
                            "reduce=[...], reduce_concat=...)") from None
    except (RecursionError, MemoryError):  # the parser's stack limit, e.g. 6,000 nested minus signs
        raise GenotypeError("genotype text nests expressions deeper than Python's parser allows; "
                            f"a field holds at most {MAX_TEXT_DEPTH} levels (a list of (op, index) "
                            "pairs)") from None
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
    """A genotype from a published name, JSON, DARTS text, or a Genotype/dict (validated).

    Every form goes through the size and shape limits of this module (see its docstring).
    """
    if isinstance(spec, tuple):
        return normalize(spec)
    if isinstance(spec, dict):
        return from_json(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise GenotypeError(f"expected a genotype name, JSON or Genotype(...) text, got {_show(spec)}")
    _check_text(spec, "genotype text")
    text = spec.strip()
    if text in REFERENCE:
        return get(text)
    if text.startswith("{"):
        return from_json(text)
    if "(" in text:
        return parse_text(text)
    raise unknown("genotype", _clip(text), [*REFERENCE, "<JSON>", "<Genotype(...) text>"])
