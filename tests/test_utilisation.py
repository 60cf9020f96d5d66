"""``optnb bench --suite rows`` (``optnb.experiments.utilisation``): every kind of step of the paper
plan, built as its run builds it at the paper's configuration; the utilisation arithmetic on a
fake clock (exact); one real CPU step per family at batch 2; the CLI's errors."""

from __future__ import annotations

import json

import pytest
import torch

from optnb import cli
from optnb.experiments import costs, plans, rehearsal_sizing
from optnb.experiments import utilisation as ut
from optnb.nas import params
from optnb.nas.evaluate import DropPathStep
from optnb.nas.network import drop_path_schedule
from optnb.train.experiment import plan_row

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def runs():
    return ut.paper_runs()


def test_every_kind_of_step_of_the_paper_plan_is_covered(runs):
    """One run per ``rehearsal_sizing.key_of`` of the paper plan's tables: each Table 1/2
    model, the four searches of Table 4 (darts 1st and 2nd order, hb, agd) and both evaluation
    networks."""
    plan = plans.build("paper", ut.TABLES, 1, available=lambda _name: True)
    keys = {rehearsal_sizing.key_of(run) for run in plan.runs}  # every run has a kind of step
    assert set(runs) == keys
    assert {"search:darts:1", "search:darts:2", "search:hb:1", "search:agd:1",
            "evaluate:cifar", "evaluate:imagenet", "train:resnet56", "train:hbnet110",
            "train:resnet50", "train:agdnet121"} <= keys
    assert ut.paper_runs(["train:resnet56"]).keys() == {"train:resnet56"}


def test_an_unknown_kind_names_the_valid_ones():
    with pytest.raises(ut.UtilisationError, match=r"unknown kind of step 'train:resnet9'; valid: .*train:resnet56"):
        ut.paper_runs(["train:resnet9"])


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_utilisation_is_counted_flops_over_median_seconds_times_peak():
    """A fake step that takes 0.2, 0.5, 0.3 s: median 0.3 s; batch 4 of a paper batch 64 whose
    step counts 6.4 TFLOP does 0.4 TFLOP; at a 10 TFLOP/s peak that is 0.4 / (0.3 x 10)."""
    clock, seconds = _Clock(), iter([0.01, 0.01, 0.2, 0.5, 0.3])

    def step(x, y):
        clock.now += next(seconds)

    timed = ut.Timed("train:x", "cifar", step, (torch.zeros(4, 3, 2, 2), torch.zeros(4)), 64, 2,
                     6_400_000_000_000)
    row = ut.measure(timed, CPU, warmup=2, steps=3, peak_tflops=10.0, clock=clock)
    assert row["step_s"] == pytest.approx(0.3, abs=1e-12)
    assert (row["step_s_min"], row["step_s_max"]) == pytest.approx((0.2, 0.5), abs=1e-12)
    assert row["flops_per_step"] == pytest.approx(4e11, rel=1e-12)
    assert row["utilisation"] == pytest.approx(0.4 / 3.0, rel=1e-12)
    assert row["achieved_tflops"] == pytest.approx(0.4 / 0.3, rel=1e-12)
    assert row["images_per_s"] == pytest.approx(4 / 0.3, rel=1e-12)
    seconds = iter([0.1])  # the fake step reads `seconds` when called: one more 0.1 s step
    without_peak = ut.measure(timed, CPU, warmup=0, steps=1, peak_tflops=None, clock=clock)
    assert "utilisation" not in without_peak
    assert ut.summary([row, {**row, "utilisation": 0.5}, {"key": "bad", "error": "x"}]) == {
        "cifar": {"measured": 2, "median": pytest.approx((0.4 / 3 + 0.5) / 2), "min": pytest.approx(0.4 / 3),
                  "max": 0.5}}


def _changed(step_fn, params_of, batch):
    before = [p.detach().clone() for p in params_of]
    step_fn(*batch)
    return any(not torch.equal(a, p.detach()) for a, p in zip(before, params_of))


def test_a_cifar_row_is_the_engines_step_with_its_recipe(runs):
    """Table 1's ResNet-56: the recipe's Nesterov SGD (lr, momentum, weight decay), the counted
    FLOPs at the paper's batch, 10 classes; one real step at batch 2 moves the weights."""
    timed = ut.build("train:resnet56", runs["train:resnet56"], CPU, batch=2)
    step = timed.step
    group = step.optimizer.param_groups[0]
    recipe = plan_row("resnet56", "cifar10", True, "paper").recipe
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (
        recipe.lr, recipe.momentum, recipe.nesterov, recipe.weight_decay)
    assert timed.kind == "cifar" and timed.paper_batch == recipe.batch_size and timed.image_size == 32
    assert timed.flops_at_paper_batch == costs.train_step_flops("resnet56", (), 32, recipe.batch_size)
    assert timed.batch[0].shape == (2, 3, 32, 32) and int(timed.batch[1].max()) < 10
    assert _changed(step, list(step.net.parameters()), timed.batch)


