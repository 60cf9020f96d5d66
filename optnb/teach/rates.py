"""Exercises of notebook 04 (Section 3 rates, Appendix B reconstructed: a faster optimizer, fewer
layers): iterations to a target accuracy, the fastest unit-step heavy-ball momentum, the exact
heavy-ball rate on a quadratic.

Every checker compares against :mod:`optnb.theory.rates` in float64 and recognises the usual
mistakes (a missing square root, the textbook or the AGD momentum, real roots only, ...) to give
a specific hint.
"""

from __future__ import annotations

import math

import numpy as np

from optnb.teach.feedback import Exercise, Wrong, as_float64, expect_close, known_mistake
from optnb.theory import rates

NOTEBOOK = "04_faster_optimizer_better_network"



# ------------------------------------------------------------------------------------- 04.1
def check_predicted_iterations(predicted_iterations) -> str:
    """04.1: ``predicted_iterations(method, kappa, eps)`` = ``log(1/eps) / -log(rate)``, the rate of
    Section 1's table for ``mu = 1/kappa``."""
    for kappa in (2.0, 10.0, 100.0, 1e4):
        mu = 1.0 / kappa
        theory = rates.theory_rates(mu)
        for eps in (1e-2, 1e-6, 1e-12, 1.0):
            for method in rates.METHODS:
                expected = math.log(1.0 / eps) / -math.log(theory[method])
                found = predicted_iterations(method, kappa, eps)
                root = math.sqrt(kappa) if method != "GD" else kappa
                other = rates.theory_rates(mu)["GD" if method != "GD" else "HB"]
                hint = known_mistake(found, [
                    (root * math.log(1.0 / eps),
                     "that is the O(.) approximation kappa log(1/eps) (or sqrt(kappa) log(1/eps)), which takes "
                     "-log(rate) for 1 - rate; the table uses the exact rate: solve rate**k = eps"),
                    (math.ceil(expected),
                     "return the unrounded number (a float); the table's 'predicted_iterations' is not rounded"),
                    (math.log(1.0 / eps) / -math.log(other),
                     "GD contracts by 1 - mu per layer, HB and AGD by 1 - sqrt(mu) (Section 3); you used the "
                     "other one"),
                    (math.log10(1.0 / eps) / -math.log(theory[method]),
                     "you mixed logarithm bases: use the same log for eps and for the rate"),
                ], "rate**k = eps gives k = log(1/eps) / -log(rate), with rate = 1 - mu (GD) or 1 - sqrt(mu) "
                   "(HB, AGD) and mu = 1/kappa (L = 1)")
                expect_close(found, expected, f"predicted_iterations({method!r}, kappa={kappa:g}, eps={eps:g})",
                             atol=1e-9, rtol=1e-9, hint=hint)
    return ("log(1/eps) / -log(rate) for GD, HB and AGD, kappa 2 to 1e4 and eps 1 to 1e-12: at kappa 1e4 "
            "GD needs about 100 times the layers of HB and AGD (kappa against sqrt(kappa)).")


# ------------------------------------------------------------------------------------- 04.2
def check_hb_best_beta(hb_best_beta) -> str:
    """04.2: ``hb_best_beta(kappa)`` is :func:`optnb.theory.rates.hb_unit_step_beta` of ``1/kappa``."""
    for kappa in (1.0, 4.0, 2.5, 100.0, 1e4):
        expected = rates.hb_unit_step_beta(1.0 / kappa)
        found = hb_best_beta(kappa)
        s = math.sqrt(kappa)
        hint = known_mistake(found, [
            ((1.0 - 1.0 / kappa) ** 2,
             "the square root is missing: the HB rate is 1 - sqrt(mu), so beta = (1 - sqrt(mu))^2 with mu = 1/kappa"),
            (((s - 1.0) / (s + 1.0)) ** 2,
             "that is the textbook HB momentum, which goes with the step 4/(1 + sqrt(mu))^2; a layer of (10) has "
             "the unit step, for which the fastest momentum is (1 - sqrt(mu))^2 (Section 1's table)"),
            ((s - 1.0) / (s + 1.0),
             "that is AGD's strongly convex momentum (sqrt L - sqrt mu)/(sqrt L + sqrt mu), not heavy ball's"),
            (1.0 - 1.0 / s,
             "that is the rate 1 - sqrt(mu); the momentum is its square: the complex roots have modulus sqrt(beta)"),
            ((1.0 - s) ** 2, "mu = L / kappa = 1/kappa (L = 1), not kappa"),
        ], "with the unit step every eigenvalue in [mu, 1] gives complex roots of modulus sqrt(beta) when "
           "beta >= (1 - sqrt(mu))^2: take the smallest such beta")
        expect_close(found, expected, f"hb_best_beta({kappa:g})", atol=1e-12, rtol=1e-10, hint=hint)
    beta = rates.hb_unit_step_beta(0.01)
    return (f"(1 - 1/sqrt(kappa))^2, e.g. {beta:.4f} for kappa = 100 and 0 for kappa = 1 (GD is optimal there). "
            "Now move the HB slider below to it and past it.")


