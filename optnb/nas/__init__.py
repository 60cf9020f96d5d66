"""Neural architecture search of paper §9: the DARTS, HB (eq. 15) and AGD (eqs. 20-21) search
spaces, the bilevel architect (1st/2nd order), genotypes and derive rules, the evaluation
networks of Tables 4-5, the checkpointed search loop, plots and the ``optnb search`` /
``optnb evaluate`` commands. Choices and DARTS conventions: ``docs/nas_choices.md``.
"""

from optnb.nas.architect import Architect, unrolled_grad, unrolled_grad_autograd
from optnb.nas.derive import RULES, derive, derive_cell
from optnb.nas.edges import SPACES, space_edges
from optnb.nas.errors import GenotypeError, NasError, UnknownNameError
from optnb.nas.evaluate import EvalConfig, EvalResult, train_genotype
from optnb.nas.genotypes import Genotype, count_parameter_free, parse, to_json, to_text
from optnb.nas.network import NetworkCIFAR, NetworkImageNet, count_parameters, drop_masks
from optnb.nas.operations import DARTS_PRIMITIVES, OPS, PRIMITIVES, build_op
from optnb.nas.search import SearchConfig, SearchResult, search
from optnb.nas.spaces import SearchNetwork

__all__ = [
    "Architect", "DARTS_PRIMITIVES", "EvalConfig", "EvalResult", "Genotype", "GenotypeError",
    "NasError", "NetworkCIFAR", "NetworkImageNet", "OPS", "PRIMITIVES", "RULES", "SPACES",
    "SearchConfig", "SearchNetwork", "SearchResult", "UnknownNameError", "build_op",
    "count_parameter_free", "count_parameters", "derive", "derive_cell", "drop_masks", "parse",
    "search", "space_edges", "to_json", "to_text", "train_genotype", "unrolled_grad",
    "unrolled_grad_autograd",
]
