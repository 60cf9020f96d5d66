"""Reproduction plans: contents per profile, the inverse map to table cells, validation, torchrun."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter

import pytest

from optnb.experiments import estimates, paper, plans, reproduce, tables, targets
from optnb.experiments.notebooks import UnknownNotebookError, find_notebook
from optnb.experiments.plans import PlanError


def build(profile, only=None, seeds=1, available=lambda name: True):
    return plans.build(profile, only, seeds, available=available)


def as_sidecar(run: plans.PlannedRun) -> dict:
    return {"notebook": run.notebook, "run_id": run.run_id, "parameters": dict(run.parameters)}


def test_smoke_plan_is_the_representative_subset():
    plan = build("smoke", seeds=5)  # smoke always uses one seed
    assert plan.seeds == (0,)
    by_nb = Counter(r.notebook for r in plan.runs)
    # searches: the 4 Table 4 rows with seed 0, and seed 1 for notebook 08b's stability study
    assert by_nb == {**{nb: 1 for nb in plans.NOTEBOOKS_SUITE}, plans.NB_CIFAR: 4,
                     plans.NB_IMAGENET: 2, plans.NB_SEARCH: 8, plans.NB_EVALUATE: 5,
                     "08b_search_stability": 1}
    cells = {(r.target.table, r.target.row, r.target.column, r.target.role)
             for r in plan.runs if r.target}
    assert {(t, row) for t, row, _, _ in cells} == {
        ("table1", m) for m in ("resnet56", "hbnet56", "densenet40", "agdnet40")
    } | {("table2", "resnet34"), ("table2", "hbnet34")} | {
        ("table4", r) for r in ("darts_1st", "hb", "hb_init", "agd")} | {("table5", "agd")}
    for run in plan.runs:
        assert run.parameters["PROFILE"] == "smoke"
        if run.notebook in (plans.NB_CIFAR, plans.NB_SEARCH):
            assert run.parameters["DATASET"] == "auto"  # resolves to embedded in smoke
    assert len({r.run_id for r in plan.runs}) == len(plan.runs)


def test_transfer_reuses_the_table4_search_instead_of_repeating_it():
    plan = build("smoke", only="table4,table5")
    searches = [r for r in plan.runs if r.notebook == plans.NB_SEARCH]
    transfer = [r for r in plan.runs if r.target and r.target.role == "transfer"]
    assert len(searches) == 4 and len(transfer) == 1
    agd = [s for s in searches if s.target.row == "agd"][0]
    assert transfer[0].needs == (agd.run_id,)
    assert transfer[0].parameters["SEARCH_RUN"] == agd.run_id


def test_quick_plan_has_every_row_and_seed():
    plan = build("quick", only="table1,table2,table4,table5", seeds=3)
    by_nb = Counter(r.notebook for r in plan.runs)
    assert by_nb[plans.NB_CIFAR] == 8 * 4 * 3
    assert by_nb[plans.NB_IMAGENET] == 8 * 3
    assert by_nb[plans.NB_SEARCH] == 5 * 3
    assert by_nb[plans.NB_EVALUATE] == 5 * 3 + 2 * 3
    t1 = {(r.target.row, r.target.column) for r in plan.runs if r.notebook == plans.NB_CIFAR}
    assert t1 == {(m.key, c) for m in paper.table("table1").reproducible_rows
                  for c in ("cifar10", "cifar100", "cifar10+", "cifar100+")}
    aug = {(r.parameters["DATASET"], r.parameters["AUGMENT"]) for r in plan.runs
           if r.notebook == plans.NB_CIFAR}
    assert aug == {("cifar10", False), ("cifar10", True), ("cifar100", False), ("cifar100", True)}
    orders = {r.target.row: r.parameters["ORDER"] for r in plan.runs
              if r.notebook == plans.NB_SEARCH}
    assert orders == {"darts_1st": 1, "darts_2nd": 2, "hb": 1, "hb_init": 1, "agd": 1}
    assert not plan.notes


def test_missing_datasets_fall_back_to_embedded_loudly():
    plan = build("quick", only="table1,table2", seeds=1, available=lambda name: False)
    assert any("cifar10 is NOT present" in n for n in plan.notes)
    assert any("imagenet is NOT present" in n for n in plan.notes)
    datasets = {r.parameters["DATASET"] for r in plan.runs}
    assert datasets == {"embedded"}
    cols = {r.target.column for r in plan.runs if r.notebook == plans.NB_CIFAR}
    assert cols == {"cifar10", "cifar10+"}  # no duplicate stand-ins for the CIFAR-100 columns


@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_every_planned_run_maps_back_to_its_cell(profile):
    plan = build(profile, seeds=2)
    sidecars = {r.run_id: as_sidecar(r) for r in plan.runs}
    for run in plan.runs:
        assert targets.target_of(as_sidecar(run), sidecars.get) == run.target, run.run_id


def test_stages_put_evaluations_after_their_searches():
    plan = build("quick", only="table4", seeds=2)
    first, second = plan.stages()
    first_ids = {r.run_id for r in first}
    assert all(r.notebook == plans.NB_SEARCH for r in first)
    assert all(r.notebook == plans.NB_EVALUATE and set(r.needs) <= first_ids for r in second)


def test_dry_run_description_and_estimates():
    plan = build("smoke")
    text = plan.describe(jobs=2)
    assert text.splitlines()[0].startswith("plan: profile=smoke seeds=[0]")
    assert "stage 1: 6 run(s)" in text and "table5/agd" in text  # 5 evaluations and notebook 08b
    assert "estimate: ~" in text and "2-core CPU" in text
    one, two = plan.estimate_s(jobs=1), plan.estimate_s(jobs=2)
    assert two < one < sum(r.estimate_s for r in plan.runs) + 1  # stages bound the parallelism
    assert two >= max(r.estimate_s for r in plan.runs)
    # Table 2 with 3 seeds, costed by optnb.experiments.costs: days of GPU time, said plainly
    paper_plan = build("paper", only="table2", seeds=3, available=lambda name: True)
    assert paper_plan.estimate_s(jobs=1) == pytest.approx(sum(r.estimate_s for r in paper_plan.runs))
    assert paper_plan.estimate_s(jobs=1) > 3 * 86400
    assert estimates.format_duration(paper_plan.estimate_s(1)).endswith("d")


def test_bad_input_raises_clear_errors():
    with pytest.raises(PlanError, match="unknown --only entry 'tabel1'; valid: all, notebooks"):
        plans.parse_only("table1,tabel1")
    with pytest.raises(PlanError, match="unknown profile 'auto' for a plan; valid: smoke"):
        plans.build("auto")
    with pytest.raises(PlanError, match="seeds must be"):
        build("quick", seeds=0)
    assert plans.parse_only("all") == plans.SUITES
    assert plans.parse_only(" Table4 ,table1") == ("table1", "table4")


def test_search_rows_are_inverse_of_settings():
    for row, (space, init, order) in targets.SEARCH_ROWS.items():
        assert targets.search_row(space, init, order) == row
        assert targets.search_row(space, init, str(order)) == row
    assert targets.search_row("hb", "hb", 2) is None


def _suite_notebooks_present(stems) -> bool:
    try:
        for stem in stems:
            find_notebook(stem)
    except UnknownNotebookError:
        return False
    return True


@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_plans_validate_against_the_real_notebooks(profile):
    """Keeps the plans in sync with the notebooks' parameter cells and specs."""
    from optnb.experiments.runner import validate_run

    plan = build(profile, only="table1,table2,table4,table5", seeds=1)
    stems = sorted({r.notebook for r in plan.runs})
    if not _suite_notebooks_present(stems):
        pytest.skip(f"not all of {stems} are in notebooks/ yet")
    for run in plan.runs:
        validate_run(run.to_run())


