"""Hostile input at every entry point (issue 10, classes 1, 5 and 6): run ids and path parameters
that point outside the results root, options the notebooks would refuse, and results roots that
cannot be written (a file, a path under a file, a read-only or full file system).

Each must be refused before a byte is written, in one line, with exit code 2 (bad input) or 1 (a
file system that refuses a write), and leave nothing half-written that looks complete.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import nbformat
import pytest
import torch

from optnb import cli, paths
from optnb.cli.common import BAD_INPUT, RUN_FAILED
from optnb.experiments import ownership, resolve, results, rows
from optnb.experiments.runner import Run, run_many, run_notebook
from optnb.nas.experiment import genotype_of_run
from optnb.paths import ResultsDirError, RunIdError
from optnb.specs import ParameterError

TRAIN = ["train", "--model", "resnet56", "--profile", "smoke", "--device", "cpu", "--quiet"]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("OPTNB_DOWNLOAD", "0")
    monkeypatch.setenv("OPTNB_HEADLESS", "1")
    monkeypatch.delenv("OPTNB_DEBUG", raising=False)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # see test_nas_cli


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("optnb: error: "), err
    assert "Traceback" not in err
    return err


def tree(folder: Path) -> list[str]:
    """Everything under ``folder`` (relative paths), to prove that nothing was written."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def write_notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nb, str(path))
    return path


# ------------------------------------------------------------------------------------------------
# Class 1: nothing outside the results root


OUTSIDE_IDS = ["../../escape", "/tmp/optnb-escape", "a/b", "..", ".hidden", "x" * 201, "new\nline"]


@pytest.mark.parametrize("run_id", OUTSIDE_IDS)
def test_train_refuses_a_run_id_outside_the_results_root(run_id, tmp_path, capsys):
    results_root = tmp_path / "deep" / "er" / "results"
    assert cli.main([*TRAIN, "--results", str(results_root), "--run-id", run_id]) == BAD_INPUT
    err = one_line_error(capsys)
    assert "RUN_ID=" in err and "letters, digits" in err
    assert tree(tmp_path) == [] and not Path("/tmp/optnb-escape").exists()


@pytest.mark.parametrize("command", ["search", "evaluate"])
def test_search_and_evaluate_refuse_a_run_id_outside_the_results_root(command, tmp_path, capsys):
    extra = ["--genotype", "DARTS_V2"] if command == "evaluate" else []
    argv = [command, *extra, "--profile", "smoke", "--device", "cpu", "--results", str(tmp_path / "r"),
            "--run-id", "../../escape"]
    assert cli.main(argv) == BAD_INPUT
    assert "RUN_ID='../../escape' is not valid" in one_line_error(capsys)
    assert tree(tmp_path) == []


def test_run_refuses_an_absolute_run_id_before_the_kernel_starts(tmp_path, capsys):
    """Before: the executed notebook and its sidecar were written to the absolute path, and only
    then did the kernel's resolve reject the id."""
    nb = write_notebook(tmp_path / "nb.ipynb", "RUN_ID = ''\nRESULTS_DIR = ''", "pass")
    target = tmp_path / "elsewhere"
    for argv in (["--run-id", str(target)], ["-p", f"RUN_ID={target}"], ["-p", "RUN_ID=../x"]):
        assert cli.main(["run", str(nb), "--results", str(tmp_path / "r"), "-q", *argv]) == BAD_INPUT
        assert "run id" in one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nb.ipynb"]


def test_search_run_cannot_read_a_genotype_outside_the_results_root(tmp_path, capsys):
    """Before: ``SEARCH_RUN=../../..`` read any genotype.json on the disk (and left a sidecar
    saying running)."""
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "genotype.json").write_text("{}")
    results_root = tmp_path / "a" / "results"
    argv = ["evaluate", "--search-run", "../../../planted", "--profile", "smoke", "--device", "cpu",
            "--results", str(results_root)]
    assert cli.main(argv) == BAD_INPUT
    assert "SEARCH_RUN='../../../planted' is not valid" in one_line_error(capsys)
    assert not results_root.exists()
    with pytest.raises(RunIdError, match="SEARCH_RUN"):
        genotype_of_run(str(planted), results_root)


