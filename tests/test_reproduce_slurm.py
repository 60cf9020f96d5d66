"""``optnb reproduce --executor slurm``: jobs through submitit, run here by its ``LocalExecutor``
(``--executor submitit-local``: the same jobs as on Slurm, as processes on this machine).

The fixture notebook stands in for ``06_train_cifar`` (as in ``test_reproduce``): it writes a
sidecar and a test error; ``MODE`` makes it raise, kill the job that runs it on its first
execution (as the out-of-memory killer would), or sleep on its first execution (to be cancelled).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import nbformat
import pytest
from proctree import alive

from optnb import cli
from optnb.experiments import cluster, ownership, plans
from optnb.experiments.cluster import ClusterExecutor, ClusterOptions, job_resources
from optnb.experiments.results import run_id_for

PARAMETERS = '''MODEL = "resnet56"
SEED = 0
PROFILE = "smoke"
LIVE = "off"
RUN_ID = ""
RESULTS_DIR = ""
MARKER = ""
MODE = "ok"'''

BODY = '''import os, signal, time
from pathlib import Path
from optnb.experiments import results
path = Path(RESULTS_DIR) / "runs" / RUN_ID / "result.json"
sidecar = {"notebook": "06_train_cifar", "run_id": RUN_ID, "status": "running",
           "parameters": {"MODEL": MODEL, "SEED": SEED, "PROFILE": PROFILE, "MARKER": MARKER, "MODE": MODE},
           "profile": PROFILE, "dataset": "embedded", "dataset_real": False, "device": "cpu",
           "started": results.now(), "results": {}}
results.atomic_write_json(path, sidecar)
first = bool(MARKER) and not Path(MARKER).exists()
if first:
    Path(MARKER).write_text(str(os.getpid()))
if MODE == "raise":
    raise RuntimeError("fixture failure in the training cell")
if MODE == "kill_job_once" and first:
    with open(f"/proc/{os.getppid()}/fd/2", "w") as job_stderr:  # the job's log, as a dying job's last words
        job_stderr.write("fixture: the job is about to be killed\\n")
    os.kill(os.getppid(), signal.SIGKILL)  # the kernel's parent: the job's process
    time.sleep(60)
if MODE == "sleep_once" and first:
    time.sleep(120)
sidecar["results"] = {"test_error": {"value": 5.0 + len(MODEL) / 100, "unit": "%"}}
results.atomic_write_json(path, sidecar)'''


def write_plan(folder: Path, runs: list[dict], needs: dict[int, list[int]] | None = None) -> tuple[Path, str]:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(BODY)]
    path = str(folder / "fake_train.ipynb")
    nbformat.write(nb, path)
    # a Table 1 target per run keeps the report to Table 1 (the model sizes of every table take seconds)
    spec = {"profile": "smoke", "runs": [
        {"notebook": path, "parameters": r, "suite": "table1", "needs": (needs or {}).get(i, []),
         "target": {"table": "table1", "row": r["MODEL"], "column": "cifar10+"}} for i, r in enumerate(runs)]}
    (folder / "plan.json").write_text(json.dumps(spec))
    return folder / "plan.json", path


def sidecar(results: Path, nb: str, params: dict) -> dict:
    path = results / "runs" / run_id_for(nb, params) / "result.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def job_folders(results: Path) -> set[str]:
    return {p.name for p in (results / "slurm").iterdir() if p.is_dir() and p.name.isdigit()}


def reproduce_args(plan: Path, results: Path, *extra: str) -> list[str]:
    return ["reproduce", "--executor", "submitit-local", "--plan", str(plan), "--results", str(results),
            "--no-report-notebook", *extra]


# ----------------------------------------------------------------------------------------------
# No job runs


def test_job_resources_come_from_the_row():
    plan = plans.build("smoke", only="table1,table2,table4", available=lambda name: False)
    train = next(r for r in plan.runs if r.notebook == plans.NB_CIFAR)
    imagenet = next(r for r in plan.runs if r.notebook == plans.NB_IMAGENET)
    search = next(r for r in plan.runs if r.notebook == plans.NB_SEARCH)
    slurm = ClusterOptions(partition="gpu", account="lab", time_min=90, gpus=1, cpus_per_gpu=5)

    assert job_resources(train, slurm, torchrun=4) == cluster.JobResources(4, 20, 90, 4, "gpu", "lab")
    assert job_resources(imagenet, slurm, torchrun=4).torchrun == 4
    assert job_resources(search, slurm, torchrun=4) == cluster.JobResources(1, 5, 90, None, "gpu", "lab")
    assert job_resources(train, slurm) == cluster.JobResources(1, 5, 90, None, "gpu", "lab")  # no --torchrun
    cpu = ClusterOptions(gpus=0, cpus_per_gpu=3)  # a CPU partition: torchrun's gloo processes on cores
    assert (job_resources(train, cpu, 2).gpus, job_resources(train, cpu, 2).cpus) == (0, 6)
    assert (job_resources(search, cpu, 2).gpus, job_resources(search, cpu, 2).cpus) == (0, 3)
    local = ClusterOptions(executor="submitit-local", gpus=1)
    assert job_resources(train, local, 2).gpus == 0 and job_resources(train, local, 2).torchrun == 2

    params = job_resources(train, slurm, torchrun=4).parameters("optnb:x")
    assert params == {"name": "optnb:x", "timeout_min": 90, "nodes": 1, "tasks_per_node": 1, "gpus_per_node": 4,
                      "cpus_per_task": 20, "slurm_partition": "gpu", "slurm_account": "lab"}
    assert "slurm_partition" not in job_resources(search, ClusterOptions()).parameters("y")


@pytest.mark.parametrize(("argv", "message"), [
    (["--executor", "pbs"], "argument --executor: invalid choice: 'pbs'"),
    (["--executor", "slurm", "--slurm-time", "0"], "--slurm-time must be >= 1, got 0"),
    (["--executor", "slurm", "--slurm-time", "1h"], "--slurm-time must be an int, got '1h'"),
    (["--executor", "slurm", "--slurm-gpus-per-node", "-1"], "--slurm-gpus-per-node must be >= 0, got -1"),
    (["--executor", "slurm", "--slurm-cpus-per-gpu", "0"], "--slurm-cpus-per-gpu must be >= 1, got 0"),
    (["--executor", "slurm", "--slurm-partition", "gpu;rm"], "--slurm-partition must be a Slurm name"),
    (["--slurm-partition", "gpu"], "--slurm-partition needs --executor slurm"),
])
def test_bad_cluster_options_give_one_line(argv, message, capsys):
    assert cli.main(["reproduce", "--only", "table3", "--dry-run", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err


def test_missing_sbatch_or_submitit_is_one_line_before_any_job(tmp_path, capsys, monkeypatch):
    results = tmp_path / "results"
    monkeypatch.setattr(cluster.shutil, "which", lambda name: None)
    assert cli.main(["reproduce", "--only", "table3", "--executor", "slurm", "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("optnb: error: --executor slurm: sbatch is not on PATH (run on a Slurm login node, "
                   "or use --executor local)")
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if not installed
    assert cli.main(["reproduce", "--only", "table3", "--executor", "slurm", "--results", str(results)]) == 2
    assert "needs submitit, which is not installed: pip install 'optnb[cluster]'" in capsys.readouterr().err
    assert not (results / "slurm").exists()


def test_dry_run_prints_each_job_and_submits_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPTNB_PROFILE", raising=False)
    results = tmp_path / "results"
    assert cli.main(["reproduce", "--profile", "smoke", "--only", "table1,table4", "--torchrun", "2",
                     "--executor", "slurm", "--slurm-partition", "gpu", "--dry-run", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert f"jobs (slurm, one per run; logs in {results / 'slurm'}/<job id>/):" in out
    lines = [line.split() for line in out.splitlines() if "time=1440min" in line]
    assert len(lines) == 12  # 4 Table 1 rows, 4 searches, 4 evaluations
    train = [w for w in lines if w[0].startswith("06_train_cifar")]
    nas = [w for w in lines if not w[0].startswith("06_train_cifar")]
    assert len(train) == 4 and all(w[1:] == ["gpus=2", "cpus=12", "time=1440min", "torchrun=2", "partition=gpu"]
                                   for w in train)
    assert all(w[1:] == ["gpus=1", "cpus=6", "time=1440min", "notebook", "partition=gpu"] for w in nas)
    assert not results.exists()


def test_the_sbatch_script_asks_for_the_row_resources(tmp_path, monkeypatch):
    """submitit's own Slurm executor writes the script; a stand-in ``sbatch`` records it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("sbatch", f'cp "$1" {tmp_path}/script.sh\necho "Submitted batch job 4242"'), ("srun", "")):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    plan = plans.build("smoke", only="table1", available=lambda name: False)
    options = ClusterOptions(partition="gpu", account="lab", time_min=90, cpus_per_gpu=5)
    executor = ClusterExecutor(plan, tmp_path / "results", options, torchrun=4, log=lambda m: None)
    assert executor.submit(plan.runs[0]) is None
    assert executor.in_flight[plan.runs[0].run_id].job_id == "4242"
    script = (tmp_path / "script.sh").read_text().splitlines()
    for line in ("--partition=gpu", "--account=lab", "--time=90", "--nodes=1", "--ntasks-per-node=1",
                 "--gpus-per-node=4", "--cpus-per-task=20", "--signal=USR2@90",
                 f"--job-name=optnb:{plan.runs[0].run_id}", f"--output={tmp_path}/results/slurm/%j/%j_0_log.out"):
        assert f"#SBATCH {line}" in script, line
    pickled = (tmp_path / "results" / "slurm" / "4242" / "4242_submitted.pkl")
    job_call = cluster._submitit().helpers.DelayedSubmission.load(pickled).function
    assert job_call == cluster.RunJob(plan.runs[0], str(tmp_path / "results"), None, 4)
    assert job_call.checkpoint().function is job_call  # requeued as itself after a timeout


