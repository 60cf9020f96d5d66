"""Exercises of notebook 02 (momentum networks: heavy ball (2)/(10), Nesterov (3)-(5), (11)).

Conventions: a feature vector is a 1-D float64 numpy array of shape ``(n,)``; ``layer(z)`` is
``Phi(W z)``; a sequence of states is returned stacked, shape ``(K + 1, n)``, row k = ``z_k``;
the paper's ``z_{-1} = z_0`` (and ``theta_{-1} = 1``).
"""

from __future__ import annotations

import numpy as np

from optnb.teach.feedback import Exercise, as_float64, expect_close, expect_close_or_mistake
from optnb.theory.algorithms import cumulative_coefficients, h_coefficients, heavy_ball, nesterov_betas
from optnb.theory.equivalence import Lemma1Cost, propagate_agd, propagate_hb, propagate_plain
from optnb.theory.spd import random_spd

NOTEBOOK = "02_momentum_networks"


def _networks() -> list[tuple[str, Lemma1Cost, np.ndarray]]:
    rng = np.random.default_rng(11)
    out = []
    for n, name in ((5, "tanh"), (3, "relu"), (1, "softsign")):
        cost = Lemma1Cost(random_spd(n, (0.05, 1.0), rng=rng), name)
        out.append((f"n={n}, act={name}", cost, rng.standard_normal(n)))
    return out


def _hb_zero_start(layer, z0: np.ndarray, num_layers: int, beta: float) -> np.ndarray:
    """(10) started from z_{-1} = 0 instead of z_0 (a typical mistake)."""
    zs, prev, z = [z0], np.zeros_like(z0), z0
    for _ in range(num_layers):
        prev, z = z, layer(z) + beta * (z - prev)
        zs.append(z)
    return np.stack(zs)


def check_hb_network(hb_network) -> str:
    """02.1: ``hb_network(layer, z0, num_layers, beta)`` is the HB network (10)."""
    count = 0
    for what, cost, z0 in _networks():
        for beta, K in ((0.5, 12), (0.9, 40), (0.0, 3), (0.7, 0)):
            expected = propagate_hb(cost.layer, z0, K, beta)
            found = hb_network(cost.layer, z0.copy(), K, beta)
            expect_close_or_mistake(found, expected, f"the HB network for {what}, beta={beta}, {K} layers", [
                (propagate_plain(cost.layer, z0, K), "your momentum term is zero: that is the plain network (7). "
                 "Keep z_{k-1} in its own variable and update it *before* overwriting z_k"),
                (propagate_hb(cost.layer, z0, K, -beta), "the momentum is beta (z_k - z_{k-1}), new minus old: "
                 "check the sign"),
                (propagate_agd(cost.layer, z0, K, beta), "in (10) the momentum is added *after* the layer: "
                 "Phi(W z_k) + beta (z_k - z_{k-1}); inside Phi it is the AGD network (11)"),
                (_hb_zero_start(cost.layer, z0, K, beta), "start with z_{-1} = z_0 (the paper's x_{-1} = x_0), "
                 "not zero: the first layer is a plain one"),
                (expected[1:], "row 0 is z_0 itself: num_layers layers give num_layers + 1 rows"),
            ], atol=1e-12, rtol=1e-10)
            count += 1
        # (10) is heavy ball (2) on f of (8), mapped back with z = U^-1 x
        hb = heavy_ball(cost.grad, cost.to_x(z0), 25, 0.6)
        expect_close(cost.to_z(hb), as_float64(hb_network(cost.layer, z0.copy(), 25, 0.6), "the HB network"),
                     f"HB (2) on f mapped back against your network for {what}", atol=1e-12, rtol=1e-10)
    return (f"(10) is right on {count} cases (beta 0 to 0.9, 0 to 40 layers, n = 1 to 5), and it reproduces "
            "heavy ball (2) on f of (8) mapped back with z = U^-1 x.")


def check_nesterov_betas(nesterov_beta) -> str:
    """02.2: ``nesterov_beta(num)`` is beta_0 .. beta_{num-1} of (3) with theta_{-1} = 1."""
    for num in (13, 60, 3, 2, 1, 0):
        expected = nesterov_betas(num)
        k = np.arange(num, dtype=np.float64)
        found = nesterov_beta(num)
        expect_close_or_mistake(found, expected, f"nesterov_beta({num})", [
            (nesterov_betas(num + 1)[1:], "off by one: your entry k is beta_{k+1}. beta_k = theta_k (1 - "
             "theta_{k-1}) / theta_{k-1} uses theta_k and theta_{k-1}, and beta_0 = beta_1 = 0"),
            (np.concatenate([[0.0], expected[:-1]])[:num], "off by one: your entry k is beta_{k-1}. "
             "beta_0 = beta_1 = 0 and beta_2 = 0.2818 (theta_{-1} = theta_0 = 1)"),
            ((k - 1) / (k + 2), "(k - 1)/(k + 2) is the popular approximation; (3) defines beta_k from theta_k, "
             "with (1 - theta_k)/theta_k^2 = 1/theta_{k-1}^2 and theta_0 = 1"),
        ], atol=1e-12, rtol=1e-12,
            hint="theta_0 = 1, theta_k = (sqrt(t^4 + 4 t^2) - t^2)/2 with t = theta_{k-1}; "
                 "beta_k = theta_k (1 - theta_{k-1}) / theta_{k-1} with theta_{-1} = 1")
    return "beta_0 .. beta_59 match (3) to 1e-12 (0, 0, 0.2818, 0.4340, ...), and num = 0, 1, 2 work."


