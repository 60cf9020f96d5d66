"""Experiments: parameter profiles, recorded results, the papermill runner, plans and tables."""

from optnb.experiments.profiles import Config, resolve
from optnb.experiments.results import read_notebook_results, read_sidecar, record
from optnb.specs import PROFILES, Param, ParameterError, boolean, choice, integer, number, text

__all__ = [
    "PROFILES", "Config", "Param", "ParameterError", "boolean", "choice", "integer", "number",
    "read_notebook_results", "read_sidecar", "record", "resolve", "text",
]
