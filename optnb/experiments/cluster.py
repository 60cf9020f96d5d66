"""``optnb reproduce --executor slurm``: the plan's runs as cluster jobs, through ``submitit``.

One job per run, and a job runs the same function a local reproduction runs: a notebook run
through ``runner.run_notebook(skip_complete=True, wait=True)``, a Table 1/2 row under
``--torchrun N`` through ``reproduce.run_torchrun`` (``torchrun`` inside the job). So the
skip-complete rule, the run-folder lock (``optnb.experiments.ownership``), the resume of a
checkpoint and the sidecar are those of a local run. This process (the driver) goes stage by stage
(``reproduce.execute``): it submits a stage's runs together, polls their jobs, then goes on; a
failed run blocks the runs that need it, as locally.

* Resources (:func:`job_resources`): a notebook run asks for ``--slurm-gpus-per-node`` GPUs
  (default 1); a torchrun row asks for N GPUs and one task (torchrun starts the N processes);
  CPU only under submitit's local executor.
* A run whose sidecar says complete gets no job. A run folder another process holds is waited for
  (and said so) before its job is submitted.
* A job that times out or is preempted with Slurm's signal (USR2, which submitit asks for) is
  requeued by submitit (:class:`RunJob` is checkpointable) and starts the run again, which resumes
  its per-epoch checkpoint.
* A job that raised, or ended without a result (killed: out of memory, out of time, cancelled),
  becomes a failed ``RunResult`` with the tail of its stderr log, in the report as any failure.
* Ctrl-C cancels the jobs in flight and names the runs left; the same command continues.
* Job logs go to ``<results>/slurm/<job id>/`` (submitit's folder: the pickled job, its stdout
  and stderr, its result).

``--executor submitit-local`` (for the tests, not in the help) runs the same jobs through
submitit's ``LocalExecutor``: processes on this machine, no GPU.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from optnb.experiments import ownership, plans, runner
from optnb.experiments.plans import Plan, PlannedRun
from optnb.experiments.runs import RunResult
from optnb.paths import run_dir

#: ``--executor`` values; ``local`` is ``runner.run_many`` in this process, the others submitit
EXECUTORS = ("local", "slurm", "submitit-local")
#: submitit's name of each cluster executor
SUBMITIT_CLUSTER = {"slurm": "slurm", "submitit-local": "local"}
INSTALL_HINT = "pip install 'optnb[cluster]'"
#: ``--slurm-time`` default, minutes: a day; a job that runs out of time is requeued and resumes
DEFAULT_TIME_MIN = 24 * 60
#: the longest ``--slurm-time``, minutes (30 days)
MAX_TIME_MIN = 30 * 24 * 60
#: ``--slurm-cpus-per-gpu`` default: the training loader's 4 worker processes, the main one, one spare
DEFAULT_CPUS_PER_GPU = 6
#: lines of a failed job's stderr log kept in its error
LOG_TAIL_LINES = 20
#: seconds between two looks at the jobs in flight (Slurm's state comes from ``sacct``, which
#: submitit asks at most once a minute; a finished job's result file is seen at once)
POLL_S = {"slurm": 10.0, "submitit-local": 0.5}
#: seconds a finished job's result file may take to appear on a shared file system
RESULT_GRACE_S = {"slurm": 30.0, "submitit-local": 0.0}

LogFn = Callable[[str], None]


def say(message: str) -> None:
    print(message, flush=True)


class ClusterError(ValueError):
    """A cluster executor cannot be used here (one line naming what is missing)."""


@dataclass(frozen=True)
class ClusterOptions:
    """What ``--executor`` and the ``--slurm-*`` options ask for."""

    executor: str = "slurm"
    partition: str = ""
    account: str = ""
    time_min: int = DEFAULT_TIME_MIN
    gpus: int = 1
    cpus_per_gpu: int = DEFAULT_CPUS_PER_GPU
    folder: Path | None = None
    jobs: int = 0

    def log_folder(self, results_dir: Path) -> Path:
        return self.folder if self.folder is not None else results_dir / "slurm"


@dataclass(frozen=True)
class JobResources:
    """What one run's job asks the cluster for (one node, one task)."""

    gpus: int
    cpus: int
    time_min: int
    torchrun: int | None = None  # processes torchrun starts inside the job; None: a notebook run
    partition: str = ""
    account: str = ""

    def parameters(self, name: str) -> dict[str, Any]:
        """submitit ``AutoExecutor.update_parameters`` arguments (``slurm_*`` only on Slurm)."""
        params: dict[str, Any] = {"name": name, "timeout_min": self.time_min, "nodes": 1,
                                  "tasks_per_node": 1, "gpus_per_node": self.gpus,
                                  "cpus_per_task": self.cpus}
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.account:
            params["slurm_account"] = self.account
        return params

    def describe(self) -> str:
        text = f"gpus={self.gpus} cpus={self.cpus} time={self.time_min}min"
        text += f" torchrun={self.torchrun}" if self.torchrun else " notebook"
        text += f" partition={self.partition}" if self.partition else ""
        return text + (f" account={self.account}" if self.account else "")