def test_every_way_to_a_run_folder_checks_the_run_id(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTNB_RESULTS", str(tmp_path / "results"))
    for bad in OUTSIDE_IDS:
        with pytest.raises(RunIdError, match="is not valid"):
            paths.run_dir(bad, create=False)
        with pytest.raises(ParameterError, match="RUN_ID="):
            resolve({"PROFILE": "smoke", "RUN_ID": bad}, notebook="00_tour", quiet=True)
        with pytest.raises(RunIdError):
            run_many([Run("00_tour", {"PROFILE": "smoke"}, bad)], results_dir=tmp_path / "results")
    # a run folder that is a link out of the results root is refused too
    (tmp_path / "results" / "runs").mkdir(parents=True)
    (tmp_path / "results" / "runs" / "linked").symlink_to(tmp_path)
    with pytest.raises(RunIdError, match="outside"):
        paths.run_dir("linked")
    # a notebook whose name is no valid run id still gets one
    assert paths.check_run_id(results.run_id_for("my notebook (copy).ipynb", {})).startswith("my_notebook__copy_-")
    assert tree(tmp_path / "results") == ["runs", "runs/linked"]


# ------------------------------------------------------------------------------------------------
# Class 5: the command line checks what the notebooks check


@pytest.mark.parametrize("argv, needle", [
    ([*TRAIN, "--epochs", "-1"], "EPOCHS=-1 is not valid (out of range); expected an int in [0, 10000]"),
    ([*TRAIN, "--batch-size", "-5"], "BATCH_SIZE=-5 is not valid"),
    ([*TRAIN, "--lr", "-1"], "LR=-1.0 is not valid"),
    ([*TRAIN, "--seed", "-1"], "SEED=-1 is not valid"),
    ([*TRAIN, "--stop-after", "0"], "--stop-after must be >= 1, got 0"),
    ([*TRAIN, "--stop-after", "-3"], "--stop-after must be >= 1, got -3"),
    ([*TRAIN, "--stop-after", "x"], "--stop-after must be an int, got 'x'"),
    ([*TRAIN, "--workers", "-1"], "--workers must be >= 0, got -1"),
    ([*TRAIN, "--beta", "0.5"], "MODEL_OPTIONS of resnet56: model 'resnet56' takes no option 'beta'"),
    ([*TRAIN[:2], "hbnet56", *TRAIN[3:], "--model-option", "num_classes=3"], "'num_classes' is set by the row"),
    ([*TRAIN, "--model-option", "width=0"], "MODEL_OPTIONS of resnet56: width must be a positive int"),
    ([*TRAIN[:2], "densenet40", *TRAIN[3:], "--model-option", "dropout=1.5"], "dropout must be in [0, 1)"),
    (["reproduce", "--seeds", "0", "--dry-run"], "--seeds must be >= 1, got 0"),
    (["reproduce", "--torchrun", "0", "--dry-run"], "--torchrun must be >= 1, got 0"),
    (["reproduce", "--timeout", "0", "--dry-run"], "--timeout must be > 0, got 0"),
    (["reproduce", "--timeout", "nan", "--dry-run"], "--timeout must be a finite number, got nan"),
    (["reproduce", "--jobs", "100000", "--dry-run"], "--jobs must be <= 256 (0 = auto), got 100000"),
    (["search", "--seeds", "1", "2", "--jobs", "0"], "--jobs must be >= 1, got 0"),
    (["search", "--seeds", "-1"], "--seeds must be >= 0, got -1"),
    (["search", "--seeds", "1", "1"], "names a seed twice"),
    (["run", "00_tour", "--timeout", "-1"], "--timeout must be > 0, got -1"),
    (["run", "00_tour", "-p", "RUN_ID=a", "--run-id", "b"], "-p RUN_ID='a' and --run-id 'b' disagree"),
    (["run", "09_nas_evaluate", "-p", "SEARCH_RUN=../x"], "SEARCH_RUN='../x' is not valid"),
    (["bench", "--seed", "-1"], "--seed must be >= 0, got -1"),
    (["bench", "--peak-tflops", "0"], "--peak-tflops must be > 0, got 0"),
])
def test_bad_options_are_one_line_exit_2_and_write_nothing(argv, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPTNB_RESULTS", str(tmp_path / "results"))
    assert cli.main(argv) == BAD_INPUT
    assert needle in one_line_error(capsys)
    assert tree(tmp_path) == []  # before: --beta and --model-option left a folder and a 'running' sidecar


def test_batch_size_zero_is_the_profiles_as_in_the_notebook(tmp_path, monkeypatch):
    """``--batch-size 0`` and ``BATCH_SIZE=0`` are one rule (``ROW_OVERRIDES``): the profile's."""
    monkeypatch.setenv("OPTNB_RESULTS", str(tmp_path))
    base = {"PROFILE": "smoke", "MODEL": "resnet56", "AUGMENT": True, "EPOCHS": 0, "LR": 0.0,
            "RECIPE": "", "MODEL_OPTIONS": {}}
    profiles_batch = rows.plan_for(resolve({**base, "BATCH_SIZE": 0}, "06_train_cifar", quiet=True,
                                           register=False)).batch_size
    assert profiles_batch == 32  # recipes.BUDGETS["smoke"]
    assert rows.plan_for(resolve({**base, "BATCH_SIZE": 8}, "06_train_cifar", quiet=True,
                                 register=False)).batch_size == 8
    from optnb.train.params import ROW_OVERRIDES

    assert ROW_OVERRIDES["BATCH_SIZE"].help.startswith("0: the profile's")
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "BATCH_SIZE: 0 (default) the profile's" in " ".join(help_text.split())
    assert tree(tmp_path) == []  # register=False writes nothing


def test_plan_files_are_checked_like_the_notebooks(tmp_path, capsys):
    """A plan entry cannot set what the runner sets, nor model options the model refuses."""
    nb = write_notebook(tmp_path / "nb.ipynb", "RUN_ID = ''\nRESULTS_DIR = ''\nPROFILE = 'smoke'", "pass")
    cases = [
        ({"notebook": str(nb), "parameters": {"RUN_ID": "mine"}}, "parameter RUN_ID is set by the runner"),
        ({"notebook": str(nb), "parameters": {"RESULTS_DIR": "/x"}}, "parameter RESULTS_DIR is set by the runner"),
        ({"notebook": "06_train_cifar", "parameters": {"MODEL": "resnet56", "MODEL_OPTIONS": {"beta": 0.5}}},
         "takes no option 'beta'"),
        ({"notebook": "09_nas_evaluate", "parameters": {"SEARCH_RUN": "../../x"}},
         "SEARCH_RUN='../../x' is not valid"),
    ]
    for entry, needle in cases:
        plan = tmp_path / "plan.json"
        plan.write_text(json.dumps({"profile": "smoke", "runs": [entry]}))
        argv = ["reproduce", "--plan", str(plan), "--results", str(tmp_path / "r"), "--no-report-notebook"]
        assert cli.main(argv) == BAD_INPUT
        assert needle in one_line_error(capsys)
    assert not (tmp_path / "r").exists()


@pytest.mark.notebooks
@pytest.mark.timeout(120)
def test_run_honours_run_id_and_results_dir_parameters(tmp_path, capsys):
    """Before: ``optnb run -p RUN_ID=... -p RESULTS_DIR=...`` were silently replaced."""
    nb = write_notebook(tmp_path / "nb.ipynb", "RUN_ID = ''\nRESULTS_DIR = ''",
                        "print('SEEN', RUN_ID, RESULTS_DIR)")
    chosen = tmp_path / "chosen"
    assert cli.main(["run", str(nb), "-q", "-p", "RUN_ID=mine", "-p", f"RESULTS_DIR={chosen}"]) == 0
    output = chosen / "runs" / "mine" / "nb.ipynb"
    assert capsys.readouterr().out.strip() == str(output)
    printed = "".join(o.get("text", "") for c in nbformat.read(str(output), as_version=4).cells
                      for o in c.get("outputs", []))
    assert f"SEEN mine {chosen}" in printed
    assert results.read_sidecar(output.parent)["status"] == "complete"


# ------------------------------------------------------------------------------------------------
# Class 6: results roots that cannot be used


@pytest.mark.parametrize("command", ["train", "search", "evaluate", "run", "reproduce", "bench"])
@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_a_results_root_that_is_a_file_is_one_line(command, where, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    root = blocker if where == "a file" else blocker / "sub" / "results"
    monkeypatch.setenv("OPTNB_RESULTS", str(root))  # as $OPTNB_RESULTS, the default of every command
    argv = {"train": TRAIN, "search": ["search", "--profile", "smoke", "--device", "cpu"],
            "evaluate": ["evaluate", "--genotype", "DARTS_V2", "--profile", "smoke", "--device", "cpu"],
            "run": ["run", "00_tour", "-q"],
            "reproduce": ["reproduce", "--only", "notebooks", "--no-report-notebook"],
            "bench": ["bench", "--out", str(root / "bench")]}[command]
    assert cli.main(argv) == BAD_INPUT
    err = one_line_error(capsys)
    assert f"{blocker} is a file, not a folder" in err and "choose another folder" in err
    assert blocker.read_text() == "not a folder" and tree(tmp_path) == ["blocker"]


def test_a_read_only_results_root_is_one_line(tmp_path, monkeypatch, capsys):
    """Tests run as root, whom chmod does not stop: ``access`` is what a read-only mount answers."""
    root = tmp_path / "results"
    root.mkdir()
    monkeypatch.setattr(paths, "_writable", lambda path: False)
    monkeypatch.setattr(paths, "_read_only", lambda path: True)
    with pytest.raises(ResultsDirError, match="cannot be written .Read-only file system.; choose another folder"):
        paths.ensure_dir(root)
    assert cli.main([*TRAIN, "--results", str(root)]) == BAD_INPUT
    assert "Read-only file system" in one_line_error(capsys)
    assert tree(root) == []


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_when_the_sidecar_is_first_written_leaves_no_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(results.os, "fsync", _enospc)  # the sidecar's atomic write fails
    assert cli.main([*TRAIN, "--results", str(tmp_path), "--run-id", "full"]) == RUN_FAILED
    assert "No space left on device" in one_line_error(capsys)
    assert tree(tmp_path) == ["runs"]  # neither the run folder nor a temporary file is left
    monkeypatch.undo()
    assert ownership.holder(tmp_path / "runs" / "full") is None


@pytest.mark.timeout(120)
def test_a_full_disk_mid_training_fails_the_run_keeps_the_checkpoint_and_resumes(tmp_path, monkeypatch, capsys):
    """The second checkpoint write hits ENOSPC: one line, exit 1, the sidecar says failed (not
    running, not complete), epoch 1's checkpoint is intact, and ``--resume`` after freeing space
    ends where an uninterrupted run ends."""
    argv = [*TRAIN, "--batch-size", "8", "--model-option", "width=4", "--results", str(tmp_path)]
    assert cli.main([*argv, "--run-id", "straight"]) == 0
    real_save, calls = torch.save, []

    def save_then_full(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            _enospc()
        return real_save(*args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_full)
    assert cli.main([*argv, "--run-id", "full"]) == RUN_FAILED
    assert "No space left on device" in one_line_error(capsys)
    run = tmp_path / "runs" / "full"
    sidecar = results.read_sidecar(run)
    assert sidecar["status"] == "failed" and "No space left on device" in sidecar["error"]
    assert "\n" not in sidecar["error"]
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert not list(run.glob(".*.tmp"))
    monkeypatch.setattr(torch, "save", real_save)
    capsys.readouterr()
    assert cli.main([*argv, "--run-id", "full", "--resume"]) == 0
    done, straight = results.read_sidecar(run), results.read_sidecar(tmp_path / "runs" / "straight")
    assert done["status"] == "complete" and "error" not in done
    assert done["results"]["test_error"] == straight["results"]["test_error"]
    assert done["results"]["epochs"]["value"] == 2


@pytest.mark.notebooks
@pytest.mark.timeout(120)
def test_a_full_disk_when_the_runner_marks_the_sidecar_is_a_failed_run(tmp_path, monkeypatch):
    nb = write_notebook(tmp_path / "nb.ipynb", "X = 1", "pass")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "r" / "runs" / "full"))

    monkeypatch.setattr(results, "mark_complete", full)
    result = run_notebook(Run(str(nb), {}, "full"), tmp_path / "r", timeout=60)
    assert not result.ok and "No space left on device" in result.error
    assert "does not count as complete" in result.error
    assert results.read_sidecar(tmp_path / "r" / "runs" / "full").get("status") != "complete"
