"""Exercises of notebook 08 (paper §9: the DARTS, HB and AGD search spaces): the mixed ops of a
cell, the softmax mixing weights (17), the discrete op of an edge, and the HBNet cell (18) built
by hand as a genotype with its parameter count.

The checkers compare against :mod:`optnb.nas` (the edge layout, ``derive_cell``, the genotype
parser and the evaluation cell counted with ``count_params``) and recognise the usual mistakes
to give a specific hint.
"""

from __future__ import annotations

import numpy as np
import torch

from optnb.models import count_params
from optnb.nas.derive import derive_cell
from optnb.nas.edges import SPACES, space_edges
from optnb.nas.errors import GenotypeError
from optnb.nas.genotypes import parse
from optnb.nas.network import EvalCell
from optnb.nas.operations import DARTS_PRIMITIVES, PRIMITIVES
from optnb.teach.feedback import Exercise, Wrong, as_float64, expect_close, known_mistake

NOTEBOOK = "08_nas_search"


# ------------------------------------------------------------------------------------- 08.1
def check_num_mixed_ops(num_mixed_ops) -> str:
    """08.1: ``num_mixed_ops(space, steps)`` is ``len(space_edges(space, steps))``."""
    for space in SPACES:
        for steps in (4, 1, 2, 3, 6, 8):
            expected = len(space_edges(space, steps))
            found = num_mixed_ops(space, steps)
            call = f"num_mixed_ops({space!r}, steps={steps})"
            if isinstance(found, bool) or not isinstance(found, (int, np.integer)):
                raise Wrong(f"{call} returned {found!r} of type {type(found).__name__}; a count is an int.",
                            expected=expected, found=found, hint="use integer arithmetic (// not /)")
            if found == expected:
                continue
            if space == "hb":
                mistakes = [(2 * steps, "o1 and o2 both read x_{t-1} but are two mixed ops, each with its own "
                                        "alpha row: three per node (eq. 15)"),
                            (sum(2 + i for i in range(steps)), "that is the darts count: in the hb space a node "
                                                               "reads only x_{t-1} (twice) and x_{t-2}")]
            else:
                full = sum(2 + i for i in range(steps))
                mistakes = [(sum(1 + i for i in range(steps)), "node i reads both cell inputs c_{k-2}, c_{k-1} "
                                                               "and nodes 0..i-1: 2 + i edges, not 1 + i"),
                            (sum(2 + i for i in range(1, steps + 1)), "off by one: count nodes from 0; node 0 has "
                                                                      "2 incoming edges (the two cell inputs)"),
                            (2 * full, "the AGD path logits beta_it (eq. 21) weigh the edges; they are not extra "
                                       "mixed ops" if space == "agd" else "one mixed op per edge (i, t), i < t"),
                            (3 * steps, "that is the hb count; in the darts and agd spaces node t reads every "
                                        "earlier state (eqs. 19-20)")]
            hint = next((h for value, h in mistakes if value == found),
                        "darts/agd: node i has 2 + i incoming edges; hb: 3 per node (o1, o2 on x_{t-1}, o on "
                        "x_{t-2}); sum over the steps nodes")
            raise Wrong(f"{call} is wrong.", expected=expected, found=found, hint=hint)
    return ("darts and agd: 2 steps + steps(steps-1)/2 mixed ops (14 for 4 nodes), hb: 3 steps (12): "
            "the hb space is smaller, which is where its lower search cost comes from.")


# ------------------------------------------------------------------------------------- 08.2
def check_mixing_weights(mixing_weights) -> str:
    """08.2: ``mixing_weights(alpha)`` is the row-wise softmax of eq. (17), ``none`` included."""
    gen = torch.Generator().manual_seed(8)
    hb_row = torch.zeros(1, 9, dtype=torch.float64)
    hb_row[0, PRIMITIVES.index("skip_connect")] = 5.0
    cases = [("zeros (14 x 8)", torch.zeros(14, 8, dtype=torch.float64)),
             ("random (12 x 9)", 1e-3 * torch.randn(12, 9, generator=gen, dtype=torch.float64)),
             ("the HB init row, b = 5 on the identity (1 x 9)", hb_row),
             ("random, scale 3 (14 x 9)", 3.0 * torch.randn(14, 9, generator=gen, dtype=torch.float64)),
             ("large logits, up to 1000 (3 x 9)", 1000.0 * torch.rand(3, 9, generator=gen, dtype=torch.float64))]
    for label, alpha in cases:
        expected = torch.softmax(alpha, dim=-1).numpy()
        a = alpha.numpy()
        found = as_float64(mixing_weights(a.copy()), f"mixing_weights for {label}")
        if found.shape == expected.shape and not np.all(np.isfinite(found)):
            raise Wrong(f"mixing_weights for {label} contains NaN or infinity.",
                        hint="exp(1000) overflows: subtract each row's max before exp (the softmax does not "
                             "change when a constant is added to a row)")
        e = np.exp(a - a.max())
        no_none = np.exp(a - a.max(axis=-1, keepdims=True))
        no_none[:, 0] = 0.0
        hint = known_mistake(found, [
            (e / e.sum(), "normalise each row (each edge) separately: sum over the ops o', not over the matrix"),
            (e / e.sum(axis=0, keepdims=True), "normalise along the ops (axis -1): each row is one edge"),
            (no_none / no_none.sum(axis=-1, keepdims=True),
             "eq. (17) normalises over all ops, none included; the derive step ignores none, the softmax does not"),
            (a, "return the softmax of alpha, not alpha itself"),
        ], "w_o = exp(alpha_o) / sum_o' exp(alpha_o'), row by row (eq. 17)")
        expect_close(found, expected, f"mixing_weights for {label}", atol=1e-12, rtol=1e-9, hint=hint)
    w = float(torch.softmax(hb_row, -1)[0, PRIMITIVES.index("skip_connect")])
    return (f"row-wise softmax, none included, stable for logits up to 1000; the HB init's identity weight is "
            f"e^5/(e^5 + 8) = {w:.3f}.")


