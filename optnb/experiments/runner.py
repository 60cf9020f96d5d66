"""The papermill runner: execute parameterised notebooks headlessly, one or many, and report.

Every run executes ``notebooks/<stem>.ipynb`` with kernel ``python3`` and ``cwd=notebooks/`` (so
papermill and nbval agree on paths, papermill#418), a per-cell ``execution_timeout``,
``iopub_timeout=30`` (nbclient's 4 s default fails on output bursts, papermill#426) and no stored
widget state. The executed notebook goes to ``<results>/runs/<run_id>/<stem>.ipynb`` next to the
run's sidecar ``result.json``, which the runner marks ``complete`` (or ``failed``).

Failures are reported with the failing cell's source and the exception. That includes an
exception swallowed by an ``ipywidgets.Output`` context (ipywidgets#3208): ``Output.__exit__``
prints the traceback into the widget and returns True, so papermill alone would call the run a
success. The runner's engine notices the ``error`` message routed into the widget, copies it into
the cell's own outputs and stops the run there.

Parameters are validated before anything runs: names against ``papermill.inspect_notebook``, types
against the notebook's literal defaults, and values against ``optnb.experiments.profiles``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optnb.experiments.notebooks import NAME_PATTERN, find_notebook, notebook_parameters
from optnb.experiments.profiles import COMMON, ParameterError, notebook_spec

KERNEL_NAME = "python3"
IOPUB_TIMEOUT = 30
#: the per-cell timeout (seconds) when ``timeout`` is not given; None means no limit. Training and
#: search cells of the quick/paper profiles legitimately run for hours.
CELL_TIMEOUT = {"smoke": 600, "quick": None, "paper": None}
#: parameters the runner sets itself (when the notebook declares them)
INJECTED = ("LIVE", "RUN_ID", "RESULTS_DIR")

LogFn = Callable[[str], None]


@dataclass(frozen=True)
class Run:
    """One notebook execution: ``notebook`` is a stem (``"06_train_cifar"``), ``"06"`` or a path."""

    notebook: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    run_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", dict(self.parameters))
        if not self.run_id:
            object.__setattr__(self, "run_id", make_run_id(self.notebook, self.parameters))


@dataclass(frozen=True)
class RunResult:
    run: Run
    ok: bool
    output_path: Path | None
    sidecar_path: Path | None
    error: str | None
    duration_s: float
    skipped: bool = False

    def summary(self) -> str:
        """One line: ``ok``/``skipped``/``FAILED``, the run id, the time and the exception."""
        status = "skipped (complete)" if self.skipped else "ok" if self.ok else "FAILED"
        line = f"{status:<18} {self.run.run_id} ({self.duration_s:.1f} s)"
        if self.error:
            line += " " + self.error.splitlines()[0]
        return line


def make_run_id(notebook: str, parameters: Mapping[str, Any]) -> str:
    """``<stem>-<8 hex>`` from the sorted parameters without LIVE/RESULTS_DIR/RUN_ID.

    The same function as ``optnb.experiments.results.run_id_for``, so that the runner, the plans
    and ``resolve`` agree on run folders.
    """
    from optnb.experiments.results import run_id_for

    return run_id_for(str(notebook).removesuffix(".ipynb"), dict(parameters))


# ------------------------------------------------------------------------------------------------
# Validation


_JSON_TYPES = (str, int, float, bool, type(None), list, tuple, dict)


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _check_type(stem: str, name: str, value: Any, default: Any) -> None:
    def fail() -> ParameterError:
        return ParameterError(
            f"{stem}: parameter {name} expects {_type_name(default)} (the notebook's default is "
            f"{default!r}), got {_type_name(value)} {value!r}"
        )

    if not isinstance(value, _JSON_TYPES) or (isinstance(value, float) and not math.isfinite(value)):
        raise ParameterError(
            f"{stem}: parameter {name}={value!r} cannot be injected; use str, int, finite float, "
            "bool, None, list or dict"
        )
    if default is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise fail()


def _has_parameters_cell(path: Path) -> bool:
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    return any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells)


def validate_run(run: Run) -> tuple[Path, dict[str, Any]]:
    """Check ``run`` without executing it; returns the notebook path and its declared defaults.

    Raises ``UnknownNotebookError`` (a KeyError) or ``ParameterError`` (a ValueError) with a
    one-line message naming the problem and the valid choices.
    """
    path = find_notebook(run.notebook)
    stem = path.stem
    declared = notebook_parameters(path)
    if not declared and not _has_parameters_cell(path):
        raise ParameterError(
            f"{stem} has no cell tagged 'parameters': papermill would inject at the top and the "
            "notebook's own values would win; tag its parameters cell"
        )
    for name, value in run.parameters.items():
        if name not in declared:
            raise ParameterError(
                f"{stem}: unknown parameter {name}; its parameters cell defines: "
                f"{', '.join(declared) or '(nothing)'}"
            )
        _check_type(stem, name, value, declared[name].default)
    spec: dict[str, Any] = {}
    if NAME_PATTERN.match(path.name):
        try:
            spec = notebook_spec(stem)
        except (ImportError, AttributeError) as err:
            raise ParameterError(f"{stem}: cannot load its parameter spec ({err})") from None
    checks = {**COMMON, **spec}
    for name, value in run.parameters.items():
        if name in checks:
            checks[name].validate(name, value)
    return path, {name: p.default for name, p in declared.items()}


def validate_runs(runs: Iterable[Run]) -> None:
    """Validate every run (and reject duplicate run ids) before anything executes."""
    seen: dict[str, Run] = {}
    for run in runs:
        validate_run(run)
        if run.run_id in seen and seen[run.run_id] != run:
            raise ParameterError(f"two different runs share the run id {run.run_id!r}")
        seen[run.run_id] = run


# ------------------------------------------------------------------------------------------------
# The papermill engine that notices exceptions swallowed by an Output widget


def _engine_name() -> str:
    """Register (once per process) and return the name of the runner's papermill engine."""
    from nbclient.exceptions import CellExecutionError
    from nbformat.v4 import output_from_msg
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.exceptions import PapermillException
    from papermill.log import logger
    from papermill.utils import merge_kwargs, remove_args
    from traitlets import Bool

    name = "optnb"
    try:
        papermill_engines.get_engine(name)
        return name
    except PapermillException:
        pass  # first use in this process: register below

    class GuardedClient(PapermillNotebookClient):
        """Treats an ``error`` message routed into an Output widget as the cell's failure.

        Widget state is always tracked (nbclient 0.11's Output-widget emulation raises KeyError
        with ``store_widget_state=False``) but written to the notebook only when ``keep_widgets``.
        """

        keep_widgets = Bool(False).tag(config=True)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.swallowed: dict[int, dict[str, Any]] = {}

        def output(self, outs, msg, display_id, cell_index):  # noqa: ANN001, ANN201
            parent = msg["parent_header"].get("msg_id")
            if msg["msg_type"] == "error" and self.output_hook_stack[parent]:
                self.swallowed.setdefault(cell_index, msg["content"])
                outs.append(output_from_msg(msg))  # make it visible in the cell, not only the widget
            return super().output(outs, msg, display_id, cell_index)

        async def _check_raise_for_error(self, cell, cell_index, exec_reply):  # noqa: ANN001, ANN202
            await super()._check_raise_for_error(cell, cell_index, exec_reply)
            content = self.swallowed.get(cell_index)
            allowed = self.allow_errors or "raises-exception" in cell.metadata.get("tags", [])
            if content is not None and not allowed:
                raise CellExecutionError.from_cell_and_msg(cell, content)

        def set_widgets_metadata(self) -> None:
            if self.keep_widgets:
                super().set_widgets_metadata()

    class GuardedEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                     stderr_file=None, start_timeout=60, execution_timeout=None,
                                     **kwargs):  # noqa: ANN001, ANN206
            kwargs = remove_args(["input_path"], **kwargs)
            safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
            final_kwargs = merge_kwargs(
                safe_kwargs,
                timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
                startup_timeout=start_timeout,
                kernel_name=kernel_name,
                log=logger,
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
            )
            return GuardedClient(nb_man, **final_kwargs).execute()

    papermill_engines.register(name, GuardedEngine)
    return name


