"""Notebook 10 (``10_beyond_the_paper_design``): its parameter spec, sizes and training study.

The study trains a few CIFAR rows side by side on one recipe, each through :func:`train_row` (the
one loop) in its own sub-folder of the notebook's run folder, and returns one row of results per
model with its provenance. Its main use is the AGDNet separation experiment: DenseNet, DenseNet
started at AGDNet's effective BN gamma (``norm_init="agd"``) and AGDNet, same seed, same data
order; the difference between the first two is AGDNet's initialisation, between the last two its
training dynamics (``optnb.models.special_cases.densenet_twin`` shows there is nothing else).

``optnb.experiments.profiles.NOTEBOOK_SPECS["10_beyond_the_paper_design"]`` points at :data:`NB10`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optnb.specs import PROFILES, Param, boolean, number
from optnb.train.callbacks import Callback
from optnb.train.experiment import plan_row, train_row

__all__ = ["NB10", "NB10_SIZES", "SEPARATION", "StudyRow", "nb10_sizes", "train_side_by_side"]

NB10: dict[str, Param] = {
    "BETA": number(0.05, 0.99, help="HBNet momentum beta of (10) for the checks and the reversible "
                                    "net (> 0: its inverse divides by beta)"),
    "TRAIN": boolean(help="train the AGDNet separation study (False: only the checks, no training)"),
}


@dataclass(frozen=True)
class StudyRow:
    """One model of a study: a label, the registry name and its options."""

    label: str
    model: str
    options: Mapping[str, Any] = field(default_factory=dict)


#: DenseNet / DenseNet with AGDNet's initial gamma / AGDNet (the Table 1 L = 40 models; the smoke
#: profile trains their shallow stand-ins, ``optnb.train.experiment.tiny_model``)
SEPARATION: tuple[StudyRow, ...] = (
    StudyRow("DenseNet", "densenet40"),
    StudyRow("DenseNet, AGDNet's init", "densenet40", {"norm_init": "agd"}),
    StudyRow("AGDNet", "agdnet40"),
)

#: blocks per stage of the memory-versus-depth measurement and the float32 gradient check, per
#: profile (the smoke sizes run in seconds on a 2-core CPU)
NB10_SIZES: dict[str, dict[str, Any]] = {
    "smoke": {"memory_blocks": (4, 8, 16, 32), "memory_batch": 4, "grad_blocks": (4, 8, 12)},
    "quick": {"memory_blocks": (9, 18, 36, 72), "memory_batch": 8, "grad_blocks": (3, 9, 18, 36)},
    "paper": {"memory_blocks": (9, 18, 36, 72, 144), "memory_batch": 8,
              "grad_blocks": (3, 9, 18, 36, 72)},
}


def nb10_sizes(profile: str) -> dict[str, Any]:
    """The sizes of notebook 10 for ``profile`` (``smoke`` | ``quick`` | ``paper``)."""
    if profile not in NB10_SIZES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    return dict(NB10_SIZES[profile])


def train_side_by_side(
    rows: Sequence[StudyRow],
    dataset: str,
    profile: str,
    seed: int,
    device: Any,
    run_dir: str | Path,
    callbacks: Sequence[Callback] = (),
    augment: bool = True,
) -> list[dict[str, Any]]:
    """Train every row with the Table 1 recipe of ``profile`` (same seed, same data order), each
    in ``run_dir/study-<k>``; a rerun resumes or only re-evaluates. One result dict per row."""
    out = []
    for k, row in enumerate(rows):
        plan = plan_row(row.model, dataset, augment=augment, profile=profile, seed=seed,
                        model_options=dict(row.options))
        result = train_row(plan, device=device, run_dir=Path(run_dir) / f"study-{k}",
                           callbacks=callbacks)
        final = result.fit.final
        out.append({
            "label": row.label, "model": plan.model, "trained": plan.trained_model,
            "options": dict(row.options), "test_error": final.get("test_error"),
            "params": result.fit.params, "epochs": result.fit.epochs_run,
            "train_time_s": round(result.fit.train_time_s, 2), "profile": profile,
            "dataset": dataset, "device": result.device, "seed": seed,
        })
    return out
