"""The papermill runner: execute parameterised notebooks headlessly, one or many, and report.

Every run executes ``notebooks/<stem>.ipynb`` with kernel ``python3`` and ``cwd=notebooks/`` (so
papermill and nbval agree on paths, papermill#418), a per-cell ``execution_timeout``,
``iopub_timeout=30`` (nbclient's 4 s default fails on output bursts, papermill#426) and no stored
widget state. The executed notebook goes to ``<results>/runs/<run_id>/<stem>.ipynb`` next to the
run's sidecar ``result.json``, which the runner marks ``complete`` (or ``failed``).

Failures are reported with the failing cell's source and the exception, including an exception
swallowed by an ``ipywidgets.Output`` context (see ``optnb.experiments.nbengine``). Runs are
validated before anything executes (``optnb.experiments.validation``); ``run_many`` runs several
at once in worker processes (``optnb.experiments.workers``) and skips runs already complete.

Every run has one owner (``optnb.experiments.ownership``): the process that executes it claims
its run folder first and tells the kernel through ``$OPTNB_RUN_OWNER``. A run folder another
process holds (a second ``optnb reproduce`` on the same results, a notebook open in JupyterLab)
is not executed twice: ``run_many`` runs the others first, then waits for it, says so, and skips
it when its owner completed it. The kernel's connection file and IPython directory live in the run folder
(``.kernel-tmp``) and go when the run ends, or when the next owner takes a killed run over.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any

from optnb.experiments import ownership, results
from optnb.experiments.notebooks import find_notebook, notebook_parameters
from optnb.experiments.profiles import effective_profile
from optnb.experiments.runs import Run, RunResult
from optnb.experiments.validation import validate_run, validate_runs
from optnb.experiments.workers import WorkerPool
from optnb.paths import ensure_dir, notebooks_dir, run_dir
from optnb.paths import results_dir as default_results_dir
from optnb.specs import ParameterError

__all__ = [
    "CELL_TIMEOUT", "INJECTED", "IOPUB_TIMEOUT", "KERNEL_NAME", "WORKER_LOG", "Run", "RunResult",
    "default_cell_timeout", "describe_failure", "kernel_environment", "report", "run_many", "run_notebook",
    "validate_run", "validate_runs",
]

KERNEL_NAME = "python3"
IOPUB_TIMEOUT = 30
#: the per-cell timeout (seconds) when ``timeout`` is not given; None means no limit. Training and
#: search cells of the quick/paper profiles legitimately run for hours.
CELL_TIMEOUT = {"smoke": 600, "quick": None, "paper": None}
#: parameters the runner sets itself (when the notebook declares them)
INJECTED = ("LIVE", "RUN_ID", "RESULTS_DIR")
#: where ``run_many``'s worker processes and their kernels print, relative to the results folder
WORKER_LOG = Path(".kernel-env") / "workers.log"
#: seconds between reminders that ``run_many`` still waits for a run another process holds
REMIND_S = 60.0

LogFn = Callable[[str], None]


# ------------------------------------------------------------------------------------------------
# The kernel's surroundings


def kernel_environment(results_root: Path, run_id: str, tmp: Path | None = None) -> dict[str, str | None]:
    """Environment for the kernels: headless, Jupyter/IPython/matplotlib dirs inside ``results_root``.

    IPython's directory (its history database) is per run, so parallel kernels never share it:
    with ``tmp`` (the run's own temporary folder, ``ownership.kernel_tmp``) it lives there and
    goes with it. (``$TMPDIR`` is left alone: Unix sockets under a deep run folder would pass
    the 108-character limit of their paths.)
    ``MPLBACKEND`` is removed (None): an inherited ``MPLBACKEND=Agg`` would stop ipykernel from
    choosing its inline backend, and figures would silently vanish from the executed notebooks.
    """
    home = results_root / ".kernel-env"
    dirs = {
        "JUPYTER_CONFIG_DIR": home / "jupyter-config",
        "JUPYTER_DATA_DIR": home / "jupyter-data",
        "JUPYTER_RUNTIME_DIR": home / "jupyter-runtime",
        "IPYTHONDIR": tmp / "ipython" if tmp is not None else home / "ipython" / run_id,
        "MPLCONFIGDIR": home / "matplotlib",
    }
    for path in dirs.values():
        ensure_dir(path, what="kernel folder")
    env: dict[str, str | None] = {k: str(v) for k, v in dirs.items()}
    env.update({
        "OPTNB_HEADLESS": "1",
        "MPLBACKEND": None,
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG", ":4096:8"),
    })
    return env


@contextlib.contextmanager
def environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, remove) environment variables for the kernels started inside the block."""
    saved = {k: os.environ.get(k) for k in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def default_cell_timeout(parameters: Mapping[str, Any]) -> int | None:
    """Per-cell timeout from the profile the run will use (``profiles.effective_profile``, the
    rule the notebook itself applies: ``$OPTNB_PROFILE`` wins, ``auto`` looks for a GPU, which
    imports torch only then). A profile name that is not valid raises ``ParameterError``."""
    return CELL_TIMEOUT[effective_profile(str(parameters.get("PROFILE", "auto")))[0]]


def _emit(log: LogFn | bool | None, message: str) -> None:
    if log is True:
        print(message, file=sys.stderr, flush=True)
    elif callable(log):
        log(message)


# ------------------------------------------------------------------------------------------------
# Failures


def describe_failure(err: BaseException, output_path: Path | None = None) -> str:
    """The failing cell's index, exception and source, from papermill's error or the output."""
    from papermill.exceptions import PapermillExecutionError  # deferred: see _execute

    if isinstance(err, PapermillExecutionError):
        head = f"cell {err.cell_index} (In [{err.exec_count}]) raised {err.ename}: {err.evalue}"
        source = err.source
    else:  # a timeout, a dead kernel, ...: papermill stopped without an error output
        lines = str(err).strip().splitlines() or [""]
        head = f"{type(err).__name__}: {lines[0]}"
        source = _last_started_cell_source(output_path)
    head = " ".join(head.split())
    return f"{head}\n--- failing cell ---\n{source}" if source else head


def _last_started_cell_source(output_path: Path | None) -> str:
    """Source of the last cell papermill started (the one running when execution stopped)."""
    if output_path is None or not output_path.is_file():
        return ""
    import nbformat  # deferred: see _execute

    try:
        nb = nbformat.read(str(output_path), as_version=4)
    except Exception:  # noqa: BLE001 - a half-written notebook only loses the cell source
        return ""
    started = [c for c in nb.cells
               if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    return started[-1].source if started else ""


# ------------------------------------------------------------------------------------------------
# Running


def run_notebook(
    run: Run,
    results_dir: str | os.PathLike | None = None,
    timeout: float | None = None,
    log: LogFn | bool | None = None,
    skip_complete: bool = False,
    store_widget_state: bool = False,
    validate: bool = True,
    wait: bool = False,
) -> RunResult:
    """Execute one run in this process; never raises for a failure inside the notebook.

    A failure becomes ``RunResult.error`` and a ``failed`` sidecar. ``timeout`` is the per-cell limit
    in seconds (default: by profile, ``CELL_TIMEOUT``). Bad parameters raise ``ParameterError``
    and a results folder that cannot be written ``ResultsDirError`` before anything starts
    (``validate=False`` is for callers that validated already). A run folder another process
    holds raises ``RunBusyError``, or with ``wait`` is waited for (and then skipped if its owner
    completed it and ``skip_complete``). A KeyboardInterrupt propagates after papermill shut the
    kernel down, leaving the sidecar not complete, so the next run executes it again.
    """
    path = validate_run(run)[0] if validate else find_notebook(run.notebook)
    base = ensure_dir(default_results_dir(results_dir))
    if skip_complete and (skipped := _skipped(run, base)) is not None:
        _emit(log, f"skip {run.run_id}: its sidecar says complete")
        return skipped
    cell_timeout = timeout if timeout is not None else default_cell_timeout(run.parameters)
    folder = run_dir(run.run_id, base, create=False)
    lock = ownership.claim_waiting(folder, say=lambda m: _emit(log, m)) if wait else ownership.claim(folder)
    try:
        return _execute(run, path, base, cell_timeout, log, store_widget_state, skip_complete)
    finally:
        lock.release(discard=True)


def _execute(run: Run, path: Path, base: Path, cell_timeout: float | None, log: LogFn | bool | None = None,
             store_widget_state: bool = False, skip_complete: bool = False) -> RunResult:
    """Claim ``run``'s folder, then execute it with papermill and mark its sidecar.

    Module-level so that ``run_many`` can send it to a worker process; ``cell_timeout`` is already
    resolved (None means no limit). A folder another process holds is not touched: the result
    says ``busy`` (who holds it). With ``skip_complete`` a run its previous owner completed is
    skipped (checked under the claim, so two runners never both execute it).
    """
    folder = run_dir(run.run_id, base, create=False)
    try:
        lock = ownership.claim(folder)
    except ownership.RunBusyError as err:
        return RunResult(run, False, None, None, str(err), 0.0, busy=err.owner.describe())
    try:
        if skip_complete and (skipped := _skipped(run, base)) is not None:
            _emit(log, f"skip {run.run_id}: its sidecar says complete")
            return skipped
        return _papermill(run, path, base, lock, cell_timeout, log, store_widget_state)
    finally:
        lock.release(discard=True)  # removes the folder only if this claim made it and it is empty


def _papermill(run: Run, path: Path, base: Path, lock: ownership.RunLock, cell_timeout: float | None,
               log: LogFn | bool | None, store_widget_state: bool) -> RunResult:
    """The papermill execution of a claimed run; marks its sidecar ``complete`` or ``failed``."""
    # deferred: papermill and nbformat take seconds to import, which the optnb CLI should not pay
    # at start-up (it imports this module); nbengine imports papermill
    import papermill

    from optnb.experiments.nbengine import engine_name

    folder = lock.folder
    output_path = folder / f"{path.stem}.ipynb"
    declared = notebook_parameters(path)
    parameters = dict(run.parameters)
    if "LIVE" in declared:
        parameters.setdefault("LIVE", "display")
    if "RUN_ID" in declared:
        parameters["RUN_ID"] = run.run_id
    if "RESULTS_DIR" in declared:
        parameters["RESULTS_DIR"] = str(base)

    _emit(log, f"run  {run.run_id}: {path.name} -> {output_path}")
    start = time.monotonic()
    error: str | None = None
    with ownership.kernel_tmp(lock) as tmp, \
            environment({**kernel_environment(base, run.run_id, tmp), **lock.environment()}):
        try:
            papermill.execute_notebook(
                str(path), str(output_path), parameters=parameters, kernel_name=KERNEL_NAME,
                cwd=str(notebooks_dir()), engine_name=engine_name(), progress_bar=False,
                execution_timeout=cell_timeout, iopub_timeout=IOPUB_TIMEOUT,
                store_widget_state=True, keep_widgets=store_widget_state,
            )
        except Exception as err:  # noqa: BLE001 - every failure becomes a reported RunResult
            error = describe_failure(err, output_path)
    duration = time.monotonic() - start
    out = output_path if output_path.is_file() else None
    try:
        if error is None:
            results.mark_complete(folder, out, round(duration, 3))
        else:
            results.mark_failed(folder, error, out)
    except OSError as err:  # a full disk: the sidecar is not complete, so the run is done again
        error = (f"{error}\n" if error else "") + (
            f"the sidecar could not be written ({results.error_line(err)}); the run does not count "
            "as complete")
    result = RunResult(run, error is None, out, folder / results.SIDECAR, error, duration)
    _emit(log, result.summary())
    return result


def _skipped(run: Run, base: Path) -> RunResult | None:
    """A ``skipped`` result when ``run``'s sidecar under ``base`` says complete, else None.

    A lookup only: a run that is then cancelled before it starts must leave no folder behind.
    """
    folder = run_dir(run.run_id, base, create=False)
    if not results.is_complete(folder):
        return None
    outputs = sorted(folder.glob("*.ipynb"))
    return RunResult(run, True, outputs[0] if outputs else None, folder / results.SIDECAR,
                     None, 0.0, skipped=True)


def _worker_failure(run: Run, future: Future) -> RunResult | None:
    """A failed ``RunResult`` when ``future`` raised instead of returning one (else None)."""
    err = future.exception()
    if err is None:
        return None
    remote = str(err.__cause__ or "").strip().splitlines()[-15:]  # the worker's traceback
    return RunResult(run, False, None, None,
                     "\n".join([f"runner worker failed: {type(err).__name__}: {err}", *remote]), 0.0)


class _Queue:
    """The runs of one ``run_many`` still to do: queued, waiting for a folder another process
    holds (tried again every ``poll_s`` seconds, other runs first), or running in the pool."""

    def __init__(self, runs: list[Run], todo: Iterable[int], poll_s: float, log: LogFn | bool | None) -> None:
        self.runs, self.poll_s, self.log = runs, poll_s, log
        self.queued = deque(todo)
        self.waiting: dict[int, float] = {}  # run index -> when to try it again
        self.reminded: dict[int, float] = {}  # run index -> when the log last said it waits
        self.running: dict[Future, int] = {}
        self.done: dict[int, RunResult] = {}

    def __bool__(self) -> bool:
        return bool(self.queued or self.running or self.waiting)

    def requeue_due(self) -> None:
        now = time.monotonic()
        for i in sorted(i for i, due in self.waiting.items() if due <= now):
            del self.waiting[i]
            self.queued.append(i)

    def settle(self, i: int, result: RunResult) -> None:
        """A finished run is done; a busy one (its folder held elsewhere) waits."""
        if not result.busy:
            self.done[i] = result
            _emit(self.log, result.summary())
            return
        now = time.monotonic()
        if now - self.reminded.get(i, -REMIND_S) >= REMIND_S:
            _emit(self.log, f"wait {self.runs[i].run_id}: in use by {result.busy}; the other runs go first")
            self.reminded[i] = now
        self.waiting[i] = now + self.poll_s

    def next_retry_s(self) -> float | None:
        return max(0.0, min(self.waiting.values()) - time.monotonic()) if self.waiting else None


def run_many(
    runs: Iterable[Run],
    jobs: int = 1,
    results_dir: str | os.PathLike | None = None,
    skip_complete: bool = True,
    timeout: float | None = None,
    log: LogFn | bool | None = None,
    poll_s: float = ownership.POLL_S,
) -> list[RunResult]:
    """Validate every run, then execute them, ``jobs`` at a time; results in the input order.

    With ``jobs > 1`` the runs execute in ``jobs`` worker processes, each run with its own kernel;
    what the workers and kernels print goes to ``<results>/.kernel-env/workers.log``, not to the terminal.
    A run whose sidecar says complete is skipped without starting anything. A run whose folder
    another process holds waits (the others go first; ``log`` says so) and is tried again every
    ``poll_s`` seconds, then skipped if its owner completed it: every run executes once. A failed
    run does not stop the others; check ``all(r.ok for r in results)``. On Ctrl-C the runs not
    started yet never start, the running ones are interrupted (their kernels shut down, their
    sidecars stay not complete) and KeyboardInterrupt propagates.
    """
    runs = list(runs)
    validate_runs(runs)
    if jobs < 1:
        raise ParameterError(f"jobs must be >= 1, got {jobs}")
    base = ensure_dir(default_results_dir(results_dir))
    paths = [find_notebook(r.notebook) for r in runs]
    skipped = {i: s for i, run in enumerate(runs)
               if skip_complete and (s := _skipped(run, base)) is not None}  # they start no process
    for result in skipped.values():
        _emit(log, result.summary())
    queue = _Queue(runs, (i for i in range(len(runs)) if i not in skipped), poll_s, log)
    queue.done.update(skipped)
    # resolved before anything runs, so that a bad $OPTNB_PROFILE stops nothing half-way
    timeouts = {i: timeout if timeout is not None else default_cell_timeout(runs[i].parameters)
                for i in queue.queued}
    parallel = jobs > 1 and len(queue.queued) > 1
    pool = WorkerPool(min(jobs, len(queue.queued)), log_path=base / WORKER_LOG) if parallel else None
    slots = jobs if pool is not None else 1
    try:
        while queue:
            queue.requeue_due()
            # at most `jobs` runs handed to the pool, so a cancelled run was never handed over
            while queue.queued and len(queue.running) < slots:
                i = queue.queued.popleft()
                folder = run_dir(runs[i].run_id, base, create=False)
                if (owner := ownership.holder(folder)) is not None:  # no worker for a busy run
                    queue.settle(i, RunResult(runs[i], False, None, None, None, 0.0, busy=owner.describe()))
                elif pool is None:
                    queue.settle(i, _execute(runs[i], paths[i], base, timeouts[i], log, False, skip_complete))
                else:
                    _emit(log, f"run  {runs[i].run_id}: {paths[i].name}")
                    future = pool.submit(_execute, runs[i], paths[i], base, timeouts[i], None, False, skip_complete)
                    queue.running[future] = i
            if queue.running:
                finished, _ = wait(queue.running, timeout=queue.next_retry_s(), return_when=FIRST_COMPLETED)
                for future in finished:
                    i = queue.running.pop(future)
                    queue.settle(i, _worker_failure(runs[i], future) or future.result())
            elif queue.waiting and not queue.queued:
                time.sleep(queue.next_retry_s() or 0.0)
    except KeyboardInterrupt:
        if pool is not None:
            _emit(log, f"interrupted: cancelling queued runs and stopping running ones (log: {base / WORKER_LOG})")
            pool.stop()
        raise
    finally:
        if pool is not None:
            pool.close()
    return [queue.done[i] for i in range(len(runs))]


def report(run_results: Iterable[RunResult]) -> str:
    """A short text report: one line per run, then every failure with its cell and exception."""
    run_results = list(run_results)
    failed = [r for r in run_results if not r.ok]
    lines = [r.summary() for r in run_results]
    lines.append(f"{len(run_results) - len(failed)} ok, {len(failed)} failed")
    for r in failed:
        lines += ["", f"== {r.run.run_id} failed ({r.output_path or 'no output notebook'}) ==",
                  r.error or "(no error text)"]
    return "\n".join(lines)
