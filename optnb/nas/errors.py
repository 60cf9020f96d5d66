"""Errors raised by ``optnb.nas``: one line each, naming the problem and the valid choices."""

from __future__ import annotations


class NasError(ValueError):
    """Base class: bad input to the NAS code (a ``ValueError``)."""


class UnknownNameError(NasError, KeyError):
    """An unknown space, operation, genotype or rule name (also a ``KeyError``)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class GenotypeError(NasError):
    """A malformed genotype: bad text, unknown op, index out of range, wrong arity."""


def unknown(kind: str, name: object, valid: object) -> UnknownNameError:
    """``UnknownNameError("unknown <kind> 'x'; valid choices: a, b, c")``."""
    choices = ", ".join(map(str, valid))
    return UnknownNameError(f"unknown {kind} {name!r}; valid choices: {choices}")
