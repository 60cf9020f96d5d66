"""Errors and option checks shared by the model builders.

Every message is one line that names the problem and the valid choices, so that a notebook,
the CLI and the runner can show it as is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Real
from typing import Any

__all__ = ["ModelOptionError", "UnknownModelError", "check_choice", "check_finite"]


class UnknownModelError(KeyError):
    """``build`` was given a name that is not in the registry (the message lists ``names()``)."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


class ModelOptionError(ValueError):
    """A model option is unknown or has an invalid value (the message names the valid ones)."""


def check_finite(name: str, value: Any) -> float:
    """``value`` as a float; ``ModelOptionError`` unless it is a finite real number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ModelOptionError(f"{name} must be a finite number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ModelOptionError(f"{name} must be a finite number, got {value!r}")
    return out


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` unchanged if it is one of ``choices``, else ``ModelOptionError`` listing them."""
    choices = tuple(choices)
    if value not in choices:
        valid = ", ".join(map(repr, choices))
        raise ModelOptionError(f"{name}={value!r} is not valid; valid choices: {valid}")
    return value
