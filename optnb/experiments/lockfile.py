"""The tested versions (``requirements.lock``) and the runs made with other ones.

``make`` installs the exact versions pinned in ``requirements.lock`` (``make lock`` regenerates it
from ``pyproject.toml``'s ranges with pip-tools); every run's sidecar records the versions of the
packages that can change its numbers (``results.RECORDED_PACKAGES``). :func:`drift` compares the two,
and :func:`drift_markdown` is the report's list of runs made with versions other than the lock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optnb.paths import repo_root

LOCK_FILE = "requirements.lock"
#: a lock of the whole dev environment is ~20 KB; anything far larger is not a lock
LOCK_MAX_BYTES = 1_000_000
REGENERATE = "make lock"

# name[extras] == version, then an optional environment marker and hashes (pip's requirement syntax)
_PIN = re.compile(r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[[^\]]*\])?\s*==\s*"
                  r"(?P<version>[A-Za-z0-9][A-Za-z0-9.+!_-]*)\s*(?P<rest>;.*|--hash=.*)?")
# pip options a generated lock may carry that say where to download from, not what
_INDEX_OPTIONS = ("--index-url", "-i", "--extra-index-url", "--find-links", "-f", "--trusted-host",
                  "--no-index", "--prefer-binary", "--hash")


class LockFileError(ValueError):
    """A lock file that cannot be read or is not a list of exact pins; the message is one line."""


@dataclass(frozen=True)
class Drift:
    """One package a run was made with at another version than the lock's (``None``: not installed)."""

    package: str
    recorded: str | None
    locked: str

    def __str__(self) -> str:
        return f"{self.package} {self.recorded or 'not installed'} (lock {self.locked})"


def canonical_name(name: str) -> str:
    """PEP 503: lower case, runs of ``-``, ``_`` and ``.`` become one ``-`` (``Jupyter_Core`` -> ``jupyter-core``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, line) with ``\\`` continuations joined and comments removed."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*", "", raw).rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = (pending + line).strip(), ""
        if line:
            out.append((start, line))
    if pending.strip():
        out.append((start, pending.strip()))
    return out


def parse_lock(text: str, source: str = LOCK_FILE) -> dict[str, str]:
    """``{canonical name: version}`` of a pip requirements file holding ``name==version`` pins only.

    Comments, environment markers, ``--hash`` and index options are tolerated; anything else (a
    range, an unpinned name, ``-e``/``-r``/a URL) and a name pinned twice at two versions is refused
    with :class:`LockFileError` naming the line."""
    if len(text) > LOCK_MAX_BYTES:
        raise LockFileError(f"{source} is {len(text)} characters, more than {LOCK_MAX_BYTES}: not a lock "
                            f"file (regenerate it with `{REGENERATE}`)")
    pins: dict[str, str] = {}
    for number, line in _logical_lines(text):
        if line.split("=")[0].split()[0] in _INDEX_OPTIONS:
            continue
        match = _PIN.fullmatch(line)
        if match is None:
            raise LockFileError(f"{source} line {number}: {line[:80]!r} is not a `name==version` pin "
                                f"(a lock holds exact pins only; regenerate it with `{REGENERATE}`)")
        name, version = canonical_name(match["name"]), match["version"]
        if pins.get(name, version) != version:
            raise LockFileError(f"{source} line {number}: {name} is pinned twice ({pins[name]} and "
                                f"{version}); regenerate it with `{REGENERATE}`")
        pins[name] = version
    return pins


def lock_path() -> Path:
    return repo_root() / LOCK_FILE


def read_lock(path: str | Path | None = None) -> dict[str, str]:
    """The pins of ``path`` (default: the checkout's ``requirements.lock``), see :func:`parse_lock`."""
    path = Path(path) if path is not None else lock_path()
    try:
        size = path.stat().st_size
        if size > LOCK_MAX_BYTES:
            raise LockFileError(f"{path} is {size} bytes, more than {LOCK_MAX_BYTES}: not a lock file "
                                f"(regenerate it with `{REGENERATE}`)")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise LockFileError(f"cannot read the lock file {path}: {getattr(err, 'strerror', None) or err}") from err
    return parse_lock(text, str(path))


def same_version(recorded: str, locked: str) -> bool:
    """PEP 440's ``==``: a pin without a local label matches any local build of it
    (``torch.__version__`` ``2.14.1+cu130`` is the lock's ``2.14.1``)."""
    return recorded == locked or ("+" not in locked and recorded.split("+")[0] == locked)


def drift(recorded: Mapping[str, Any], locked: Mapping[str, str] | None = None) -> list[Drift]:
    """The packages of a sidecar's ``versions`` whose version is not the lock's (sorted by name).

    Keys that are not locked packages (``python``, ``cuda``, ``gpu``...) are ignored, so an older
    sidecar is compared on the packages it has; a recorded ``None`` (not installed) is a drift."""
    locked = read_lock() if locked is None else locked
    found = []
    for name, version in recorded.items():
        key = canonical_name(str(name))
        if key not in locked or (version is not None and same_version(str(version), locked[key])):
            continue
        found.append(Drift(key, None if version is None else str(version), locked[key]))
    return sorted(found, key=lambda d: d.package)


def drift_markdown(sidecars: Mapping[str, Mapping[str, Any]], locked: Mapping[str, str] | None = None) -> str:
    """One line per run (by run id) whose recorded versions differ from the lock; ``""`` when all
    match. An unreadable lock is said in one line instead."""
    try:
        locked = read_lock() if locked is None else locked
    except LockFileError as err:
        return f"Versions not compared with {LOCK_FILE}: {err}."
    lines = []
    for run_id, sidecar in sorted(sidecars.items()):
        found = drift(sidecar.get("versions") or {}, locked)
        if found:
            lines.append(f"- `{run_id}`: " + "; ".join(map(str, found)))
    if not lines:
        return ""
    return (f"**{len(lines)} run(s) made with versions other than the tested ones** ({LOCK_FILE}; "
            "their numbers may not be comparable with the others):\n\n" + "\n".join(lines))