# ----------------------------------------------------------------------------------------------
# Jobs through submitit's LocalExecutor


def test_jobs_complete_fail_block_and_a_rerun_skips_and_resumes(tmp_path, capsys):
    runs = [{"MODEL": "resnet56"}, {"MODEL": "hbnet56", "MODE": "raise"}, {"MODEL": "densenet40"},
            {"MODEL": "agdnet40", "MODE": "kill_job_once", "MARKER": str(tmp_path / "killed")}]
    plan, nb = write_plan(tmp_path, runs, needs={2: [1]})  # the third needs the failing one
    results = tmp_path / "results"
    assert cli.main(reproduce_args(plan, results, "--jobs", "3")) == 1
    assert [sidecar(results, nb, r).get("status") for r in runs] == ["complete", "failed", None, "running"]
    assert sidecar(results, nb, runs[0])["results"]["test_error"]["value"] == pytest.approx(5.08, abs=1e-12)
    first = sidecar(results, nb, runs[0])["finished"]
    assert len(job_folders(results)) == 3  # the blocked run got no job
    report = (results / "report" / "report.md").read_text()
    ids = [run_id_for(nb, r) for r in runs]
    assert f"### FAILED: {ids[1]} (fake_train)" in report
    assert "RuntimeError: fixture failure in the training cell" in report
    assert f"blocked: needs {ids[1]}, which did not complete" in report
    killed = report.split(f"### FAILED: {ids[3]} (fake_train)")[1].split("```")[1].strip().splitlines()
    assert "ended without a result (state FINISHED: killed" in killed[0]
    log = Path(killed[0].split("; log: ")[1])
    assert log.name.endswith("_0_log.err") and "fixture: the job is about to be killed" in log.read_text()
    assert "fixture: the job is about to be killed" in killed[1:]  # the tail of its stderr
    out = capsys.readouterr().out
    assert "stage 0: 3 run(s) as submitit-local jobs, at most 3 at a time" in out

    before = job_folders(results)
    assert cli.main(reproduce_args(plan, results)) == 1
    assert [sidecar(results, nb, r).get("status") for r in runs] == ["complete", "failed", None, "complete"]
    assert sidecar(results, nb, runs[0])["finished"] == first  # skipped, not repeated
    assert len(job_folders(results) - before) == 2  # the complete run got no job
    resumed = next(iter(job_folders(results) - before), None)
    logs = "".join(p.read_text() for p in (results / "slurm").glob("*/*_0_log.out"))
    assert f"run  {ids[3]}" in logs and resumed is not None  # run_notebook ran inside the job
    out = capsys.readouterr().out
    assert f"skipped (complete) {ids[0]}" in out and "2 ok, 2 failed" in out


