"""Where things live: the repository, notebooks, datasets and results.

Paths are resolved through the package (never relative to the current directory), because
papermill and nbval run notebooks from different working directories.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root() -> Path:
    """The checkout that holds ``pyproject.toml`` (falls back to the current directory)."""
    for candidate in (_PACKAGE_DIR.parent, *_PACKAGE_DIR.parents):
        if (candidate / "pyproject.toml").is_file() and (candidate / "optnb").is_dir():
            return candidate
    return Path.cwd()


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def data_dir() -> Path:
    """Dataset root: ``$OPTNB_DATA`` or ``<repo>/data``."""
    env = os.environ.get("OPTNB_DATA")
    return Path(env).expanduser().resolve() if env else repo_root() / "data"


def results_dir(override: str | os.PathLike | None = None) -> Path:
    """Results root: ``override``, else ``$OPTNB_RESULTS``, else ``<repo>/results``."""
    if override:
        return Path(override).expanduser().resolve()
    env = os.environ.get("OPTNB_RESULTS")
    return Path(env).expanduser().resolve() if env else repo_root() / "results"


def runs_dir(results: str | os.PathLike | None = None) -> Path:
    """``<results>/runs/``: one folder per run (notebook, command or plan entry)."""
    return results_dir(results) / "runs"


def run_dir(run_id: str, results: str | os.PathLike | None = None, create: bool = True) -> Path:
    """``<results>/runs/<run_id>/``, created unless ``create`` is false (a lookup)."""
    path = runs_dir(results) / run_id
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
