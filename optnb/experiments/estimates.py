"""Cost of a planned run (seconds), for ``optnb reproduce --dry-run``.

smoke: measured on the shared 2-core CPU machine (a full ``optnb reproduce --profile smoke
--jobs 2``, papermill time plus ~20 s of process start-up per run). quick and paper: the cost
model of ``optnb.experiments.costs`` on one GPU (``--gpu``, default H200): FLOPs of one training
step counted with ``torch.utils.flop_counter`` x the run's steps / (assumed utilisation x the GPU's
dense bf16 peak). Runs that fill no table cell (the tour and theory notebooks, notebook 08b) are
assumed to take a minute.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from optnb.experiments import costs
from optnb.experiments.targets import NB_CIFAR, NB_EVALUATE, NB_IMAGENET, NB_SEARCH, Target

ESTIMATE_BASIS = {
    "smoke": "2-core CPU, smoke sizes, measured",
    "quick": "the quick profile's schedules",
    "paper": "the paper's schedules",
}
_SMOKE_S = {"theory": 45.0, NB_CIFAR: 55.0, NB_IMAGENET: 60.0, NB_SEARCH: 200.0,
            NB_EVALUATE: 80.0}
#: a run that fills no table cell (tour/theory notebooks, 08b's analysis): assumed
_UNTARGETED_S = 60.0
GPU_PROFILES = ("quick", "paper")


def estimate_run_s(profile: str, notebook: str, target: Target | None,
                   gpu: costs.Gpu | str | None = None) -> float:
    """Seconds one run is expected to take (see the module docstring)."""
    if profile == "smoke":
        return _SMOKE_S.get(notebook, _SMOKE_S["theory"])
    if target is None or profile not in GPU_PROFILES:
        return _UNTARGETED_S
    return costs.row_cost(target, profile, gpu).seconds


def basis(profile: str, gpu: costs.Gpu | str | None = None) -> str:
    """How the estimates of ``profile`` were made (one line)."""
    if profile not in GPU_PROFILES:
        return ESTIMATE_BASIS.get(profile, profile)
    return f"{ESTIMATE_BASIS[profile]}: {costs.basis(gpu)}"


class _Run(Protocol):
    suite: str
    target: Target | None
    estimate_s: float


def table_of(run: _Run) -> str:
    """The table a run's cost is added to: its target's table, else its suite."""
    return run.target.table if run.target is not None else run.suite


def table_hours(runs: Iterable[_Run]) -> dict[str, tuple[int, float]]:
    """``table -> (runs, GPU-hours)``, in first-seen order: the sum of the runs' estimates."""
    out: dict[str, tuple[int, float]] = {}
    for run in runs:
        count, hours = out.get(table_of(run), (0, 0.0))
        out[table_of(run)] = (count + 1, hours + run.estimate_s / 3600.0)
    return out


def cost_lines(profile: str, runs: Iterable[_Run], gpu: costs.Gpu | str | None = None) -> list[str]:
    """The dry run's per-table totals (GPU-hours on quick/paper, time on smoke's CPU)."""
    totals = table_hours(runs)
    unit = "GPU-h" if profile in GPU_PROFILES else "h (CPU)"
    lines = ["cost by table:"]
    lines += [f"  {table:<12} {count:>4} run(s) {hours:>10.1f} {unit}"
              for table, (count, hours) in totals.items()]
    lines.append(f"  {'total':<12} {sum(c for c, _ in totals.values()):>4} run(s) "
                 f"{sum(h for _, h in totals.values()):>10.1f} {unit}")
    if profile in GPU_PROFILES and costs.LIVE:
        lines.append(f"  ({len(costs.LIVE)} step FLOP count(s) were counted live: "
                     f"{costs.STORED.name} is stale or lacks them; `python -m "
                     "optnb.experiments.refresh_costs` refreshes it)")
    return lines


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f}min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def run_label(profile: str, seconds: float) -> str:
    """One run's cost in the dry-run listing: GPU-hours on quick/paper, a duration on smoke."""
    return f"{seconds / 3600:.2f} GPU-h" if profile in GPU_PROFILES else f"~{format_duration(seconds)}"
