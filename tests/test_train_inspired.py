"""optnb.train.inspired: the GD/HB/AGD-inspired nets trained under one recipe."""

from __future__ import annotations

import math

import pytest
import torch

from optnb.models.inspired import KINDS
from optnb.theory.rates import RATE_KAPPAS
from optnb.train import inspired as ti


@pytest.mark.parametrize("branch", ["mlp", "conv"])
def test_training_learns_a_separable_task(branch):
    """A few steps on an easy synthetic task beat chance for every kind (CPU, seconds)."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (256,), generator=g)
    images = torch.full((256, 3, 4, 4), 60, dtype=torch.uint8)
    images[labels == 1, :, :2] = 200  # top half bright: survives the conv path's random flips
    sizes = ti.NetSizes(branch, 4, 16 if branch == "mlp" else 8, 3, 3, 32, 0.05, 1,
                        cpu_threads=1)
    rows = ti.train_inspired_nets((images[:192], labels[:192]), (images[192:], labels[192:]),
                                  sizes, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert [r["kind"] for r in rows] == list(KINDS)
    for r in rows:
        assert r["test_acc"] > 0.9 and math.isfinite(r["final_loss"])
    summary = ti.summarize(rows)
    assert set(summary) == set(KINDS) and summary["gd"]["seeds"] == 1


def test_profile_sizes_exist():
    assert set(ti.NET_SIZES) == set(RATE_KAPPAS) == {"smoke", "quick", "paper"}
