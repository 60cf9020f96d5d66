"""Worker processes for parallel runs: a ``ProcessPoolExecutor`` that stops on request and never
outlives its parent.

* ``spawn`` start method: a fresh interpreter per worker. ``fork`` is unsafe once ZMQ (jupyter_client)
  threads exist in the parent. ``spawn`` re-imports the parent's main module in each worker, so a
  script (or ``python -m`` module) that starts runs at import time needs the usual
  ``if __name__ == "__main__":`` guard; notebooks and the ``optnb`` command need nothing.
* Each worker runs in its own session, so a terminal's Ctrl-C reaches only the parent, which then
  stops the workers in order (:meth:`WorkerPool.stop`): SIGINT first (the task sees
  KeyboardInterrupt, so papermill shuts its kernel down), SIGKILL after a grace period. A worker
  that was interrupted exits instead of taking the next task.
* Each worker asks Linux for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), so a parent killed
  with SIGKILL leaves no worker behind; the kernels follow because ipykernel exits when its parent
  (the worker) goes away. The signal is tied to the thread that started the worker: keep the
  thread that submits tasks alive while they run (``run_many`` blocks until they finish).
* With ``log_path``, the workers' stdout and stderr (and so their kernels') go to that file rather
  than interleaving on the terminal.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

START_METHOD = "spawn"
#: seconds an interrupted task gets to shut its kernel down before its worker is killed
STOP_GRACE_S = 15.0
EXIT_INTERRUPTED = 130
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

_busy = False  # in a worker: whether a task is running (SIGINT then interrupts the task)
_started: list[BaseProcess] = []  # in the parent: the workers of every pool, until seen dead


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def die_with_parent() -> None:
    """``preexec_fn`` for a child process (``subprocess``) that must not outlive this one: Linux
    sends it SIGTERM when its parent dies (``PR_SET_PDEATHSIG`` survives ``exec``), e.g. the
    ``torchrun`` job of ``optnb reproduce --torchrun`` after a ``kill -9`` of the reproduction."""
    _die_with_parent(os.getppid())


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    if _busy:
        raise KeyboardInterrupt
    os._exit(EXIT_INTERRUPTED)  # idle: nothing to clean up, and no traceback noise


def _init_worker(parent_pid: int, log_path: str | None) -> None:
    os.setsid()
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, _on_sigint)
    if log_path:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)


def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run one task in a worker; an interrupted task ends the worker (see the module docstring)."""
    global _busy
    _busy = True
    try:
        return fn(*args, **kwargs)
    except KeyboardInterrupt:
        # The executor would hand this worker its next task; the pool is being stopped instead.
        os._exit(EXIT_INTERRUPTED)
    finally:
        _busy = False


class WorkerPool:
    """``workers`` spawned processes; use as a context manager, ``submit`` like an executor.

    ``log_path`` (created or emptied here) receives the workers' stdout and stderr.
    """

    def __init__(self, workers: int, log_path: str | os.PathLike | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.log_path = Path(log_path) if log_path else None
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self.log_path.write_text("")
        self._others = set(multiprocessing.active_children())  # children that are not ours
        self._mine: list[BaseProcess] = []
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context(START_METHOD),
            initializer=_init_worker, initargs=(os.getpid(), str(self.log_path) if self.log_path else None),
        )

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Schedule ``fn(*args, **kwargs)`` in a worker (``fn`` must be importable: it is pickled)."""
        try:
            future = self._executor.submit(_call, fn, args, kwargs)
        except BrokenProcessPool:
            # A worker died (its futures already failed with BrokenProcessPool); carry on with
            # fresh workers rather than failing every run still to come.
            self._executor.shutdown(wait=True)
            self._executor = self._new_executor()
            future = self._executor.submit(_call, fn, args, kwargs)
        # the executor starts workers on demand, inside submit
        for proc in multiprocessing.active_children():
            if proc not in self._others and proc not in self._mine:
                self._mine.append(proc)
                _started.append(proc)
        return future

    def processes(self) -> list[BaseProcess]:
        """This pool's workers that are still alive."""
        return [p for p in self._mine if p.is_alive()]

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Interrupt every worker, kill those still alive after ``grace_s``; queued tasks never start."""
        procs = self.processes()
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + grace_s
        try:
            for proc in procs:
                proc.join(max(0.0, deadline - time.monotonic()))
        finally:  # also when a second Ctrl-C cuts the grace period short
            for proc in procs:
                if proc.is_alive():
                    proc.kill()
                proc.join(5.0)
            self.close()

    def close(self) -> None:
        """Cancel the tasks not yet started and wait for the running ones."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def live_workers() -> list[int]:
    """Pids of the workers started by any pool of this process that are still running."""
    _started[:] = [p for p in _started if p.is_alive()]
    return [p.pid for p in _started]
