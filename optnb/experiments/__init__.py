"""Experiments: parameter profiles, recorded results, the papermill runner, plans and tables."""

from optnb.experiments.profiles import (
    PROFILES,
    Config,
    Param,
    ParameterError,
    boolean,
    choice,
    integer,
    number,
    resolve,
    text,
)
from optnb.experiments.results import read_notebook_results, read_sidecar, record

__all__ = [
    "PROFILES", "Config", "Param", "ParameterError", "boolean", "choice", "integer", "number",
    "read_notebook_results", "read_sidecar", "record", "resolve", "text",
]