def test_a_job_that_raises_is_a_failed_run_with_its_log(tmp_path):
    plan_path, nb = write_plan(tmp_path, [{"MODEL": "resnet56"}])
    plan = plans.load_plan(plan_path, "smoke")
    plans.validate(plan)
    Path(nb).unlink()  # gone from the shared file system before the job starts
    results = tmp_path / "results"
    executor = ClusterExecutor(plan, results, ClusterOptions(executor="submitit-local"), log=lambda m: None)
    [result] = executor.run_stage(plan.runs)
    assert not result.ok and result.error.startswith("cluster job ")
    head = result.error.splitlines()[0]
    assert "raised optnb.experiments.notebooks.UnknownNotebookError" in head or \
           "raised UnknownNotebookError" in head, head
    assert f"log: {results / 'slurm'}" in head
    assert 'in find_notebook\n' in result.error  # the tail of the job's stderr: its traceback


def test_ctrl_c_cancels_the_jobs_and_names_the_runs_left(tmp_path):
    marker = tmp_path / "slept"
    runs = [{"MODEL": "resnet56", "MODE": "sleep_once", "MARKER": str(marker)}, {"MODEL": "hbnet56"}]
    plan_path, nb = write_plan(tmp_path, runs, needs={1: [0]})
    plan = plans.load_plan(plan_path, "smoke")
    plans.validate(plan)
    results = tmp_path / "results"
    said: list[str] = []

    def log(message: str) -> None:  # Ctrl-C while the first run sleeps in its job's kernel
        said.append(message)
        deadline = time.monotonic() + 90
        while message.startswith("job ") and not marker.exists():
            assert time.monotonic() < deadline, said
            time.sleep(0.2)
        if message.startswith("job "):
            raise KeyboardInterrupt

    executor = ClusterExecutor(plan, results, ClusterOptions(executor="submitit-local"), log=log)
    with pytest.raises(KeyboardInterrupt):
        executor.run_stage(plan.stages()[0])
    [job] = job_folders(results)
    ids = [run_id_for(nb, r) for r in runs]
    assert said[-1] == f"interrupted: cancelled 1 job(s): {job} ({ids[0]}); 2 run(s) left: {ids[0]}, {ids[1]}"
    kernel = int(marker.read_text())
    deadline = time.monotonic() + 30
    while alive(int(job)) or alive(kernel):  # the job's process and its kernel go
        assert time.monotonic() < deadline, said
        time.sleep(0.2)
    folder = results / "runs" / ids[0]
    assert ownership.holder(folder) is None and sidecar(results, nb, runs[0])["status"] == "running"


def test_the_report_header_names_the_devices_the_jobs_ran_on(tmp_path, monkeypatch):
    from optnb.experiments import reproduce

    plan = plans.load_plan(write_plan(tmp_path, [{"MODEL": "resnet56"}])[0], "smoke")
    monkeypatch.setattr(reproduce.torch.cuda, "is_available", lambda: False)  # the login node
    header = reproduce.provenance_header(plan, ["--executor", "slurm"], ["cuda:0 (NVIDIA H200)"])
    assert "device: cuda:0 (NVIDIA H200) (the runs' sidecars); this report was made on CPU only" in header
    local = reproduce.provenance_header(plan, [], ["cpu"])
    assert "device: CPU only (" in local and "sidecars" not in local
