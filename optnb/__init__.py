"""optnb: optimization-inspired architecture design and NAS, as a notebook research suite.

Reference implementation of Yang, Shen, Li & Lin, *Optimization-Inspired Manual Architecture
Design and Neural Architecture Search*. Subpackages are imported lazily so that ``import optnb``
stays cheap (no torch import until a subpackage that needs it is touched).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {
    "data", "experiments", "live", "models", "nas", "paths", "seed", "theory", "train", "widgets",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"optnb.{name}")
    raise AttributeError(f"module 'optnb' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES)