def job_resources(run: PlannedRun, options: ClusterOptions, torchrun: int | None = None) -> JobResources:
    """The job of ``run``: a Table 1/2 row under ``--torchrun N`` asks for N GPUs (``N`` gloo
    processes on CPU cores when ``options.gpus`` is 0), any other run for ``options.gpus``;
    ``options.cpus_per_gpu`` cores per GPU or process. Under submitit's local executor: no GPU."""
    nproc = torchrun if torchrun and run.notebook in plans.TORCHRUN_NOTEBOOKS else None
    if options.executor == "submitit-local":
        gpus = 0
    elif nproc:
        gpus = nproc if options.gpus else 0
    else:
        gpus = options.gpus
    cpus = options.cpus_per_gpu * max(1, gpus, nproc or 1)
    return JobResources(gpus, cpus, options.time_min, nproc, options.partition, options.account)


def describe_jobs(plan: Plan, options: ClusterOptions, results_dir: Path, torchrun: int | None = None) -> str:
    """The dry run's extra lines: per run, the job it would submit."""
    lines = [f"jobs ({options.executor}, one per run; logs in {options.log_folder(results_dir)}/<job id>/):"]
    lines += [f"  {r.run_id:<46} {job_resources(r, options, torchrun).describe()}" for r in plan.runs]
    if not submitit_installed():
        lines.append(f"note: submitit is not installed; before submitting: {INSTALL_HINT}")
    return "\n".join(lines)


def submitit_installed() -> bool:
    try:
        _submitit()
    except ClusterError:
        return False
    return True


def _submitit() -> ModuleType:
    try:
        import submitit  # deferred: an optional dependency, only for cluster runs
    except ImportError:
        raise ClusterError(f"--executor slurm needs submitit, which is not installed: {INSTALL_HINT}") from None
    return submitit


# ----------------------------------------------------------------------------------------------
# In the job


@dataclass(frozen=True)
class RunJob:
    """The callable a job executes (pickled by submitit): one run, as a local reproduction runs it.

    ``checkpoint`` makes submitit requeue the job when it times out or is preempted; the run then
    starts again and resumes its checkpoint."""

    run: PlannedRun
    results_dir: str
    timeout: float | None = None
    torchrun: int | None = None

    def __call__(self) -> RunResult:
        if self.torchrun:
            from optnb.experiments import reproduce  # deferred: torch and nbconvert, seconds to import

            return reproduce.run_torchrun(self.run, self.torchrun, Path(self.results_dir))
        from optnb.experiments.runner import run_notebook

        return run_notebook(self.run.to_run(), self.results_dir, timeout=self.timeout, log=say,
                            skip_complete=True, wait=True)

    def checkpoint(self) -> Any:
        return _submitit().helpers.DelayedSubmission(self)


# ----------------------------------------------------------------------------------------------
# In the driver


