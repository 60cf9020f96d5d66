"""Where things live: the repository, notebooks, datasets and results; and the one rule for run ids.

Paths are resolved through the package (never relative to the current directory), because
papermill and nbval run notebooks from different working directories.

Every run folder is ``<results>/runs/<run id>/`` and every caller reaches it through
:func:`run_dir`, which refuses a run id that is not a plain folder name (``../x``, ``/abs``, ``a/b``)
before anything is created or read, so no run id, ``--run-id``, ``RUN_ID`` or ``SEARCH_RUN`` can
point outside the results root. A results root that cannot hold run folders (a file, a path under
a file, a read-only or full file system) is refused in one line by :func:`ensure_dir`.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent

#: a run id: a plain folder name of letters, digits, ``_``, ``-`` and ``.``, starting with a letter
#: or digit (so never ``.``, ``..`` or a hidden name), at most ``RUN_ID_MAX`` characters
RUN_ID_MAX = 200
RUN_ID_PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{RUN_ID_MAX - 1}}}")
RUN_ID_RULE = (f"a folder name of letters, digits, '_', '-' and '.' starting with a letter or digit, "
               f"at most {RUN_ID_MAX} characters")
#: how a user chooses another results root (for the messages)
RESULTS_OPTIONS = "--results, RESULTS_DIR or $OPTNB_RESULTS"


class PathError(ValueError):
    """A run id or a results folder that cannot be used; the message is one line."""


class RunIdError(PathError):
    """A run id that is not a plain folder name inside ``<results>/runs/``."""


class ResultsDirError(PathError):
    """A results folder (or a folder in it) that cannot be created or written."""


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
    """Results root: ``override``, else ``$OPTNB_RESULTS``, else ``<repo>/results`` (a path only:
    nothing is created or checked; :func:`ensure_dir` does that before a command writes)."""
    if override:
        return Path(override).expanduser().resolve()
    env = os.environ.get("OPTNB_RESULTS")
    return Path(env).expanduser().resolve() if env else repo_root() / "results"


def runs_dir(results: str | os.PathLike | None = None) -> Path:
    """``<results>/runs/``: one folder per run (notebook, command or plan entry)."""
    return results_dir(results) / "runs"


def is_run_id(value: object) -> bool:
    """Whether ``value`` is a run id (:data:`RUN_ID_RULE`)."""
    return isinstance(value, str) and RUN_ID_PATTERN.fullmatch(value) is not None


def check_run_id(run_id: object, what: str = "run id") -> str:
    """``run_id`` if it is a plain folder name (:data:`RUN_ID_RULE`), else :class:`RunIdError`
    naming ``what`` (``RUN_ID``, ``--run-id``, ``SEARCH_RUN``, ...) and the rule."""
    if not is_run_id(run_id):
        shown = run_id if not isinstance(run_id, str) or len(run_id) <= 80 else run_id[:80] + "..."
        raise RunIdError(f"{what} {shown!r} is not valid; expected {RUN_ID_RULE} (run folders live "
                         f"only under <results>/runs/)")
    return run_id


def _file_in_the_way(path: Path) -> Path | None:
    """The first existing ancestor-or-self of ``path`` that is not a folder, if any."""
    for candidate in (*reversed(path.parents), path):
        if candidate.exists() and not candidate.is_dir():
            return candidate
    return None


def ensure_dir(path: str | os.PathLike, what: str = "results folder", options: str = RESULTS_OPTIONS) -> Path:
    """Create ``path`` (and its parents) and check that it can be written; returns it.

    ``what`` names the folder and ``options`` how to choose another one, in the message.
    Raises :class:`ResultsDirError` with one line when a file is in the way, the file system is
    read-only or full, or permission is denied (as root a read-only file system still says so:
    ``os.access`` reports EROFS)."""
    path = Path(path)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and existing.is_dir() and existing != path and not _writable(existing):
        raise ResultsDirError(f"{what} {path} cannot be created: {existing} cannot be written "
                              f"({_why_not_writable(existing)}); choose another folder ({options})")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        blocker = _file_in_the_way(path)
        if blocker is not None:
            raise ResultsDirError(f"{what} {path} cannot be created: {blocker} is a file, not a "
                                  f"folder; choose another folder ({options})") from None
        reason = err.strerror or type(err).__name__
        raise ResultsDirError(f"{what} {path} cannot be created: {reason}; free space or choose "
                              f"another folder ({options})") from None
    if not _writable(path):
        raise ResultsDirError(f"{what} {path} cannot be written ({_why_not_writable(path)}); choose "
                              f"another folder ({options})")
    return path


def _why_not_writable(path: Path) -> str:
    return os.strerror(errno.EROFS) if _read_only(path) else "permission denied"


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def run_dir(run_id: str, results: str | os.PathLike | None = None, create: bool = True) -> Path:
    """``<results>/runs/<run_id>/``, created unless ``create`` is false (a lookup).

    The one way to a run folder: ``run_id`` is checked (:func:`check_run_id`) before anything is
    created or read, and a folder that resolves outside ``<results>/runs/`` (a symbolic link) is
    refused. Creation failures are one-line :class:`ResultsDirError`."""
    check_run_id(run_id)
    runs = runs_dir(results)
    path = runs / run_id
    if create:
        ensure_dir(path, what="run folder")
    if path.is_symlink() and not path.resolve().is_relative_to(runs.resolve()):
        raise RunIdError(f"run folder {path} links to {path.resolve()}, outside {runs}; remove the "
                         "link or choose another run id")
    return path
