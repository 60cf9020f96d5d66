"""Process-tree helpers for the runner's tests (Linux ``/proc``): who descends from whom, who is alive.

Used to prove that interrupted or orphaned runs leave no worker process or kernel running.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of ``pid``, or None when it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command name may contain spaces and parentheses
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie has finished: only its exit status is left)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid`` (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None and stat[0] not in ("Z", "X"):
            children.setdefault(stat[1], []).append(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def wait_gone(pids: Iterable[int], timeout_s: float) -> dict[int, str]:
    """Wait up to ``timeout_s`` for ``pids`` to finish; returns the survivors with their command lines."""
    pids = set(pids)
    deadline = time.monotonic() + timeout_s
    while True:
        left = {p for p in pids if alive(p)}
        if not left or time.monotonic() > deadline:
            return {p: cmdline(p) for p in left}
        time.sleep(0.2)