def _tail(text: str | None, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join((text or "").rstrip().splitlines()[-lines:])


def _raised(err: BaseException) -> str:
    """The exception line of a submitit ``FailedJobError`` (its text holds the job's traceback)."""
    text = str(err).splitlines()
    marks = [i for i, line in enumerate(text) if set(line.strip()) == {"-"}]
    trace = text[marks[0] + 1:marks[1]] if len(marks) >= 2 else text
    found = [line.strip() for line in trace if line.strip()]
    return found[-1] if found else type(err).__name__


def job_outcome(job: Any, run: PlannedRun, grace_s: float = 0.0) -> RunResult:
    """The ``RunResult`` of a finished job: the one the run returned, or a failed one naming the
    job, what happened (raised: its exception; no result: killed) and the tail of its stderr."""
    deadline = time.monotonic() + grace_s
    while not job.paths.result_pickle.exists() and time.monotonic() < deadline:
        time.sleep(1.0)
    if job.paths.result_pickle.exists():
        try:
            result = job.result()
        except Exception as err:  # noqa: BLE001 - the job's exception is its run's failure
            what = f"raised {_raised(err)}"
        else:
            if isinstance(result, RunResult):
                return result
            what = f"returned {type(result).__name__}, not a RunResult"
    else:
        what = f"ended without a result (state {job.state}: killed, out of memory or out of time?)"
    error = f"cluster job {job.job_id} {what}; log: {job.paths.stderr}"
    tail = _tail(job.stderr())
    return RunResult(run.to_run(), False, None, None, f"{error}\n{tail}" if tail else error, 0.0)


class ClusterExecutor:
    """Submits runs as submitit jobs and waits for them; ``reproduce.execute`` calls
    :meth:`run_stage` once per stage. Raises ``ClusterError`` (one line) when submitit, or for
    Slurm ``sbatch``, is missing."""

    def __init__(self, plan: Plan, results_dir: Path, options: ClusterOptions, timeout: float | None = None,
                 torchrun: int | None = None, log: LogFn = say) -> None:
        if options.executor not in SUBMITIT_CLUSTER:
            raise ClusterError(f"unknown cluster executor {options.executor!r}; valid: {', '.join(SUBMITIT_CLUSTER)}")
        submitit = _submitit()
        if options.executor == "slurm" and shutil.which("sbatch") is None:
            raise ClusterError("--executor slurm: sbatch is not on PATH (run on a Slurm login node, "
                               "or use --executor local)")
        self.plan, self.results_dir, self.options = plan, Path(results_dir), options
        self.timeout, self.torchrun, self.log = timeout, torchrun, log
        self.name = options.executor
        self.folder = options.log_folder(self.results_dir)
        self.limit = options.jobs or (plans.default_jobs(plan.profile) if self.name == "submitit-local"
                                      else len(plan.runs))
        self.executor = submitit.AutoExecutor(folder=str(self.folder / "%j"), cluster=SUBMITIT_CLUSTER[self.name])
        self.in_flight: dict[str, Any] = {}  # run id -> job
        self.ok: set[str] = set()  # run ids whose runs completed (or were complete)

    def submit(self, run: PlannedRun) -> RunResult | None:
        """Submit ``run``'s job (in flight from then on); a refused submission (``sbatch`` said
        no) is a failed run, returned."""
        resources = job_resources(run, self.options, self.torchrun)
        try:
            self.executor.update_parameters(**resources.parameters(f"optnb:{run.run_id}"))
            job = self.executor.submit(RunJob(run, str(self.results_dir), self.timeout, resources.torchrun))
        except Exception as err:  # noqa: BLE001 - reported as the run's failure; the others go on
            error = f"submission failed ({resources.describe()}): {type(err).__name__}: {err}"
            return RunResult(run.to_run(), False, None, None, error.strip(), 0.0)
        self.in_flight[run.run_id] = job  # before anything else, so that Ctrl-C cancels it
        self.log(f"job  {run.run_id}: {self.name} job {job.job_id} ({resources.describe()})")
        return None

    def run_stage(self, runs: Sequence[PlannedRun]) -> list[RunResult]:
        """Submit ``runs`` (at most ``limit`` jobs at once), wait for them; results in input order.

        A complete run gets no job; a run folder another process holds waits before submission.
        On Ctrl-C the jobs in flight are cancelled and the runs left are named."""
        todo, done = list(runs), {}
        reminded: set[str] = set()
        try:
            while todo or self.in_flight:
                for run in list(todo):
                    if len(self.in_flight) >= self.limit:
                        break
                    # the runner's own rule (run_many's): a complete run starts nothing
                    if (skipped := runner._skipped(run.to_run(), self.results_dir)) is not None:
                        done[run.run_id] = skipped
                        self.log(skipped.summary())
                    elif (owner := ownership.holder(run_dir(run.run_id, self.results_dir, create=False))) is not None:
                        if run.run_id not in reminded:
                            self.log(f"wait {run.run_id}: in use by {owner.describe()}; submitted when free")
                            reminded.add(run.run_id)
                        continue
                    elif (refused := self.submit(run)) is not None:
                        done[run.run_id] = refused
                        self.log(refused.summary())
                    todo.remove(run)
                for run in runs:
                    job = self.in_flight.get(run.run_id)
                    if job is not None and job.done():
                        del self.in_flight[run.run_id]
                        done[run.run_id] = job_outcome(job, run, RESULT_GRACE_S[self.name])
                        self.log(done[run.run_id].summary())
                if todo or self.in_flight:
                    time.sleep(POLL_S[self.name])
        except KeyboardInterrupt:
            self.cancel()
            raise
        finally:
            self.ok |= {i for i, r in done.items() if r.ok}
        return [done[r.run_id] for r in runs]

    def cancel(self) -> None:
        """Cancel the jobs in flight and say which runs of the plan are left."""
        for run_id, job in self.in_flight.items():
            try:
                job.cancel(check=False)
            except Exception as err:  # noqa: BLE001 - cancel the others all the same
                self.log(f"could not cancel job {job.job_id} ({run_id}): {err}")
        jobs = ", ".join(f"{job.job_id} ({run_id})" for run_id, job in self.in_flight.items())
        left = [r.run_id for r in self.plan.runs if r.run_id not in self.ok]
        self.log(f"interrupted: cancelled {len(self.in_flight)} job(s){': ' + jobs if jobs else ''}; "
                 f"{len(left)} run(s) left: {', '.join(left)}")
        self.in_flight.clear()
