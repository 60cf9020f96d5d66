"""The dress rehearsal of the paper plan (``optnb reproduce --profile paper --rehearse``).

The overlay is off without its one input and changes nothing of a normal paper plan; with it,
only steps, stops, held-out samples and the per-step batch change. Rehearsal rows are marked and
never put beside the paper's numbers. A setting changed on purpose (drop path 0.3) is caught
through the configuration the run records. The subset (one row of each table, the ImageNet
folder path, a Table 2 row under torchrun with 2 gloo processes) is rehearsed end to end.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from optnb import cli
from optnb.experiments import plans, rehearsal, rehearsal_report, render, tables
from optnb.experiments.targets import Target
from optnb.specs import ParameterError
from optnb.train import FitOptions, rehearsal_overlay


@pytest.fixture
def overlay(tmp_path, monkeypatch):
    """An active overlay over an empty data root; turned off again afterwards."""
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("OPTNB_DATA", str(data))
    path = rehearsal_overlay.Overlay(steps_per_epoch=3, stop_after=2, eval_samples=10,
                                     step_batches={"train:resnet50": 8}).write(tmp_path / "overlay.json")
    monkeypatch.setenv(rehearsal_overlay.ENV, str(path))
    yield data
    rehearsal_overlay.deactivate()


def test_overlay_is_off_without_its_input_and_leaves_the_paper_plan_alone(tmp_path, monkeypatch):
    monkeypatch.delenv(rehearsal_overlay.ENV, raising=False)
    assert rehearsal_overlay.activate("paper") is None and rehearsal_overlay.active() is None
    opts = FitOptions(epochs=300)
    assert rehearsal_overlay.fit_options(opts) is opts
    assert rehearsal_overlay.step_batch("train:resnet50", 256) == 256
    assert rehearsal_overlay.expected_epochs(300) == 300
    before = plans.build("paper", "table1,table2,table4,table5", 1, available=lambda _n: True)
    path = rehearsal_overlay.Overlay().write(tmp_path / "overlay.json")
    monkeypatch.setenv(rehearsal_overlay.ENV, str(path))  # set, but no run activated it
    after = plans.build("paper", "table1,table2,table4,table5", 1, available=lambda _n: True)
    assert [(r.run_id, dict(r.parameters)) for r in before.runs] == [(r.run_id, dict(r.parameters)) for r in after.runs]
    from optnb.train.experiment import plan_row

    row = plan_row("resnet50", "imagenet", True, "paper")
    assert (row.batch_size, row.epochs, row.recipe.lr, row.budget.steps_per_epoch) == (256, 90, 0.1, None)


def test_overlay_caps_fit_and_refuses_other_profiles(overlay):
    with pytest.raises(ParameterError, match="rehearses the paper profile only"):
        rehearsal_overlay.activate("smoke")
    assert rehearsal_overlay.activate("paper") is not None
    capped = rehearsal_overlay.fit_options(FitOptions(epochs=300, eval_every=0))
    assert (capped.epochs, capped.steps_per_epoch, capped.stop_after, capped.eval_samples, capped.eval_every) \
        == (300, 3, 2, 10, 1)
    kept = rehearsal_overlay.fit_options(FitOptions(steps_per_epoch=1, stop_after=1, eval_samples=4))
    assert (kept.steps_per_epoch, kept.stop_after, kept.eval_samples) == (1, 1, 4)
    assert rehearsal_overlay.step_batch("train:resnet50", 256) == 8
    assert rehearsal_overlay.step_batch("train:resnet34", 256) == 256
    assert rehearsal_overlay.expected_epochs(300) == 2


def test_bad_overlay_file_is_one_line(tmp_path, monkeypatch):
    bad = tmp_path / "overlay.json"
    bad.write_text(json.dumps({"steps_per_epoch": 0}))
    monkeypatch.setenv(rehearsal_overlay.ENV, str(bad))
    with pytest.raises(ParameterError, match="steps_per_epoch must be an int >= 1"):
        rehearsal_overlay.requested()
    bad.write_text(json.dumps({"steps": 2}))
    with pytest.raises(ParameterError, match="valid keys"):
        rehearsal_overlay.requested()


def _sidecar(rehearsed: bool) -> dict:
    return {"notebook": "06_train_cifar", "status": "complete", "profile": "paper", "dataset": "cifar10",
            "dataset_real": True, "rehearsal": rehearsed, "device": "cpu",
            "parameters": {"PROFILE": "paper", "MODEL": "resnet56", "DATASET": "cifar10", "AUGMENT": True,
                           "SEED": 0},
            "results": {"test_error": {"value": 91.25, "unit": "%"}, "epochs": {"value": 2}}}


def test_rehearsal_rows_are_marked_and_never_beside_the_paper():
    found = tables.measurements({"06_train_cifar-aaaaaaaa": _sidecar(True)})
    assert [m.profile for m in found] == [tables.REHEARSAL]
    line = next(x for x in tables.lines("table1", found, include_missing=False)
                if (x.row, x.column) == ("resnet56", "cifar10+"))
    assert line.status == tables.STATUS_REHEARSAL and line.paper is None and line.diff is None
    assert line.verdict == "not a reproduction"
    assert "91.25" not in render.paper_view_markdown("table1", [line])
    real = tables.measurements({"06_train_cifar-bbbbbbbb": _sidecar(False)})
    line = next(x for x in tables.lines("table1", real, include_missing=False)
                if (x.row, x.column) == ("resnet56", "cifar10+"))
    assert line.eligible and line.paper is not None and "91.25" in render.paper_view_markdown("table1", [line])


@pytest.mark.parametrize("drop_path, ok", [(0.3, False), (0.2, True)])
def test_a_changed_setting_is_caught_through_the_recorded_configuration(overlay, tmp_path, drop_path, ok):
    """The evaluation's loaders record the configuration (as a rehearsed notebook 09 does); the
    check against the paper catches drop path 0.3 and passes the paper's 0.2."""
    from optnb.data.fake import ensure_cifar
    from optnb.nas.evaluate import EvalConfig
    from optnb.nas.experiment import eval_loaders
    from optnb.nas.params import EVAL_SIZES

    ensure_cifar(overlay, "cifar10", n_train=200, n_test=20)
    rehearsal_overlay.activate("paper")
    folder = tmp_path / "run"
    folder.mkdir()
    cfg = SimpleNamespace(task="cifar10", dataset="cifar10", profile="paper", device="cpu", run_dir=folder)
    settings = replace(EvalConfig(), **EVAL_SIZES["paper"], drop_path=drop_path)
    eval_loaders(cfg, settings)
    checked = rehearsal_report.config_check(folder, Target("table4", "darts_1st", None, "evaluate"), None)
    assert checked["ok"] is ok, checked["failures"]
    if not ok:
        assert [f for f in checked["failures"] if f.startswith("drop_path:")] == \
            ["drop_path: paper 0.2, actual 0.3 (DIFFERS)"]