# ------------------------------------------------------------------------------------- 08.3
def _derived(row: np.ndarray, primitives: tuple[str, ...]) -> str:
    """The op ``derive_cell`` keeps for an edge with weights ``row`` (an hb cell's first slot)."""
    weights = np.full((len(space_edges("hb")), len(primitives)), 1.0 / len(primitives))
    weights[0] = row
    return derive_cell("hb", weights, primitives, rule="per_slot")[0][0]


def check_derived_op(derived_op) -> str:
    """08.3: ``derived_op(weights, primitives)`` is the op ``optnb.nas.derive`` keeps for one edge."""
    gen = np.random.default_rng(3)
    tie = np.full(9, 0.1)
    tie[[4, 6]] = 0.2
    none_high = np.array([0.6, 0.05, 0.05, 0.1, 0.05, 0.05, 0.05, 0.03, 0.02])
    cases = [("random weights (9 ops)", gen.dirichlet(np.ones(9)), PRIMITIVES),
             ("none is the largest weight", none_high, PRIMITIVES),
             ("a tie between sep_conv_3x3 and dil_conv_3x3", tie, PRIMITIVES),
             ("neg_skip_connect strongest", np.r_[np.full(8, 0.1), 0.2], PRIMITIVES),
             ("DARTS's 8 ops", gen.dirichlet(np.ones(8)), DARTS_PRIMITIVES)]
    for label, row, primitives in cases:
        expected = _derived(row, primitives)
        found = derived_op(row.copy(), primitives)
        if isinstance(found, (int, np.integer)):
            raise Wrong(f"derived_op for {label} returned the index {found}; return the op's name.",
                        expected=repr(expected), found=found, hint="primitives[k] is the name of column k")
        if found == expected:
            continue
        allowed = [k for k, p in enumerate(primitives) if p != "none"]
        if found == "none":
            hint = "none is never kept (it would delete the edge): take the strongest op other than none"
        elif found == primitives[max(allowed, key=lambda k: (row[k], k))]:
            hint = "ties go to the lower index (np.argmax returns the first maximum)"
        elif found == primitives[min(allowed, key=lambda k: row[k])]:
            hint = "keep the strongest op (largest weight), not the weakest"
        else:
            hint = "the op with the largest weight among all ops but none; ties to the lower index"
        raise Wrong(f"derived_op for {label} is wrong.", expected=repr(expected), found=repr(found), hint=hint)
    return "the strongest op other than none, ties to the lower index, as optnb.nas.derive keeps it."


# ------------------------------------------------------------------------------------- 08.4
def _expected_hb_cell(branch: str) -> list[tuple[str, int]]:
    """HBNet's update (18) as a cell: node i (state i + 2) = F(x_{t-1}) + x_{t-1} - x_{t-2}."""
    return [op for i in range(4) for op in ((branch, i + 1), ("skip_connect", i + 1), ("neg_skip_connect", i))]


