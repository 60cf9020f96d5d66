"""Notebook-specific parameters of the theory notebooks 01-04 (see ``NOTEBOOK_SPECS``).

Sizes that depend on the profile (``cfg.profile``) live next to the code that uses them:
``optnb.theory.rates.RATE_KAPPAS`` and ``optnb.train.inspired.NET_SIZES``.
"""

from __future__ import annotations

from optnb.specs import Param, choice, integer, number
from optnb.theory.activations import activation_names

_ACT = choice(activation_names, help="registered activation (optnb.theory.ACTIVATIONS)")
_BETA = number(0.0, 0.999, help="heavy-ball momentum beta of (2)/(10)")

NB01: dict[str, Param] = {
    "ACTIVATION": _ACT,
    "WIDTH": integer(1, 256, help="size n of the n x n matrix W"),
    "NUM_LAYERS": integer(1, 2000, help="layers = GD iterations"),
}

NB02: dict[str, Param] = {
    "ACTIVATION": _ACT,
    "BETA": _BETA,
    "WIDTH": integer(1, 256, help="size n of the n x n matrix W"),
    "NUM_LAYERS": integer(1, 2000, help="layers = iterations"),
    "H_SIZE": integer(2, 40, help="rows of the h_{k+1,j} table shown"),
}

NB03: dict[str, Param] = {
    "ACTIVATION": _ACT,
    "EIG1": number(0.01, 20.0, help="first eigenvalue of the 2 x 2 W"),
    "EIG2": number(0.01, 20.0, help="second eigenvalue of the 2 x 2 W"),
    "ANGLE": number(0.0, 180.0, help="rotation of W's eigenbasis, degrees"),
}

NB04: dict[str, Param] = {
    "ACTIVATION": _ACT,
    "KAPPA": number(1.0, 1e5, help="condition number L/mu of the test quadratic"),
    "BETA": _BETA,
    "NET_BETA": _BETA,
    "EPS": number(1e-14, 0.1, help="accuracy for the iteration counts"),
}