# ------------------------------------------------------------------------------------- 04.3
def _largest_root(b: np.ndarray, c: np.ndarray) -> float:
    """max |r| over the roots of ``r^2 + b r + c`` (complex arithmetic), over all entries."""
    disc = np.sqrt((b * b - 4.0 * c).astype(complex))
    return float(np.abs(np.stack([(-b + disc) / 2.0, (-b - disc) / 2.0])).max())


def check_hb_rate(hb_rate) -> str:
    """04.3: ``hb_rate(beta, eigenvalues)`` is ``momentum_rate("HB", beta, eigenvalues)``."""
    cases = [(0.81, rates.quadratic_spectrum(100.0)), (0.04, np.array([0.1, 0.3, 0.5])),
             (0.0, rates.quadratic_spectrum(100.0)),
             (0.3, rates.quadratic_spectrum(100.0)), (0.99, rates.quadratic_spectrum(1000.0)),
             (0.5, np.array([1.0])), (0.9, np.array([1e-4, 0.25, 1.0]))]
    for beta, lam in cases:
        expected = rates.momentum_rate("HB", beta, lam)
        raw = hb_rate(beta, lam.copy())
        what = f"hb_rate({beta}, {len(lam)} eigenvalues in [{lam.min():.3g}, {lam.max():.3g}])"
        found = as_float64(raw, what)
        if not np.all(np.isfinite(found)):
            raise Wrong(f"{what} is {raw} (NaN or infinity).", expected=expected, found=raw,
                        hint="for beta > (1 - sqrt(lam))^2 the discriminant is negative and the roots are "
                             "complex: take the square root in complex arithmetic (np.emath.sqrt, or "
                             ".astype(complex)) and use the modulus abs(r)")
        b = -(1.0 + beta - lam)
        hint = known_mistake(found, [
            (float(np.abs(1.0 - lam).max()), "that is the GD rate max |1 - lam|: the momentum beta changes the "
                                             "recurrence to e_{k+1} = (1 + beta - lam) e_k - beta e_{k-1}"),
            (min(_largest_root(b[i:i + 1], np.array([beta])) for i in range(lam.size)),
             "the rate is the worst eigenvalue: take the max over the spectrum, not the min"),
            (_largest_root(b, -np.full_like(lam, beta)),
             "sign error: e_{k+1} = (1 + beta - lam) e_k - beta e_{k-1} gives r^2 - (1 + beta - lam) r + beta = 0"),
            (math.sqrt(beta), "sqrt(beta) is the modulus of complex roots only; where the discriminant is "
                              "positive (small beta, or lam near 1) a real root is larger"),
        ], "per eigenvalue lam, (2) gives e_{k+1} = (1 + beta - lam) e_k - beta e_{k-1}; its characteristic "
           "polynomial is r^2 - (1 + beta - lam) r + beta; the rate is the largest |r| over both roots and all lam")
        expect_close(found, expected, what, atol=1e-10, rtol=1e-9, hint=hint)
    return ("the largest root modulus of r^2 - (1 + beta - lam) r + beta over the spectrum, real and complex "
            "roots, beta from 0 (GD) to 0.99: the dotted lines of section 2.")


EXERCISES: tuple[Exercise, ...] = (
    Exercise("04.1", NOTEBOOK, "iterations to reach eps", "computation", minutes=8, points=2,
             check=check_predicted_iterations,
             hint="the error shrinks by the rate per layer: rate**k = eps"),
    Exercise("04.2", NOTEBOOK, "predict the fastest heavy-ball momentum", "quick check", minutes=5, points=1,
             check=check_hb_best_beta, hint="mu = 1/kappa; the HB rate with the unit step is 1 - sqrt(mu)"),
    Exercise("04.3", NOTEBOOK, "the exact heavy-ball rate on a quadratic", "derivation", minutes=15, points=3,
             check=check_hb_rate,
             hint="write (2) for one eigen-coordinate of f = sum lam_i x_i^2 / 2 and solve its recurrence"),
)
