"""Who owns a run folder: one advisory lock per run folder, so that every run executes once.

A run folder ``<results>/runs/<run id>/`` is written by one process at a time, its *owner*, which
holds ``fcntl.flock`` on ``<run folder>/.owner.lock``; the file says who (pid, host, since when,
the command). The operating system releases the lock when the owner dies, however it dies
(SIGKILL included), so a stale lock is simply taken over by the next claim.

* The runner claims a notebook run before it starts (in the process that executes it: the
  parent with ``jobs=1``, a worker otherwise) and tells the kernel through ``$OPTNB_RUN_OWNER``
  (``<pid>:<run folder>``) that its runner holds the lock, so the kernel's ``resolve`` does not
  claim it again.
* ``resolve(register=True)`` claims the folder for a notebook opened interactively and for
  ``optnb train`` / ``search`` / ``evaluate`` (``profiles.register``).
* A second claim of a held folder raises :class:`RunBusyError` (one line naming the owner);
  ``runner.run_many`` and ``optnb reproduce`` try the other runs first and then wait, and say so.
* Claims are re-entrant within a process (a second claim of the same folder shares the lock).
* Whoever takes a folder over removes what a dead owner left: temporary files of interrupted
  atomic writes (``.*.tmp``) and the kernel's temporary folder (:data:`TMP_NAME`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from optnb.paths import ensure_dir

LOCK_NAME = ".owner.lock"
#: ``<pid>:<run folder>``: set by the runner for the kernel (and by ``optnb reproduce`` for a
#: torchrun job) whose run folder it holds
OWNER_ENV = "OPTNB_RUN_OWNER"
#: the run's temporary folder inside the run folder (the kernel's connection file and IPython
#: directory), removed when the run ends and, after a killed run, by the next owner
TMP_NAME = ".kernel-tmp"
#: seconds between two tries of a busy run folder
POLL_S = 2.0

_guard = threading.Lock()
_held: dict[str, RunLock] = {}


@dataclass(frozen=True)
class Owner:
    """What the lock file says about the process that holds a run folder."""

    pid: int
    host: str
    since: str
    command: str

    def describe(self) -> str:
        command = self.command if len(self.command) <= 80 else self.command[:77] + "..."
        return f"pid {self.pid} on {self.host} since {self.since} ({command})"


class RunBusyError(ValueError):
    """The run folder is held by another live process (one line naming it)."""

    def __init__(self, folder: Path, owner: Owner) -> None:
        self.folder, self.owner = folder, owner
        super().__init__(f"run {folder.name} is in use by {owner.describe()}: wait for it to finish "
                         f"or use another run id (lock: {folder / LOCK_NAME})")


class RunLock:
    """A held run-folder lock; release it (or leave the ``with`` block) when the run is over."""

    def __init__(self, folder: Path, key: str, fd: int, created: bool) -> None:
        self.folder, self._key, self._fd, self.created = folder, key, fd, created
        self._count = 1

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self, discard: bool = False) -> None:
        """Give the claim back; the lock goes when the last claim of this process is released.

        ``discard`` also removes the folder when this claim created it and nothing but the lock
        was written there (a run refused after its claim leaves no empty folder)."""
        with _guard:
            if self._fd is None:
                return
            self._count -= 1
            if self._count > 0:
                return
            _held.pop(self._key, None)
            if discard and self.created:
                with contextlib.suppress(OSError):
                    shutil.rmtree(self.folder / TMP_NAME, ignore_errors=True)
                    if {p.name for p in self.folder.iterdir()} <= {LOCK_NAME}:
                        (self.folder / LOCK_NAME).unlink()
                        self.folder.rmdir()
            os.close(self._fd)
            self._fd = None

    def environment(self) -> dict[str, str]:
        """The variable that tells a child process (a kernel, torchrun) its parent holds this run."""
        return {OWNER_ENV: f"{os.getpid()}:{self._key}"}

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _key(folder: Path) -> str:
    return os.path.realpath(folder)


def _me() -> bytes:
    command = " ".join([Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]])
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "since": datetime.now(UTC).isoformat(timespec="seconds"),
                       "command": command[:300]}).encode()


def _read_owner(fd: int) -> Owner:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return Owner(int(info.get("pid", 0)), str(info.get("host", "?")), str(info.get("since", "?")),
                     str(info.get("command", "?")))
    except (OSError, ValueError, AttributeError):
        return Owner(0, "?", "?", "an owner that has not said who it is yet")


def _clean_after_dead_owner(folder: Path) -> None:
    """Remove what an owner killed mid-write left: ``.*.tmp`` files and the kernel's tmp folder."""
    for leftover in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            leftover.unlink()
    shutil.rmtree(folder / TMP_NAME, ignore_errors=True)


def claim(folder: str | os.PathLike) -> RunLock:
    """Take ``folder``'s lock now (creating the folder), or raise :class:`RunBusyError`.

    Re-entrant within a process. A fresh claim removes what a dead owner left behind."""
    folder = Path(folder)
    key = _key(folder)
    with _guard:
        if (mine := _held.get(key)) is not None:
            mine._count += 1
            return mine
        created = not folder.exists()
        ensure_dir(folder, what="run folder")
        path = folder / LOCK_NAME
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _read_owner(fd)
                os.close(fd)
                raise RunBusyError(folder, owner) from None
            try:  # the file we locked must still be the one at `path` (not discarded meanwhile)
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
            ensure_dir(folder, what="run folder")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, _me(), 0)
        except OSError:  # a full disk: the lock holds all the same, only the note is missing
            pass
        _clean_after_dead_owner(folder)
        lock = RunLock(folder, key, fd, created)
        _held[key] = lock
        return lock


def holder(folder: str | os.PathLike) -> Owner | None:
    """The live owner of ``folder`` other than this process, or None (a lookup: creates nothing)."""
    folder = Path(folder)
    with _guard:
        if _key(folder) in _held:
            return None
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_owner(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def held_for_me(folder: str | os.PathLike) -> bool:
    """Whether ``$OPTNB_RUN_OWNER`` says that the process that started this one holds ``folder``
    (and the lock file agrees): then this process writes the run without claiming it."""
    pid, sep, key = os.environ.get(OWNER_ENV, "").partition(":")
    if not sep or not pid.isdigit() or int(pid) == os.getpid() or key != _key(Path(folder)):
        return False
    owner = holder(folder)
    return owner is not None and owner.pid == int(pid)


def claim_waiting(folder: str | os.PathLike, say: Callable[[str], None] | None = None,
                  poll_s: float = POLL_S) -> RunLock:
    """:func:`claim`, waiting (and saying so once) while another process holds ``folder``."""
    said = False
    while True:
        try:
            return claim(folder)
        except RunBusyError as err:
            if not said and say is not None:
                say(f"wait {Path(folder).name}: in use by {err.owner.describe()}")
                said = True
            time.sleep(poll_s)


@contextlib.contextmanager
def kernel_tmp(lock: RunLock) -> Iterator[Path]:
    """A fresh temporary folder inside the held run folder for the run's runner
    (``tempfile.tempdir``: the kernel's connection file goes there) and the kernel's IPython
    directory; removed at the end, and by the next owner if this process is killed first."""
    path = lock.folder / TMP_NAME
    shutil.rmtree(path, ignore_errors=True)
    ensure_dir(path, what="run folder")
    saved = tempfile.tempdir
    tempfile.tempdir = str(path)
    try:
        yield path
    finally:
        tempfile.tempdir = saved
        shutil.rmtree(path, ignore_errors=True)
