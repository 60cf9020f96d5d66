"""Parameter specs: how a notebook, CLI or plan-file parameter is validated, and the vocabularies
every layer shares (profiles, datasets, live modes).

This module is the bottom of the package: it imports nothing from ``optnb``, so that any layer
(theory, models, nas, data, train, experiments, cli) can declare its parameters with the same
primitives and every entry point validates with the same rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: run sizes: ``smoke`` (CI on a 2-core CPU), ``quick`` (one GPU, minutes), ``paper`` (the paper)
PROFILES = ("smoke", "quick", "paper")
#: what a user may ask for: a profile, or ``auto`` (quick with a GPU, smoke without)
PROFILE_CHOICES = (*PROFILES, "auto")
#: every dataset ``optnb.data`` can load; the first two are bundled stand-ins, never the paper's
DATASETS = ("embedded", "synthetic", "cifar10", "cifar100", "imagenet")
REAL_DATASETS = ("cifar10", "cifar100", "imagenet")
DATASET_CHOICES = ("auto", *DATASETS)
#: live plots: ``widget`` (JupyterLab), ``display`` (papermill), ``off`` (scripts, CI)
LIVE_CHOICES = ("auto", "widget", "display", "off")


class ParameterError(ValueError):
    """A notebook or CLI parameter is invalid; the message is one line naming the valid choices."""


@dataclass(frozen=True)
class Param:
    """How one parameter is validated. Build with ``choice``, ``integer``, ``number``, ..."""

    kind: str
    choices: Sequence[Any] | Callable[[], Sequence[Any]] | None = None
    lo: float | None = None
    hi: float | None = None
    help: str = ""
    #: an extra predicate on top of the kind (e.g. "a plain folder name"), and how it reads in
    #: messages instead of the kind's own description
    check: Callable[[Any], bool] | None = None
    rule: str = ""

    def valid_choices(self) -> list[Any]:
        values = self.choices() if callable(self.choices) else self.choices
        return list(values or ())

    def describe(self) -> str:
        if self.rule:
            return self.rule
        if self.kind == "choice":
            return "one of: " + ", ".join(map(str, self.valid_choices()))
        if self.kind in ("integer", "number"):
            noun = "an int" if self.kind == "integer" else "a finite number"
            lo = "-inf" if self.lo is None else self.lo
            hi = "inf" if self.hi is None else self.hi
            return f"{noun} in [{lo}, {hi}]"
        return {"boolean": "True or False", "text": "a string",
                "mapping": "a mapping of names to numbers, bools or strings"}.get(self.kind, self.kind)

    def validate(self, name: str, value: Any) -> Any:
        """``value`` checked (numbers made float for ``number``); raises :class:`ParameterError`."""

        def fail(why: str = "") -> ParameterError:
            extra = f" ({why})" if why else ""
            return ParameterError(f"{name}={value!r} is not valid{extra}; expected {self.describe()}")

        if self.kind == "choice":
            if value not in self.valid_choices():
                raise fail()
            return value
        if self.kind == "boolean":
            if not isinstance(value, bool):
                hint = "a string is not a bool: pass booleans with -y/YAML" if isinstance(value, str) else ""
                raise fail(hint)
            return value
        if self.kind == "text":
            if not isinstance(value, str):
                raise fail(f"got {type(value).__name__}")
            if self.check is not None and not self.check(value):
                raise fail()
            return value
        if self.kind == "mapping":
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise fail(f"got {type(value).__name__}")
            bad = [k for k, v in value.items() if not isinstance(v, (bool, int, float, str, type(None)))
                   or (isinstance(v, float) and not math.isfinite(v))]
            if bad:
                raise fail(f"{bad[0]!r} is not a finite number, bool, string or None")
            return dict(value)
        if self.kind in ("integer", "number"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise fail(f"got {type(value).__name__}")
            if self.kind == "integer" and not isinstance(value, int):
                raise fail("not an integer")
            if not math.isfinite(value):
                raise fail("not finite")
            if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
                raise fail("out of range")
            return float(value) if self.kind == "number" else value
        raise ParameterError(f"{name}: unknown parameter kind {self.kind!r}")


def choice(*values: Any, help: str = "") -> Param:
    """One of ``values``; a single callable argument is called lazily (e.g. ``models.names``)."""
    if len(values) == 1 and callable(values[0]):
        return Param("choice", choices=values[0], help=help)
    return Param("choice", choices=tuple(values), help=help)


def integer(lo: int | None = None, hi: int | None = None, help: str = "") -> Param:
    return Param("integer", lo=lo, hi=hi, help=help)


def number(lo: float | None = None, hi: float | None = None, help: str = "") -> Param:
    return Param("number", lo=lo, hi=hi, help=help)


def boolean(help: str = "") -> Param:
    return Param("boolean", help=help)


def text(help: str = "", check: Callable[[str], bool] | None = None, rule: str = "") -> Param:
    """A string; ``check`` (a predicate) narrows it, ``rule`` says how in the error message."""
    return Param("text", help=help, check=check, rule=rule)


def mapping(help: str = "") -> Param:
    """A flat ``{name: number | bool | str | None}`` mapping, e.g. model options."""
    return Param("mapping", help=help)


def check_profile(name: str) -> str:
    """``name`` if it is a concrete profile (not ``auto``), else :class:`ParameterError`."""
    if name not in PROFILES:
        raise ParameterError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    return name
