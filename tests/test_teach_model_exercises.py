"""The checkers of exercises 04.x (rates), 05.x (architectures) and 08.x (search spaces): a right
answer passes, nbgrader's stub is "not done", each planted typical mistake gets its specific hint
(and what was expected and found), a crash is reported as wrong naming the exception."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optnb import teach
from optnb.models.cifar_densenet import agd_coefficients
from optnb.nas.derive import derive_cell
from optnb.nas.edges import space_edges
from optnb.theory import rates
from optnb.theory.algorithms import h_coefficients

relu = lambda a: np.maximum(a, 0.0)
RATE = {"GD": lambda mu: 1 - mu, "HB": lambda mu: 1 - math.sqrt(mu), "AGD": lambda mu: 1 - math.sqrt(mu)}


def resnet_params(depth, num_classes=10, width=16, bn=2, option_b=False, fc_bias=True):
    n = (depth - 2) // 6
    total, c_in = 27 * width + bn * width, width
    for planes in (width, 2 * width, 4 * width):
        for _ in range(n):
            total += 9 * c_in * planes + 9 * planes * planes + 2 * bn * planes
            total += (c_in * planes + bn * planes) if option_b and c_in != planes else 0
            c_in = planes
    return total + 4 * width * num_classes + (num_classes if fc_bias else 0)


def softmax(a, axis=-1):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def hb_ops(branch, skip_input=1, neg_input=0):
    return [op for i in range(4) for op in ((branch, i + 1), ("skip_connect", i + skip_input),
                                            ("neg_skip_connect", i + neg_input))]


def hb_text(ops):
    return f"Genotype(normal={ops}, normal_concat=[2, 3, 4, 5], reduce={ops}, reduce_concat=[2, 3, 4, 5])"


def hb_count(branch, C, bn=2, depthwise=True, halves=None):
    if not branch.startswith(("sep", "dil")):
        return 0
    k = int(branch[-1])
    halves = (2 if branch.startswith("sep") else 1) if halves is None else halves
    return 4 * halves * (C * k * k * (1 if depthwise else C) + C * C + bn * C)


def hbnet_cell(branch, C):
    return hb_text(hb_ops(branch)), hb_count(branch, C)


def first_non_none(w, primitives):
    return primitives[max((k for k, p in enumerate(primitives) if p != "none"), key=lambda k: (w[k], -k))]


#: a right answer per exercise, written from the package or the paper's formulas
RIGHT = {
    "04.1": lambda m, kappa, eps: math.log(1 / eps) / -math.log(RATE[m](1 / kappa)),
    "04.2": lambda kappa: rates.hb_unit_step_beta(1 / kappa),
    "04.3": lambda beta, lam: rates.momentum_rate("HB", beta, lam),
    "05.1": lambda z, p, f, beta: relu(z + f + beta * (z - p)),
    "05.2": agd_coefficients,
    "05.3": lambda depth, num_classes=10, width=16: resnet_params(depth, num_classes, width),
    "08.1": lambda space, steps=4: len(space_edges(space, steps)),
    "08.2": softmax,
    "08.3": first_non_none,
    "08.4": hbnet_cell,
}

#: (exercise, a typical mistake, text its feedback must contain)
MISTAKES = [
    ("04.1", lambda m, kappa, eps: (kappa if m == "GD" else math.sqrt(kappa)) * math.log(1 / eps),
     "the O(.) approximation"),
    ("04.1", lambda m, kappa, eps: math.ceil(RIGHT["04.1"](m, kappa, eps)), "return the unrounded number"),
    ("04.1", lambda m, kappa, eps: math.log(1 / eps) / -math.log(RATE["HB" if m == "GD" else "GD"](1 / kappa)),
     "GD contracts by 1 - mu per layer"),
    ("04.2", lambda kappa: (1 - 1 / kappa) ** 2, "the square root is missing"),
    ("04.2", lambda kappa: ((math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)) ** 2, "textbook HB momentum"),
    ("04.2", lambda kappa: (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1), "AGD's strongly convex momentum"),
    ("04.2", lambda kappa: 1 - 1 / math.sqrt(kappa), "the momentum is its square"),
    ("04.3", lambda beta, lam: float(np.max(np.abs(1 - lam))), "that is the GD rate"),
    ("04.3", lambda beta, lam: math.sqrt(beta), "sqrt(beta) is the modulus of complex roots only"),
    ("04.3", lambda beta, lam: float(np.max(np.abs(((1 + beta - lam) + np.sqrt((1 + beta - lam) ** 2 - 4 * beta))
                                                   / 2))), "complex arithmetic"),
    ("04.3", lambda beta, lam: min(rates.momentum_rate("HB", beta, [x]) for x in lam), "not the min"),
    ("05.1", lambda z, p, f, beta: relu(z + f) + beta * (z - p), "momentum='outside'"),
    ("05.1", lambda z, p, f, beta: z + f + beta * (z - p), "close the block with ReLU"),
    ("05.1", lambda z, p, f, beta: relu(z + f + beta * (p - z)), "current minus previous"),
    ("05.2", h_coefficients, "that is h_{k,j} of (5), the increments"),
    ("05.2", lambda m: np.tril(np.ones((m + 1, m)), -1), "is DenseNet"),
    ("05.2", lambda m: agd_coefficients(m)[1:], "row 0 is all zeros"),
    ("05.2", lambda m: agd_coefficients(m).T, "transposed"),
    ("05.3", lambda d, num_classes=10, width=16: resnet_params(d, num_classes, width, bn=0), "count the BatchNorms"),
    ("05.3", lambda d, num_classes=10, width=16: resnet_params(d, num_classes, width, bn=4), "are buffers"),
    ("05.3", lambda d, num_classes=10, width=16: resnet_params(d, num_classes, width, option_b=True), "option A"),
    ("05.3", lambda d, num_classes=10, width=16: resnet_params(d, num_classes, width, fc_bias=False), "has a bias"),
    ("05.3", lambda d, num_classes=10, width=16: resnet_params(d + 6, num_classes, width), "off by one block"),
    ("05.3", lambda d, num_classes=10, width=16: float(resnet_params(d, num_classes, width)), "return an int"),
    ("08.1", lambda space, steps=4: 2 * steps if space == "hb" else len(space_edges(space, steps)),
     "two mixed ops"),
    ("08.1", lambda space, steps=4: 3 * steps if space == "hb" else steps * (steps + 1) // 2, "2 + i edges, not 1 + i"),
    ("08.1", lambda space, steps=4: len(space_edges(space, steps)) * (2 if space == "agd" else 1),
     "not extra mixed ops"),
    ("08.2", lambda a: np.exp(a) / np.exp(a).sum(axis=-1, keepdims=True), "subtract each row's max"),
    ("08.2", lambda a: softmax(a.reshape(-1)).reshape(a.shape), "normalise each row"),
    ("08.2", lambda a: softmax(a, axis=0), "normalise along the ops"),
    ("08.2", lambda a: np.c_[np.zeros(len(a)), softmax(a[:, 1:])], "none included"),
    ("08.3", lambda w, primitives: primitives[int(np.argmax(w))], "none is never kept"),
    ("08.3", lambda w, primitives: primitives[max(range(1, len(w)), key=lambda k: (w[k], k))], "ties go to the lower"),
    ("08.3", lambda w, primitives: int(np.argmax(w[1:])) + 1, "return the op's name"),
    ("08.4", lambda b, C: (hb_text(hb_ops(b, skip_input=0, neg_input=1)), hb_count(b, C)), "the signs are swapped"),
    ("08.4", lambda b, C: (hb_text(hb_ops(b, skip_input=0, neg_input=0)), hb_count(b, C)), "wrong inputs"),
    ("08.4", lambda b, C: (hb_text(hb_ops(b))[:-1], hb_count(b, C)), "does not parse"),
    ("08.4", lambda b, C: (hb_text(hb_ops(b)), hb_count(b, C, bn=0)), "BatchNorms are affine"),
    ("08.4", lambda b, C: (hb_text(hb_ops(b)), hb_count(b, C, bn=4)), "are buffers"),
    ("08.4", lambda b, C: (hb_text(hb_ops(b)), hb_count(b, C) // 4), "4 copies of the branch op"),
    ("08.4", lambda b, C: (hb_text(hb_ops(b)), hb_count(b, C, depthwise=False)), "depthwise (groups = C)"),
    ("08.4", lambda b, C: (hb_text(hb_ops(b)), hb_count(b, C, halves=1)), "count both halves"),
]

def test_the_model_notebooks_have_their_exercises():
    ids = [e.id for e in teach.EXERCISES.values() if e.id[:2] in ("04", "05", "08")]
    assert ids == list(RIGHT)
    for stem in ("04_faster_optimizer_better_network", "05_hbnet_agdnet", "08_nas_search"):
        assert len(teach.for_notebook(stem)) >= 3
    assert {m[0] for m in MISTAKES} == set(RIGHT)


@pytest.mark.parametrize("exercise_id", list(RIGHT))
def test_a_right_answer_passes(exercise_id):
    outcome = teach.evaluate(teach.get(exercise_id), RIGHT[exercise_id])
    assert outcome.status == "correct", outcome.message
    assert outcome.line().startswith(f"[correct] Exercise {exercise_id} ")


@pytest.mark.parametrize("exercise_id", list(RIGHT))
def test_the_stub_is_not_done_and_a_crash_is_wrong(exercise_id):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    def crash(*args, **kwargs):
        return {}["missing"]

    assert teach.evaluate(teach.get(exercise_id), stub).status == "not done"
    outcome = teach.evaluate(teach.get(exercise_id), crash)
    assert outcome.status == "wrong"
    assert "Calling your code raised KeyError: 'missing'" in outcome.message


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow and NaN of the planted mistakes
@pytest.mark.parametrize("exercise_id, answer, hint", MISTAKES,
                         ids=[f"{m[0]}-{i}" for i, m in enumerate(MISTAKES)])
def test_a_typical_mistake_gets_its_specific_hint(exercise_id, answer, hint):
    outcome = teach.evaluate(teach.get(exercise_id), answer)
    assert outcome.status == "wrong"
    assert "hint:" in outcome.message and hint in outcome.message, outcome.message
    assert "Traceback" not in outcome.message


def test_feedback_says_what_was_expected_and_found():
    message = teach.evaluate(teach.get("04.2"), lambda kappa: (1 - 1 / kappa) ** 2).message
    assert "hb_best_beta(1)" not in message  # kappa = 1 is right by accident; the first wrong input is named
    assert "hb_best_beta(4)" in message and "expected: 0.25" in message and "found:    0.5625" in message
    message = teach.evaluate(teach.get("05.3"), lambda d, num_classes=10, width=16: 0).message
    assert "expected: 75,290" in message and "found:    0" in message


def test_the_derived_op_reference_is_the_package_rule():
    """The test's own right answer for 08.3 agrees with optnb.nas.derive on a tie and on none."""
    from optnb.nas.operations import PRIMITIVES
    row = np.array([0.3, 0.1, 0.1, 0.1, 0.2, 0.05, 0.2, 0.05, 0.1])
    weights = np.full((len(space_edges("hb")), 9), 1 / 9)
    weights[0] = row
    assert derive_cell("hb", weights, PRIMITIVES)[0][0] == first_non_none(row, PRIMITIVES) == "sep_conv_3x3"


@pytest.mark.parametrize("exercise_id", list(RIGHT))
def test_a_check_leaves_the_notebooks_random_streams_alone(exercise_id):
    """A check cell sits between cells that draw random numbers: it must not shift their draws,
    or the notebook would record other results than without the exercise."""
    torch = pytest.importorskip("torch")
    state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    teach.evaluate(teach.get(exercise_id), RIGHT[exercise_id])
    assert torch.equal(state, torch.get_rng_state())
    assert np.array_equal(np_state, np.random.get_state()[1])