def _h_row_without_minus_one(beta: np.ndarray) -> np.ndarray:
    """Recursion (5) with h_{k+1,k-1} = beta_{k+1} h_{k,k-1} (the "- 1" forgotten), row 4."""
    H = np.zeros((5, 4))
    for k in range(4):
        H[k + 1, :k] = beta[k + 1] * H[k, :k]
        H[k + 1, k] = 1.0 + beta[k + 1]
    return H[4]


def check_h_row(h_row_four) -> str:
    """02.3: ``h_row_four(beta)`` is [h_{4,0}, h_{4,1}, h_{4,2}, h_{4,3}] of (5) (k = 3)."""
    rng = np.random.default_rng(5)
    cases = [("random betas", rng.uniform(0.1, 0.9, 5)), ("Nesterov's schedule", nesterov_betas(5)),
             ("beta = 0.5 after beta_0 = 0", np.array([0.0, 0.5, 0.5, 0.5, 0.5])),
             ("all betas 0 (GD)", np.zeros(5))]
    for what, beta in cases:
        expected = h_coefficients(4, beta)[4]
        found = h_row_four(beta.copy())
        expect_close_or_mistake(found, expected, f"h_row_four(beta) for {what}, beta = {np.round(beta, 4)}", [
            (h_coefficients(4, np.concatenate([[0.0], beta[:4]]))[4], "off by one in k: row k+1 of (5) uses "
             "beta_{k+1}, so row 4 uses beta_4 (h_{4,3} = 1 + beta_4), row 3 beta_3, ..."),
            (_h_row_without_minus_one(beta), "the j = k-1 case of (5) is beta_{k+1} (h_{k,k-1} - 1): the "
             "'- 1' makes h_{4,2} = beta_4 beta_3, not beta_4 (1 + beta_3)"),
            (expected[::-1], "return [h_{4,0}, h_{4,1}, h_{4,2}, h_{4,3}]: j = 0 first"),
            (cumulative_coefficients(4, beta)[4], "those are the cumulative c_{4,j}; h_{k+1,j} are the "
             "coefficients of (4)/(5) (their increments)"),
        ], atol=1e-12, rtol=1e-12,
            hint="unroll (5) from h_{1,0} = 1 + beta_1: each row multiplies the older entries by beta_{k+1}")
    return ("h_{4,0..3} = beta_4 beta_3 beta_2 beta_1, beta_4 beta_3 beta_2, beta_4 beta_3, 1 + beta_4: "
            "right for random betas, Nesterov's schedule, a constant beta and beta = 0.")


def _agd(layer, z0: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """(11) with layer k using ``betas[k]``, K = len(betas) layers (propagate_agd wants beta_K too)."""
    return propagate_agd(layer, z0, len(betas), np.append(betas, 0.0))


def _agd_outside(layer, z0: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """(11) with the extrapolation added after the layer (a typical mistake)."""
    zs, prev, z = [z0], z0, z0
    for b in betas:
        prev, z = z, layer(z) + b * (z - prev)
        zs.append(z)
    return np.stack(zs)


def check_agd_network(agd_network) -> str:
    """02.4: ``agd_network(layer, z0, betas)`` is the AGD network (11), K = len(betas) layers."""
    rng = np.random.default_rng(3)
    count = 0
    for what, cost, z0 in _networks():
        for label, betas in (("random betas", rng.uniform(0.2, 0.9, 9)),
                             ("Nesterov's schedule", nesterov_betas(30)), ("no layers", np.zeros(0))):
            K = len(betas)
            expected = _agd(cost.layer, z0, betas)
            found = agd_network(cost.layer, z0.copy(), betas.copy())
            mistakes = [(_agd_outside(cost.layer, z0, betas), "in (11) the extrapolation is *inside* the layer: "
                         "Phi(W (z_k + beta_k (z_k - z_{k-1}))); after it, it is the HB form (10)"),
                        (expected[1:], "row 0 is z_0 itself: K layers give K + 1 rows")]
            if K > 1:
                mistakes.append((_agd(cost.layer, z0, np.concatenate([betas[1:], [0.0]])),
                                 "off by one in k: layer k (from z_k to z_{k+1}) uses beta_k = betas[k]"))
                mistakes.append((_agd(cost.layer, z0, np.concatenate([[0.0], betas[:-1]])),
                                 "off by one in k: layer k (from z_k to z_{k+1}) uses beta_k = betas[k], "
                                 "not betas[k - 1]"))
            expect_close_or_mistake(found, expected, f"the AGD network for {what}, {label}, {K} layers",
                                    mistakes, atol=1e-12, rtol=1e-10)
            count += 1
    return (f"(11) is right on {count} cases (random betas with beta_0 != 0, Nesterov's schedule, "
            "0 layers; n = 1 to 5).")


EXERCISES: tuple[Exercise, ...] = (
    Exercise("02.1", NOTEBOOK, "the heavy-ball network (10)", "quick check", minutes=8, points=1,
             check=check_hb_network,
             hint="z_{k+1} = layer(z_k) + beta * (z_k - z_{k-1}), z_{-1} = z_0; return np.stack of z_0 .. z_K"),
    Exercise("02.2", NOTEBOOK, "Nesterov's momentum schedule beta_k", "computation", minutes=10, points=2,
             check=check_nesterov_betas,
             hint="compute theta_0 .. theta_{num-1} first, then beta_k from theta_k and theta_{k-1}"),
    Exercise("02.3", NOTEBOOK, "h_{k+1,j} of (5) for k = 3, by hand", "derivation", minutes=15, points=2,
             check=check_h_row, hint="write out rows 1, 2, 3 and 4 of (5) on paper first"),
    Exercise("02.4", NOTEBOOK, "the AGD network (11)", "computation", minutes=10, points=2,
             check=check_agd_network,
             hint="layer k: z_{k+1} = layer(z_k + betas[k] * (z_k - z_{k-1})) for k = 0 .. len(betas) - 1"),
)
