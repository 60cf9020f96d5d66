"""Notebook discovery: the ``NN_topic.ipynb`` files of the suite and their ``parameters`` cells.

The suite's notebooks live in ``notebooks/`` and are named ``NN_snake_case_topic.ipynb``; the
two-digit prefix fixes the reading and CI order (``9x`` are report notebooks). Parameters are read
with ``papermill.inspect_notebook``, i.e. exactly as papermill will see them when it injects values.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optnb.paths import notebooks_dir

#: ``NN_name.ipynb``, or ``NNx_name.ipynb`` for a notebook that follows ``NN`` (``08b_search_stability``)
NAME_PATTERN = re.compile(r"^\d\d[a-z]?_[a-z0-9_]+\.ipynb$")


class UnknownNotebookError(KeyError):
    """A notebook name that matches no notebook of the suite (the message lists the valid ones)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class NotebookParameter:
    """One name of a ``parameters`` cell as papermill infers it."""

    name: str
    type_name: str  # papermill's inferred type: "int", "float", "str", "bool", "None", ...
    default: Any  # the literal value (``ast.literal_eval`` of papermill's source text)
    help: str = ""


@dataclass(frozen=True)
class NotebookInfo:
    stem: str
    path: Path
    parameters: dict[str, NotebookParameter] = field(default_factory=dict)


def list_notebooks(directory: str | os.PathLike | None = None) -> list[Path]:
    """The suite's notebooks, sorted by name (fixtures and checkpoints are not listed)."""
    folder = Path(directory) if directory else notebooks_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and NAME_PATTERN.match(p.name))


def find_notebook(name: str | os.PathLike, directory: str | os.PathLike | None = None) -> Path:
    """Resolve ``"00_tour"``, ``"00"``, ``"08b"``, ``"00_tour.ipynb"`` or a path to an existing notebook.

    Raises :class:`UnknownNotebookError` naming the valid stems when nothing matches.
    """
    text = str(name)
    as_path = Path(text).expanduser()
    if as_path.suffix == ".ipynb" and as_path.is_file():
        return as_path.resolve()
    stem = Path(text).name.removesuffix(".ipynb")
    known = list_notebooks(directory)
    exact = [p for p in known if p.stem == stem]
    if exact:
        return exact[0]
    by_prefix = [p for p in known if re.fullmatch(r"\d\d[a-z]?", stem) and p.stem.startswith(stem + "_")]
    if len(by_prefix) == 1:
        return by_prefix[0]
    valid = ", ".join(p.stem for p in known) or "(none found)"
    raise UnknownNotebookError(f"unknown notebook {text!r}; valid: {valid}")


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def notebook_parameters(path: str | os.PathLike) -> dict[str, NotebookParameter]:
    """The names of the notebook's ``parameters`` cell with type and default, in cell order."""
    import papermill

    found = papermill.inspect_notebook(str(path))
    return {
        name: NotebookParameter(
            name=name,
            type_name=str(spec.get("inferred_type_name", "None")),
            default=_literal(str(spec.get("default", "None"))),
            help=str(spec.get("help", "")),
        )
        for name, spec in found.items()
    }


def describe(name: str | os.PathLike, directory: str | os.PathLike | None = None) -> NotebookInfo:
    path = find_notebook(name, directory)
    return NotebookInfo(stem=path.stem, path=path, parameters=notebook_parameters(path))


def discover(directory: str | os.PathLike | None = None) -> list[NotebookInfo]:
    """Every notebook of the suite with its parameters (what ``optnb list`` prints)."""
    return [
        NotebookInfo(stem=p.stem, path=p, parameters=notebook_parameters(p))
        for p in list_notebooks(directory)
    ]
