"""The cost model of ``optnb reproduce --dry-run`` (``optnb.experiments.costs``): counted FLOPs per
training step, steps, seconds on a named GPU, per-run and per-table GPU-hours."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from optnb import cli
from optnb.experiments import costs, estimates, plans
from optnb.experiments.targets import Target
from optnb.models import build
from optnb.nas.search import SearchConfig


class SmallNet(nn.Module):
    """conv 3->8 (3x3), depthwise 8->8 (3x3, groups 8), pointwise 8->4, linear 4*S*S -> 10."""

    def __init__(self, side: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.pointwise = nn.Conv2d(8, 4, 1, bias=False)
        self.fc = nn.Linear(4 * side * side, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pointwise(self.depthwise(torch.relu(self.conv(x))))
        return self.fc(x.flatten(1))


def test_small_conv_net_matches_the_hand_count():
    """2 FLOPs per multiply-add. Backward: every layer's weight gradient costs its forward, and its
    input gradient too, except the first convolution's (the images need none). Counted in float64
    on the CPU, exact integers; the depthwise weight gradient is per group (torch 2.14's own
    formula counts it 8 times over, which ``costs`` replaces)."""
    n, s = 3, 6
    net = SmallNet(s).double()
    conv = 2 * n * s * s * 8 * 3 * 9
    depthwise = 2 * n * s * s * 8 * 1 * 9
    pointwise = 2 * n * s * s * 4 * 8
    linear = 2 * n * (4 * s * s) * 10
    hand = (conv + depthwise + pointwise + linear) + (conv + 2 * (depthwise + pointwise + linear))
    assert costs.model_step_flops(net, n, s) == hand
    with FlopCounterMode(display=False) as plain:  # torch's formulas, for comparison
        torch.nn.functional.cross_entropy(net(torch.zeros(n, 3, s, s, dtype=torch.float64)),
                                          torch.zeros(n, dtype=torch.long)).backward()
    assert plain.get_total_flops() >= hand


def test_backward_is_about_twice_the_forward_and_meta_counts_like_real_tensors():
    """ResNet-20: backward / forward = 2 within 2 %; exactly, backward = 2 x forward less the stem
    convolution's input gradient (the images need none). The batch-64 count on ``meta`` equals
    32 x a real batch-2 count on the CPU."""
    with torch.device("meta"):
        net = build("resnet20")
    step = costs.model_step_flops(net, 64, 32)
    with FlopCounterMode(display=False) as counter:
        net(torch.zeros(64, 3, 32, 32, device="meta"))
    forward = counter.get_total_flops()
    assert (step - forward) / forward == pytest.approx(2.0, rel=0.02)
    stem = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    assert stem.stride == (1, 1) and stem.in_channels == 3
    assert step - forward == 2 * forward - 2 * 64 * 32 * 32 * stem.weight.numel()
    real = costs.model_step_flops(build("resnet20"), 2, 32)
    assert 32 * real == step


def test_second_order_search_step_costs_more_than_first_order():
    """A tiny supernet (C = 4, 3 cells of 2 nodes, batch 4, real CPU tensors): the unrolled step
    adds a virtual step, the unrolled validation pass and two finite-difference passes to the
    first-order step (the weight step and one architecture pass), so 2 < second / first < 3.5."""
    tiny = SearchConfig(space="darts", C=4, layers=3, steps=2, batch_size=4)
    first = costs.supernet_step_flops(tiny, device="cpu")
    second = costs.supernet_step_flops(replace(tiny, order=2), device="cpu")
    assert first > 0 and 2.0 < second / first < 3.5


def test_estimate_arithmetic_and_steps():
    assert costs.steps_of(300, 50_000, 64) == 300 * 781  # the loaders drop the last partial batch
    seconds = costs.estimate(2e12, 1000, "H100", 0.5)
    assert seconds == pytest.approx(2e12 * 1000 / (0.5 * 989e12), rel=1e-12)
    assert costs.estimate(2e12, 1000, "A100", 0.5) / seconds == pytest.approx(989 / 312, rel=1e-12)
    with pytest.raises(costs.CostError, match=r"utilisation must be in \(0, 1\], got 0"):
        costs.estimate(1.0, 1, "H200", 0.0)
    cost = costs.row_cost(Target("table1", "resnet56", "cifar10+"), "paper", "H200")
    assert cost.kind == "cifar" and cost.steps == 300 * (50_000 // 64)
    assert cost.utilisation == costs.UTILISATION["cifar"][0]
    assert cost.seconds == pytest.approx(cost.flops_per_step * cost.steps
                                         / (cost.utilisation * 989e12), rel=1e-12)
    assert costs.row_steps("table4", "darts_1st", "search") == 50 * (25_000 // 64)


def test_gpu_names_are_checked():
    assert costs.resolve_gpu("h200") == costs.Gpu("H200", 989.0)
    assert costs.resolve_gpu(None).name == costs.DEFAULT_GPU
    with pytest.raises(costs.CostError, match=r"^unknown --gpu 'B300'; valid: H200, H100, A100, current$"):
        costs.resolve_gpu("B300")
    if not torch.cuda.is_available():
        with pytest.raises(costs.CostError, match="--gpu current needs a CUDA device"):
            costs.resolve_gpu("current")


def test_per_table_totals_sum_the_runs():
    """The per-table lines of the dry run add up its runs (a plan as ``--plan`` reads it, so the
    runs keep their own estimates and nothing is counted)."""
    hours = {("table1", "resnet56"): 1.25, ("table1", "hbnet56"): 2.5, ("table4", "hb"): 4.0}
    plan = plans.Plan("paper", (0,), ("plan",))
    for (table, row), h in hours.items():
        role = "search" if table == "table4" else "train"
        plan.add(plans.PlannedRun("00_tour", {"ROW": row}, f"{table}-{row}", "plan",
                                  Target(table, row, None, role), estimate_s=3600 * h))
    plan.add(plans.PlannedRun("00_tour", {}, "tour", "notebooks", None, estimate_s=1800))
    totals = estimates.table_hours(plan.runs)
    assert totals == {"table1": (2, 3.75), "table4": (1, 4.0), "notebooks": (1, 0.5)}
    text = plan.describe()
    for table, (count, total) in totals.items():
        assert re.search(rf"^  {table} +{count} run\(s\) +{total:.1f} GPU-h$", text, re.M)
    assert re.search(r"^  total +4 run\(s\) +8.2 GPU-h$", text, re.M)
    assert "1.25 GPU-h" in text and "estimate_s of the plan file" in text


def test_stored_counts_agree_with_a_live_count():
    """``step_flops.json`` is written by the counting code; a cheap entry recounted live agrees."""
    stored = json.loads(costs.STORED.read_text())["flops"]
    with torch.device("meta"):
        net = build("resnet56")
    assert stored["train:resnet56:[]:32:64"] == costs.model_step_flops(net, 64, 32)
    assert {k.split(":")[0] for k in stored} == {"train", "search", "eval"}


def test_reproduce_dry_run_prints_gpu_hours_per_table(capsys, monkeypatch):
    monkeypatch.delenv("OPTNB_PROFILE", raising=False)  # `make test` sets smoke, which would win
    assert cli.main(["reproduce", "--profile", "paper", "--only", "table1", "--dry-run",
                     "--gpu", "H100"]) == 0
    out = capsys.readouterr().out
    assert "cost by table:" in out and re.search(r"^  table1 +\d+ run\(s\) +[\d.]+ GPU-h$", out, re.M)
    assert "one H100 at 989 TFLOP/s" in out and "torch.utils.flop_counter" in out
    line = next(x for x in out.splitlines() if " table1/resnet56/" in x)
    column = line.split(" table1/resnet56/")[1].split()[0]
    cost = costs.row_cost(Target("table1", "resnet56", column), "paper", "H100")
    assert f" {cost.gpu_hours:.2f} GPU-h " in line
    assert cli.main(["reproduce", "--profile", "paper", "--dry-run", "--gpu", "B300"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown --gpu 'B300'; valid: H200, H100, A100, current" in err