# ------------------------------------------------------------------------------------------------
# Running


def kernel_environment(results: Path, run_id: str) -> dict[str, str | None]:
    """Environment for the kernels: headless, Jupyter/IPython/matplotlib dirs inside ``results``.

    IPython's directory (its history database) is per run, so parallel kernels never share it.
    ``MPLBACKEND`` is removed (None): an inherited ``MPLBACKEND=Agg`` would stop ipykernel from
    choosing its inline backend, and figures would silently vanish from the executed notebooks.
    """
    home = results / ".kernel-env"
    dirs = {
        "JUPYTER_CONFIG_DIR": home / "jupyter-config",
        "JUPYTER_DATA_DIR": home / "jupyter-data",
        "JUPYTER_RUNTIME_DIR": home / "jupyter-runtime",
        "IPYTHONDIR": home / "ipython" / run_id,
        "MPLCONFIGDIR": home / "matplotlib",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    env: dict[str, str | None] = {k: str(v) for k, v in dirs.items()}
    env.update({
        "OPTNB_HEADLESS": "1",
        "MPLBACKEND": None,
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG", ":4096:8"),
    })
    return env


@contextlib.contextmanager
def _environ(values: Mapping[str, str | None]) -> Iterator[None]:
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
    """Per-cell timeout from the run's profile (``$OPTNB_PROFILE`` wins, as in ``resolve``).

    ``auto`` counts as quick on a machine with an NVIDIA device node and as smoke otherwise; this
    avoids importing torch in the runner just to choose a timeout.
    """
    profile = os.environ.get("OPTNB_PROFILE") or parameters.get("PROFILE", "auto")
    if profile == "auto":
        profile = "quick" if Path("/dev/nvidiactl").exists() else "smoke"
    return CELL_TIMEOUT.get(str(profile), CELL_TIMEOUT["smoke"])


def _emit(log: LogFn | bool | None, message: str) -> None:
    if log is True:
        print(message, file=sys.stderr, flush=True)
    elif callable(log):
        log(message)


def describe_failure(err: BaseException, output_path: Path | None = None) -> str:
    """The failing cell's index, exception and source, from papermill's error or the output."""
    from papermill.exceptions import PapermillExecutionError

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
    import nbformat

    try:
        nb = nbformat.read(str(output_path), as_version=4)
    except Exception:  # noqa: BLE001 - a half-written notebook only loses the cell source
        return ""
    started = [c for c in nb.cells
               if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    return started[-1].source if started else ""


def run_notebook(
    run: Run,
    results_dir: str | os.PathLike | None = None,
    timeout: float | None = None,
    log: LogFn | bool | None = None,
    skip_complete: bool = False,
    store_widget_state: bool = False,
    validate: bool = True,
) -> RunResult:
    """Execute one run; never raises for a failure inside the notebook (see ``RunResult.error``).

    ``timeout`` is the per-cell limit in seconds (default: by profile, ``CELL_TIMEOUT``). Bad
    parameters raise ``ParameterError`` before anything starts (``validate=False`` is for callers
    that validated already, such as ``run_many``'s child processes).
    """
    import papermill

    from optnb.experiments import results
    from optnb.paths import notebooks_dir, run_dir
    from optnb.paths import results_dir as default_results_dir

    path = validate_run(run)[0] if validate else find_notebook(run.notebook)
    base = default_results_dir(results_dir)
    if skip_complete and (skipped := _skipped(run, base)) is not None:
        _emit(log, f"skip {run.run_id}: its sidecar says complete")
        return skipped

    folder = run_dir(run.run_id, base)
    output_path = folder / f"{path.stem}.ipynb"
    declared = notebook_parameters(path)
    parameters = dict(run.parameters)
    if "LIVE" in declared:
        parameters.setdefault("LIVE", "display")
    if "RUN_ID" in declared:
        parameters["RUN_ID"] = run.run_id
    if "RESULTS_DIR" in declared:
        parameters["RESULTS_DIR"] = str(base)
    cell_timeout = timeout if timeout is not None else default_cell_timeout(run.parameters)

    _emit(log, f"run  {run.run_id}: {path.name} -> {output_path}")
    start = time.monotonic()
    error: str | None = None
    with _environ(kernel_environment(base, run.run_id)):
        try:
            papermill.execute_notebook(
                str(path), str(output_path), parameters=parameters, kernel_name=KERNEL_NAME,
                cwd=str(notebooks_dir()), engine_name=_engine_name(), progress_bar=False,
                execution_timeout=cell_timeout, iopub_timeout=IOPUB_TIMEOUT,
                store_widget_state=True, keep_widgets=store_widget_state,
            )
        except Exception as err:  # noqa: BLE001 - every failure becomes a reported RunResult
            error = describe_failure(err, output_path)
    duration = time.monotonic() - start
    sidecar_path = folder / results.SIDECAR
    out = output_path if output_path.is_file() else None
    if error is None:
        results.mark_complete(folder, out, round(duration, 3))
    else:
        results.mark_failed(folder, error, out)
    result = RunResult(run, error is None, out, sidecar_path, error, duration)
    _emit(log, result.summary())
    return result


def _skipped(run: Run, base: Path) -> RunResult | None:
    """A ``skipped`` result when ``run``'s sidecar under ``base`` says complete, else None."""
    from optnb.experiments import results

    sidecar_dir = base / "runs" / run.run_id
    if not results.is_complete(sidecar_dir):
        return None
    outputs = sorted(sidecar_dir.glob("*.ipynb"))
    return RunResult(run, True, outputs[0] if outputs else None, sidecar_dir / results.SIDECAR,
                     None, 0.0, skipped=True)


def _result_to_json(result: RunResult) -> dict[str, Any]:
    return {
        "run": {"notebook": result.run.notebook, "parameters": dict(result.run.parameters),
                "run_id": result.run.run_id},
        "ok": result.ok, "error": result.error, "duration_s": result.duration_s,
        "skipped": result.skipped,
        "output_path": str(result.output_path) if result.output_path else None,
        "sidecar_path": str(result.sidecar_path) if result.sidecar_path else None,
    }


def _result_from_json(data: Mapping[str, Any]) -> RunResult:
    def as_path(value: str | None) -> Path | None:
        return Path(value) if value else None

    return RunResult(Run(**data["run"]), bool(data["ok"]), as_path(data["output_path"]),
                     as_path(data["sidecar_path"]), data["error"], float(data["duration_s"]),
                     bool(data.get("skipped", False)))


def _run_in_child(run: Run, results_dir: str | None, timeout: float | None,
                  skip_complete: bool) -> RunResult:
    """One run in its own Python process (``python -m optnb.experiments.runner``).

    A child process rather than a multiprocessing pool: ``spawn`` re-imports the caller's
    ``__main__`` (which breaks scripts and notebooks), and ``fork`` after ZMQ threads is unsafe.
    """
    request = {"run": _result_to_json(RunResult(run, False, None, None, None, 0.0))["run"],
               "results_dir": results_dir, "timeout": timeout, "skip_complete": skip_complete}
    with tempfile.TemporaryDirectory(prefix="optnb-run-") as tmp:
        reply = Path(tmp) / "result.json"
        # Own session: a terminal's Ctrl-C reaches only the parent, which stops the children
        # in order (``_stop_children``) instead of leaving half-written runs behind.
        proc = subprocess.Popen(
            [sys.executable, "-m", "optnb.experiments.runner", str(reply)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )
        with _children_lock:
            _children.add(proc)
        try:
            _, stderr = proc.communicate(json.dumps(request))
        finally:
            with _children_lock:
                _children.discard(proc)
        if proc.returncode == 0 and reply.is_file():
            return _result_from_json(json.loads(reply.read_text()))
    tail = "\n".join(stderr.strip().splitlines()[-15:])
    return RunResult(run, False, None, None,
                     f"runner process exited with code {proc.returncode}\n{tail}", 0.0)


_children: set[subprocess.Popen] = set()
_children_lock = threading.Lock()


def _stop_children(grace_s: float = 15.0) -> None:
    """SIGINT every running child's process group (papermill then shuts its kernel down), and
    SIGKILL what is still alive after ``grace_s``. Their sidecars stay ``running``: not complete,
    so the next ``run_many`` executes them again."""
    with _children_lock:
        procs = list(_children)
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)


def _child_main(reply_path: str) -> int:
    request = json.loads(sys.stdin.read())
    try:
        result = run_notebook(Run(**request["run"]), request["results_dir"],
                              timeout=request["timeout"], skip_complete=request["skip_complete"],
                              validate=False)  # the parent validated every run before starting
    except Exception as err:  # noqa: BLE001 - reported to the parent, never lost
        result = RunResult(Run(**request["run"]), False, None, None,
                           f"{type(err).__name__}: {err}\n" + traceback.format_exc(limit=3), 0.0)
    Path(reply_path).write_text(json.dumps(_result_to_json(result)))
    return 0


def run_many(
    runs: Iterable[Run],
    jobs: int = 1,
    results_dir: str | os.PathLike | None = None,
    skip_complete: bool = True,
    timeout: float | None = None,
    log: LogFn | bool | None = None,
) -> list[RunResult]:
    """Validate every run, then execute them, ``jobs`` at a time; results in the input order.

    With ``jobs > 1`` each run is its own Python process with its own kernel. A failed run does
    not stop the others; check ``all(r.ok for r in results)``.
    """
    runs = list(runs)
    validate_runs(runs)
    if jobs < 1:
        raise ParameterError(f"jobs must be >= 1, got {jobs}")
    from optnb.paths import results_dir as default_results_dir

    base = str(results_dir) if results_dir else None
    done: dict[int, RunResult] = {}
    if skip_complete:  # decided here, so complete runs start no process at all
        for i, r in enumerate(runs):
            if (skipped := _skipped(r, default_results_dir(base))) is not None:
                done[i] = skipped
                _emit(log, skipped.summary())
    todo = [i for i in range(len(runs)) if i not in done]
    if jobs == 1 or len(todo) <= 1:
        for i in todo:
            done[i] = run_notebook(runs[i], base, timeout=timeout, log=log, validate=False)
        return [done[i] for i in range(len(runs))]
    pool = ThreadPoolExecutor(max_workers=min(jobs, len(todo)))
    try:
        futures = {pool.submit(_run_in_child, runs[i], base, timeout, False): i for i in todo}
        for future in as_completed(futures):
            result = future.result()
            done[futures[future]] = result
            _emit(log, result.summary())
    except KeyboardInterrupt:
        _emit(log, "interrupted: cancelling queued runs and stopping running ones")
        pool.shutdown(wait=False, cancel_futures=True)
        _stop_children()
        raise
    finally:
        pool.shutdown(wait=True)
    return [done[i] for i in range(len(runs))]


def report(results: Iterable[RunResult]) -> str:
    """A short text report: one line per run, then every failure with its cell and exception."""
    results = list(results)
    failed = [r for r in results if not r.ok]
    lines = [r.summary() for r in results]
    lines.append(f"{len(results) - len(failed)} ok, {len(failed)} failed")
    for r in failed:
        lines += ["", f"== {r.run.run_id} failed ({r.output_path or 'no output notebook'}) ==",
                  r.error or "(no error text)"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
