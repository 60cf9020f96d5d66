"""Pure maths of the paper, float64-exact: optimizers (1)-(6), activations and their costs
(Appendix A), Lemma 1's symmetric positive definite weights, the network/optimizer equivalences
(7)-(13) and the convergence rates behind the conjecture of Appendix B (:mod:`optnb.theory.rates`)."""

from optnb.theory.activations import (
    ACTIVATIONS,
    Activation,
    CostConstants,
    UnknownActivationError,
    activation_names,
    cost_constants,
    get_activation,
    symbolic_phi,
    symbolic_psi,
)
from optnb.theory.algorithms import (
    ADMMIterates,
    NesterovIterates,
    admm_linearized,
    beta_schedule,
    cumulative_coefficients,
    gradient_descent,
    h_coefficients,
    heavy_ball,
    nesterov,
    nesterov_betas,
    nesterov_single_sequence,
    nesterov_thetas,
    strongly_convex_beta,
)
from optnb.theory.checks import CheckFailed, check_close
from optnb.theory.equivalence import (
    Equivalence,
    Lemma1Cost,
    admm_equivalence,
    agd_dense_equivalence,
    agd_equivalence,
    all_equivalences,
    descent_violation,
    gd_equivalence,
    hb_equivalence,
)
from optnb.theory.spd import (
    NotPositiveDefiniteError,
    NotSymmetricError,
    WeightError,
    check_spd,
    random_spd,
    spd_2d,
)

__all__ = [
    "ACTIVATIONS", "ADMMIterates", "Activation", "CheckFailed", "CostConstants", "Equivalence",
    "Lemma1Cost", "NesterovIterates", "NotPositiveDefiniteError", "NotSymmetricError",
    "UnknownActivationError", "WeightError", "activation_names", "admm_equivalence",
    "admm_linearized", "agd_dense_equivalence", "agd_equivalence", "all_equivalences",
    "beta_schedule", "check_close", "check_spd", "cost_constants", "cumulative_coefficients",
    "descent_violation", "gd_equivalence", "get_activation", "gradient_descent",
    "h_coefficients", "hb_equivalence", "heavy_ball", "nesterov", "nesterov_betas",
    "nesterov_single_sequence", "nesterov_thetas", "random_spd", "spd_2d",
    "strongly_convex_beta", "symbolic_phi", "symbolic_psi",
]
