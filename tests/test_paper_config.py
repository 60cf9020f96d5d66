"""optnb.experiments.paper_config: each run's configuration beside the paper's settings (issue 11)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from optnb.experiments import paper, paper_config, targets
from optnb.experiments.paper_config import (
    DOCUMENTED_DEVIATIONS,
    PHASES,
    PaperConfigError,
    check,
    configuration_for,
    describe_evaluation,
    describe_row,
    describe_search,
    paper_settings,
)
from optnb.nas.evaluate import EvalConfig
from optnb.nas.params import search_config
from optnb.nas.search import SearchConfig
from optnb.train.experiment import plan_row


def _paper_rows() -> list[tuple[str, str, str, str | None]]:
    out = [("table1", r.key, "train", c) for r in paper.table("table1").reproducible_rows
           for c in paper.table("table1").column_keys("error")]
    out += [("table2", r.key, "train", None) for r in paper.table("table2").reproducible_rows]
    out += [("table4", r.key, role, None) for r in paper.table("table4").reproducible_rows
            for role in ("search", "evaluate")]
    out += [("table5", r.key, "transfer", None) for r in paper.table("table5").reproducible_rows]
    out += [("table5", r, "search", None) for r, (source, _) in targets.TRANSFER_ROWS.items() if source == "search"]
    return out


def _documented_reasons(phase: str) -> list[str]:
    return [d.reason for d in DOCUMENTED_DEVIATIONS[phase]]


def test_every_paper_row_matches_the_paper_at_profile_paper():
    rows = _paper_rows()
    assert len(rows) == 8 * 4 + 8 + 5 * 2 + 2 + 1
    for table, row, role, column in rows:
        phase, actual = configuration_for(table, row, role, column)
        result = check(phase, actual)
        assert result.ok, f"{table} {row} {role} {column}:\n{result.to_markdown()}"
        assert len(result.rows) == len(paper_settings(phase, result.row, result.column))
        for r in result.rows:  # whatever differs says which documented reason allows it
            assert r.status == "same" or any(reason in r.status for reason in _documented_reasons(phase)), r


def test_the_known_deviations_are_shown_with_their_reasons():
    _, agd = configuration_for("table4", "agd", "search")
    row = {r.name: r for r in check("search", agd).rows}["arch_init"]
    assert (row.paper, row.actual) == ("zeros", "random")
    assert row.status.startswith("differs (documented: ") and "1e-3 * randn" in row.status
    _, resnet = configuration_for("table1", "resnet56", "train", "cifar100")
    dropout = {r.name: r for r in check("train_cifar", resnet).rows}["dropout"]
    assert (dropout.paper, dropout.actual) == (0.2, 0.0) and "no dropout layers" in dropout.status
    _, densenet = configuration_for("table1", "densenet40", "train", "cifar100")
    assert {r.name: r for r in check("train_cifar", densenet).rows}["dropout"].actual == 0.2


def test_drop_path_03_is_caught_naming_02_and_03():
    result = check("evaluate", describe_evaluation(replace(EvalConfig(), drop_path=0.3), "cifar10", 32))
    assert not result.ok
    failed = {r.name: r for r in result.failures}
    assert set(failed) == {"drop_path", "drop_path_at"}
    assert (failed["drop_path"].paper, failed["drop_path"].actual, failed["drop_path"].status) == (0.2, 0.3, "DIFFERS")
    assert "| drop_path | 0.2 | 0.3 | DIFFERS |" in result.to_markdown()


def test_a_deviation_passed_in_passes_and_shows_its_reason():
    actual = describe_evaluation(replace(EvalConfig(), drop_path=0.3), "cifar10", 32)
    reason = "ablation of the path dropout"
    result = check("evaluate", actual, {"drop_path": reason, "drop_path_at": reason})
    assert result.ok and not result.failures
    assert {r.name: r.status for r in result.rows}["drop_path"] == f"differs (documented: {reason})"
    assert reason in result.to_markdown() and reason in json.dumps(result.to_dict())


def test_a_changed_batch_size_of_a_table1_row_is_caught():
    plan = plan_row("resnet56", "cifar10", augment=True, profile="paper", batch_size=128)
    result = check("train_cifar", describe_row(plan))
    failed = {r.name: r for r in result.failures}
    assert (failed["batch_size"].paper, failed["batch_size"].actual) == (64, 128)
    assert failed["lr"].actual == pytest.approx(0.2)  # the linear scaling rule follows the batch
    assert "lr_at" in failed
    shrunk = check("train_cifar", describe_row(plan),
                   {"batch_size": "rehearsal", "lr": "rehearsal", "lr_at": "rehearsal"})
    assert shrunk.ok


def test_smoke_profile_and_changed_schedules_are_caught():
    smoke = check("train_cifar", describe_row(plan_row("hbnet110", "cifar10", augment=True, profile="smoke")))
    failed = {r.name: (r.paper, r.actual) for r in smoke.failures}
    assert failed["depth"] == (110, 20) and failed["n"] == (18, 3) and failed["epochs"] == (300, 2)
    plan = plan_row("densenet40", "cifar10", augment=True, profile="paper")
    plan.recipe = plan.recipe.replace(milestones=(0.5, 0.8))
    failed = {r.name: r for r in check("train_cifar", describe_row(plan)).failures}
    assert set(failed) == {"lr_milestones", "lr_at"} and failed["lr_milestones"].actual == (150, 240)
    compat = describe_search(replace(SearchConfig(), darts_compat=True), "cifar10", 32, "darts_1st")
    assert {r.name for r in check("search", compat).failures} == {"lr_min", "lr_at"}


def test_search_settings_per_row_and_value_specific_deviations():
    _, hb = configuration_for("table4", "hb", "search")
    assert {r.name for r in check("search", {**hb, "order": 2}).failures} == {"order"}
    cfg = SearchConfig(space="hb", init="hb", hb_init_logit=3.0)
    result = check("search", describe_search(cfg, "cifar10", 32))  # row from (space, init, order)
    assert result.row == "hb_init" and [r.name for r in result.failures] == ["hb_init_weight"]
    pooled = describe_search(SearchConfig(space="agd", derive_rule="darts"), "cifar10", 32)
    assert pooled["derived_ops_per_node"] == 2
    assert describe_search(SearchConfig(space="hb", derive_rule="pooled"), "cifar10", 32)["derived_ops_per_node"] == 3


def test_tolerance_missing_settings_and_json():
    _, actual = configuration_for("table5", "darts_2nd", "transfer")
    assert check("transfer", {**actual, "lr": 0.1 * (1 + 1e-12)}).ok
    assert not check("transfer", {**actual, "lr": 0.1 * (1 + 1e-8)}).ok
    assert not check("transfer", {**actual, "auxiliary": 1}).ok  # a bool is not an int
    missing = check("transfer", {k: v for k, v in actual.items() if k != "grad_clip"})
    assert [(r.name, r.status) for r in missing.failures] == [("grad_clip", "MISSING")]
    data = json.loads(json.dumps(missing.to_dict()))
    assert data["ok"] is False and data["phase"] == "transfer"
    assert {s["name"]: s["status"] for s in data["settings"]}["grad_clip"] == "MISSING"


def test_markdown_has_one_line_per_setting():
    phase, actual = configuration_for("table2", "hbnet50", "train")
    result = check(phase, actual)
    table = [line for line in result.to_markdown().splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(paper_settings(phase, "hbnet50"))  # header + one per setting
    assert [line.split(" | ")[0][2:] for line in table[1:]] == [r.name for r in result.rows]


def test_bad_input_is_one_line_naming_the_valid_choices():
    with pytest.raises(PaperConfigError) as err:
        check("train", {})
    assert "\n" not in str(err.value) and all(p in str(err.value) for p in PHASES)
    with pytest.raises(PaperConfigError, match="valid rows: darts_1st"):
        check("search", {"row": "nope"})
    with pytest.raises(PaperConfigError, match="names no paper setting"):
        check("evaluate", {}, {"drop_pth": "typo"})
    with pytest.raises(PaperConfigError, match="valid rows: resnet56"):
        configuration_for("table1", "resnet20", "train")
    with pytest.raises(PaperConfigError, match="valid: table1/train"):
        configuration_for("table3", "x", "train")
    with pytest.raises(PaperConfigError, match="has no search"):
        configuration_for("table5", "darts_2nd", "search")


def test_the_notebook_resolution_is_used():
    """configuration_for takes the 08 notebook's own defaults (HB_INIT_LOGIT, DERIVE, ...) through
    ``search_config``, as a real run does."""
    _, hb_init = configuration_for("table4", "hb_init", "search")
    cfg = paper_config._config("08_nas_search", {"PROFILE": "paper", "SPACE": "hb", "INIT": "hb",
                                                  "ORDER": 1, "DATASET": "cifar10", "SEED": 0})
    assert hb_init == describe_search(search_config(cfg), "cifar10", 32, "hb_init")