def test_an_imagenet_row_runs_at_the_recipes_resolution_with_1000_classes(runs):
    timed = ut.build("train:resnet50", runs["train:resnet50"], CPU, batch=2)
    assert timed.kind == "imagenet" and timed.image_size == 224 and timed.paper_batch == 256
    assert timed.step.net.fc.out_features == 1000


def test_the_evaluation_step_has_the_papers_aux_head_and_drop_path(runs):
    """The CIFAR evaluation (Table 4): DropPathStep with aux weight 0.4, drop path halfway up its
    ramp to 0.2, C = 36, 20 cells, batch 96; one real step at batch 2 moves the weights."""
    timed = ut.build("evaluate:cifar", runs["evaluate:cifar"], CPU, batch=2)
    step = timed.step
    assert isinstance(step, DropPathStep) and timed.kind == "evaluate"
    sizes = params.EVAL_SIZES["paper"]
    assert step.aux_weight == pytest.approx(0.4) and step.drop_path == pytest.approx(0.2)
    assert step.network.drop_path_prob == pytest.approx(
        drop_path_schedule(sizes["epochs"] // 2, sizes["epochs"], 0.2))
    assert step.network.drop_path_prob > 0
    assert timed.paper_batch == 96 and timed.image_size == 32
    assert _changed(step, list(step.network.parameters()), timed.batch)
    transfer = ut.build("evaluate:imagenet", runs["evaluate:imagenet"], CPU, batch=2)
    assert transfer.kind == "transfer" and transfer.image_size == 224
    assert transfer.batch[0].shape == (2, 3, 224, 224)


def test_a_search_step_is_the_bilevel_step_of_its_order(runs):
    """Table 4's second-order DARTS search: the architect of order 2 on the paper's supernet
    (C = 16, 8 cells, batch 64), train and validation batches (no step is run: seconds on a CPU)."""
    timed = ut.build("search:darts:2", runs["search:darts:2"], CPU, batch=2)
    bilevel = timed.step.__self__
    assert bilevel.architect.order == 2 and timed.kind == "search"
    assert bilevel.weights.forward_kwargs == {"detach_arch": True}
    assert bilevel.model.C == 16 and len(bilevel.model.cells) == 8
    assert len(timed.batch) == 4 and timed.paper_batch == 64
    assert timed.flops_at_paper_batch == costs.search_step_flops("darts", 2, 1, 16, 8, 64)


def test_the_cli_measures_and_writes_the_report(tmp_path, capsys):
    """One real measurement on the CPU (ResNet-56, batch 2, one step): both files, the table row,
    and no utilisation without a peak (a CPU has none in the table)."""
    assert cli.main(["bench", "--suite", "rows", "--device", "cpu", "--only", "train:resnet56",
                     "--batch", "2", "--steps", "1", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "rows-latest.json").read_text())
    (row,) = report["rows"]
    assert row["key"] == "train:resnet56" and row["batch"] == 2 and row["step_s"] > 0
    assert "utilisation" not in row and report["kinds"] == {}
    assert "| train:resnet56 | 2 | 32 |" in (tmp_path / "rows-latest.md").read_text()
    assert cli.main(["bench", "--suite", "rows", "--device", "cpu", "--only", "train:resnet56",
                     "--batch", "2", "--steps", "1", "--peak-tflops", "1", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "rows-latest.json").read_text())
    assert report["kinds"]["cifar"]["measured"] == 1 and 0 < report["rows"][0]["utilisation"] < 1


@pytest.mark.parametrize("argv, needle", [
    (["--suite", "rows", "--only", "train:resnet9"], "unknown kind of step 'train:resnet9'; valid:"),
    (["--suite", "rows", "--batch", "1"], "--batch 1: --suite rows needs a batch of at least 2"),
    (["--suite", "models", "--only", "train:resnet56"], "--only: use with --suite rows"),
    (["--suite", "nas", "--steps", "3"], "--steps: use with --suite compile or --suite rows"),
])
def test_bad_input_is_one_line(argv, needle, capsys, tmp_path):
    assert cli.main(["bench", *argv, "--device", "cpu", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