def test_rehearse_refuses_what_it_cannot_rehearse(capsys):
    assert cli.main(["reproduce", "--rehearse", "--profile", "smoke"]) == 2
    assert "use --profile paper" in capsys.readouterr().err
    assert cli.main(["reproduce", "--rehearse", "--profile", "paper", "--only", "beyond"]) == 2
    assert "valid --only entries with --rehearse" in capsys.readouterr().err
    assert cli.main(["reproduce", "--rehearse", "--profile", "paper", "--dry-run"]) == 2
    with pytest.raises(plans.PlanError, match="no run of the rehearsed plan"):
        rehearsal.select(plans.build("paper", "table4", 1, available=lambda _n: True), ["table4/nope"])


#: one row of each table: a Table 1 row, a Table 2 row (the ImageNet folder over 1000 classes, under
#: torchrun with 2 gloo processes), a Table 4 search and its evaluation, the Table 5 transfer of
#: the published cell (the ImageNet folder at 224 px); Table 3 has no runs
SUBSET = ("table1/resnet56/cifar10+", "table2/resnet34", "table4/darts_1st", "table5/darts_2nd")


def test_rehearsal_of_one_row_per_table(tmp_path, capfd):
    # 50 GFLOP per step (not the default 200) keeps the test's steps short; the paths are the same
    settings = rehearsal.Settings(jobs=2, torchrun=2, cells=SUBSET, step_gflops=50.0)
    assert rehearsal.rehearse(tmp_path, settings, log=print) == 0
    console = capfd.readouterr()
    # a planned kill is said as such, not as a failed run; the memory profiler's chatter is in a log
    kills = re.findall(r"^kill (\S+): SIGKILL", console.out, re.M)
    planned = re.findall(r"^killed (\S+): as planned, after its first checkpoint; it resumes next$", console.out, re.M)
    assert len(planned) >= 5 and set(planned) == set(kills)
    assert "FAILED" not in console.out and "gpuGetDeviceCount" not in console.out + console.err
    assert "profiler_start" in (tmp_path / rehearsal.FOLDER / "sizing-stderr.log").read_text()
    report = json.loads((tmp_path / rehearsal.FOLDER / "report.json").read_text())
    runs = report["runs"]
    assert sorted({r["table"] for r in runs}) == ["table1", "table2", "table4", "table5"]
    assert len(runs) == 5 and report["ok"]
    for r in runs:
        assert r["attempts"][0]["killed"] and r["attempts"][-1]["ok"], r
        assert r["resumed_from"] >= 1 and max(r["fit_starts_at_epoch"]) >= 1, r
        assert r["epochs"] == 2 and r["epochs_planned"] > 2 and r["rehearsal_sidecar"] is True
        assert r["config"]["ok"], r["config"]["failures"]
    by_table = {r["table"]: r for r in runs}
    t2 = Path(tmp_path / rehearsal.FOLDER / "runs" / by_table["table2"]["run_id"] / rehearsal_overlay.CONFIG_FILE)
    record = json.loads(t2.read_text())
    assert record["world_size"] == 2 and record["paper_batch"] == 256
    assert record["step_batch"] < 256 and "batch_size" in by_table["table2"]["config"]["markdown"]
    assert by_table["table1"]["lr"] == [0.1, 0.1]  # the paper's lr at epochs 1-2 of 300
    md = (tmp_path / rehearsal.FOLDER / "report.md").read_text()
    assert "REHEARSAL" in md and "GPU-hours" in md