def check_hbnet_cell(hbnet_cell) -> str:
    """08.4: ``hbnet_cell(branch, C)`` returns the HBNet cell's genotype text and the parameters of the
    operations of its normal cell (evaluation network, affine BN), counted on a built ``EvalCell``."""
    for branch, C in (("sep_conv_3x3", 16), ("dil_conv_5x5", 36), ("max_pool_3x3", 16), ("sep_conv_5x5", 8)):
        call = f"hbnet_cell({branch!r}, {C})"
        answer = hbnet_cell(branch, C)
        if not (isinstance(answer, (tuple, list)) and len(answer) == 2 and isinstance(answer[0], str)):
            raise Wrong(f"{call} should return a pair (genotype text, number of parameters).",
                        found=repr(answer)[:120], hint="return text, count")
        text, count = answer
        try:
            genotype = parse(text)
        except GenotypeError as err:
            raise Wrong(f"{call}: the genotype text does not parse: {err}",
                        hint="Genotype(normal=[(op, index), ...], normal_concat=[2, 3, 4, 5], reduce=[...], "
                             "reduce_concat=[2, 3, 4, 5]); node i may read states 0 .. i + 1") from None
        expected_ops = _expected_hb_cell(branch)
        normal = list(genotype.normal)
        if len(normal) != 12:
            raise Wrong(f"{call}: the normal cell has {len(normal)} operations.", expected=12, found=len(normal),
                        hint="an HB cell has 4 nodes of 3 operations each (eq. 15)")
        for i in range(4):
            want, got = sorted(expected_ops[3 * i:3 * i + 3]), sorted(normal[3 * i:3 * i + 3])
            if want == got:
                continue
            swapped = sorted([(branch, i + 1), ("skip_connect", i), ("neg_skip_connect", i + 1)])
            if got == swapped:
                hint = ("the signs are swapped: (18) adds x_{t-1} (identity on state i + 1) and subtracts x_{t-2} "
                        "(negative identity on state i)")
            elif sorted(name for name, _ in got) == sorted(name for name, _ in want):
                hint = ("right operations, wrong inputs: node i is state i + 2, so x_{t-1} is state i + 1 "
                        "(o1 and o2) and x_{t-2} is state i (o); states 0 and 1 are c_{k-2} and c_{k-1}")
            else:
                hint = (f"(18): x_t = F(x_{{t-1}}) + x_{{t-1}} - x_{{t-2}} with F = {branch}: o1 = F, o2 = the "
                        "identity (skip_connect), o = the negative identity (neg_skip_connect)")
            raise Wrong(f"{call}: node {i} of the normal cell is not HBNet's update (18).", expected=want, found=got,
                        hint=hint)
        if list(genotype.normal_concat) != [2, 3, 4, 5]:
            raise Wrong(f"{call}: normal_concat is {list(genotype.normal_concat)}.", expected=[2, 3, 4, 5],
                        found=list(genotype.normal_concat), hint="the cell output concatenates the 4 nodes, eq. (14)")
        if sorted(genotype.reduce) != sorted(genotype.normal) or list(genotype.reduce_concat) != [2, 3, 4, 5]:
            raise Wrong(f"{call}: the reduction cell differs from the normal cell.",
                        hint="use the same operation list and concat for reduce")
        with torch.random.fork_rng(devices=[]):  # building draws initial weights: keep the notebook's stream
            cell = EvalCell(genotype, C, C, C, reduction=False, reduction_prev=False)
        expected = count_params(cell.ops)
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
            raise Wrong(f"{call}: the parameter count {count!r} is not an int.", expected=expected, found=count,
                        hint="return an int")
        if count == expected:
            continue
        halves = 2 if branch.startswith("sep") else 1 if branch.startswith("dil") else 0
        bn = 4 * halves * 2 * C  # the affine parameters of the branch ops' BatchNorms
        mistakes = [
            (expected - bn, "the evaluation network's BatchNorms are affine: gamma and beta, 2C per BN "
                            "(sep_conv has 2, dil_conv 1)"),
            (expected + bn, "running_mean and running_var are buffers, not parameters: an affine BatchNorm2d(C) "
                            "has 2C"),
            (expected + count_params(cell.preprocess0) + count_params(cell.preprocess1),
             "count the 12 operations only, not the 1x1 preprocessing of the cell inputs"),
            (expected // 4, "the cell has 4 nodes, each with its own F: 4 copies of the branch op"),
        ]
        if halves == 2:
            mistakes.append((expected // 2, "sep_conv applies (ReLU, depthwise kxk, 1x1, BN) twice: count both "
                                             "halves"))
        if halves:
            k = int(branch[-1])
            mistakes.append((4 * halves * (C * C * k * k + C * C + 2 * C),
                             "the kxk convolution is depthwise (groups = C): C k^2 weights, not C^2 k^2"))
        hint = next((h for value, h in mistakes if value == count and value != expected),
                    "sep_conv_kxk: 2 x (C k^2 depthwise + C^2 pointwise + 2C BN); dil_conv_kxk: once; pools, skip, "
                    "neg_skip: 0; times 4 nodes")
        raise Wrong(f"{call}: the normal cell's operations hold {expected:,} parameters.", expected=f"{expected:,}",
                    found=f"{int(count):,}", hint=hint)
    return ("the HBNet cell x_t = F(x_{t-1}) + x_{t-1} - x_{t-2} as a genotype, built as an EvalCell: "
            "4 copies of F carry all its parameters (864 per sep_conv_3x3 at C = 16), the momentum none.")


EXERCISES: tuple[Exercise, ...] = (
    Exercise("08.1", NOTEBOOK, "mixed ops per cell in each search space", "quick check", minutes=5, points=1,
             check=check_num_mixed_ops, hint="count the incoming edges of each intermediate node"),
    Exercise("08.2", NOTEBOOK, "the mixing weights of eq. (17)", "computation", minutes=8, points=2,
             check=check_mixing_weights, hint="a softmax over the ops of each edge (row), computed stably"),
    Exercise("08.3", NOTEBOOK, "the discrete op of an edge", "quick check", minutes=5, points=1,
             check=check_derived_op, hint="the strongest op that is not none"),
    Exercise("08.4", NOTEBOOK, "the HBNet cell by hand, and its parameters", "derivation", minutes=15, points=3,
             check=check_hbnet_cell,
             hint="write (18) as three ops per node, then count the weights of a sep_conv / dil_conv"),
)