def test_torchrun_command_for_a_plan_row(tmp_path):
    run = next(r for r in build("quick", only="table1").runs if r.target.column == "cifar100")
    cmd = plans.torchrun_command(run, 4, tmp_path)
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert cmd[5:8] == ["-m", "optnb", "train"]
    assert ["--model", run.target.row] == cmd[8:10] and "--no-augment" in cmd
    assert cmd[cmd.index("--run-id") + 1] == run.run_id
    assert "--resume" in plans.torchrun_command(run, 4, tmp_path, resume=True)
    search = next(r for r in build("quick", only="table4").runs)
    with pytest.raises(PlanError, match="only Table 1/2 runs"):
        plans.torchrun_command(search, 2, tmp_path)


@pytest.mark.distributed
def test_a_table_row_runs_under_torchrun_with_two_gloo_processes(tmp_path, monkeypatch):
    """The smoke plan's ResNet-56 row, launched with torchrun (2 CPU processes, gloo), lands in
    the run folder the plan names and joins Table 1 like a notebook run."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    run = build("smoke", only="table1").runs[0]
    assert (run.target.row, run.target.column) == ("resnet56", "cifar10+")
    result = reproduce.run_torchrun(run, 2, tmp_path)
    assert result.ok, result.error
    sidecar = json.loads((tmp_path / "runs" / run.run_id / "result.json").read_text())
    written = {k: v["value"] for k, v in sidecar["results"].items()}
    assert written["world_size"] == 2 and sidecar["profile"] == "smoke"
    assert sidecar["status"] == "complete" and sidecar["notebook"] == "06_train_cifar"

    def no_sizes(*args):
        raise LookupError("not needed here")

    report = tables.build(tmp_path, tables="table1", size_fn=no_sizes)
    [line] = [x for x in report.lines["table1"] if x.n]
    assert (line.row, line.column, line.n) == ("resnet56", "cifar10+", 1)
    assert line.device == "cpu x2 (torchrun)" and line.status == "SMOKE, EMBEDDED DATA"
    assert line.mean == pytest.approx(written["test_error"])
    again = reproduce.run_torchrun(run, 2, tmp_path)  # complete: not repeated
    assert again.skipped and again.ok


def test_torchrun_failure_is_reported(tmp_path, monkeypatch):
    run = build("smoke", only="table1").runs[0]
    bad = plans.PlannedRun(run.notebook, {**run.parameters, "MODEL": "resnet57"}, "bad", "table1")

    def fake_run(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 2, "", "optnb train: unknown model 'resnet57'")

    monkeypatch.setattr(subprocess, "run", fake_run)
    result = reproduce.run_torchrun(bad, 2, tmp_path)
    assert not result.ok and "unknown model 'resnet57'" in result.error
    assert "exited with 2" in result.error
    assert os.fspath(tmp_path) in " ".join(plans.torchrun_command(bad, 2, tmp_path))


def test_stages_follow_chains_and_reject_cycles():
    def run(run_id, *needs):
        return plans.PlannedRun("nb", {}, run_id, "plan", needs=needs)

    plan = plans.Plan("smoke", (0,), ("plan",), [run("c", "b"), run("a"), run("b", "a"), run("d")])
    assert [[r.run_id for r in s] for s in plan.stages()] == [["a", "d"], ["b"], ["c"]]
    loop = plans.Plan("smoke", (0,), ("plan",), [run("x", "y"), run("y", "x")])
    with pytest.raises(PlanError, match="cycle"):
        loop.stages()


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "cannot read plan file"),
    ('{"profile": "fast", "runs": []}', "'profile' must be one of smoke, quick, paper"),
    ('{"runs": [{"parameters": {}}]}', "run 0 is malformed"),
    ('{"runs": [{"notebook": "00_tour", "needs": [3]}]}', "run 0 is malformed"),
    ('{"runs": []}', "has no runs"),
])
def test_malformed_plan_files_are_rejected(tmp_path, content, message):
    path = tmp_path / "plan.json"
    path.write_text(content)
    with pytest.raises(PlanError, match=message):
        plans.load_plan(path, "smoke")
