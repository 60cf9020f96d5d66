"""Experiments: parameter profiles, recorded results, the papermill runner, plans and tables."""

from optnb.experiments import paper_config
from optnb.experiments.profiles import Config, resolve
from optnb.experiments.results import read_notebook_results, read_sidecar, record
from optnb.specs import PROFILES, Param, ParameterError, boolean, choice, integer, number, text
from optnb.train import rehearsal_overlay

# what a rehearsed run records of its configuration: the paper's setting names (issue 11)
rehearsal_overlay.set_describer(paper_config.describe)

__all__ = [
    "PROFILES", "Config", "Param", "ParameterError", "boolean", "choice", "integer", "number",
    "read_notebook_results", "read_sidecar", "record", "resolve", "text",
]
