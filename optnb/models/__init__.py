"""The model zoo: CIFAR ResNet/HBNet (eq. (10)), DenseNet/AGDNet (eq. (12)), ADMMNet (eq. (13),
beyond the paper), ImageNet variants.

``build(name, **options)`` and ``names()`` are the entry points; ``size_table`` measures
parameters and multiply-accumulates beside the paper's Tables 1-2 (convention in
:mod:`optnb.models.flops`).
"""

from optnb.models.errors import ModelOptionError, UnknownModelError
from optnb.models.flops import (
    CONVENTION,
    TABLE1_MODELS,
    TABLE2_MODELS,
    count_compute,
    count_params,
    measure,
    params_match,
    size_table,
)
from optnb.models.registry import baseline_of, build, names, spec, valid_options

__all__ = [
    "CONVENTION",
    "ModelOptionError",
    "TABLE1_MODELS",
    "TABLE2_MODELS",
    "UnknownModelError",
    "baseline_of",
    "build",
    "count_compute",
    "count_params",
    "measure",
    "names",
    "params_match",
    "size_table",
    "spec",
    "valid_options",
]
