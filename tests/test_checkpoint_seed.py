"""Atomic checkpoints, weights-only loading, RNG capture; seeding and device resolution."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from optnb.seed import resolve_device, seed_everything
from optnb.train.checkpoint import CheckpointError, load_checkpoint, rng_state, save_atomic, set_rng_state


def test_save_and_load_round_trip(tmp_path):
    state = {"model": {"w": torch.arange(4.0)}, "epoch": 3, "rng": rng_state()}
    path = save_atomic(state, tmp_path / "ckpt.pt")
    back = load_checkpoint(path)
    assert torch.equal(back["model"]["w"], torch.arange(4.0)) and back["epoch"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_rng_state_restores_every_generator():
    seed_everything(11)
    state = rng_state()
    first = (random.random(), np.random.rand(), torch.rand(2))
    set_rng_state(state)
    again = (random.random(), np.random.rand(), torch.rand(2))
    assert first[0] == again[0] and first[1] == again[1] and torch.equal(first[2], again[2])


def test_corrupt_and_missing_checkpoints_are_clear(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt or not a weights-only"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


class Evil:
    """Any pickled object: weights_only loading must refuse it."""


def test_weights_only_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": Evil()}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_failed_save_keeps_previous_checkpoint(tmp_path):
    path = save_atomic({"epoch": 1}, tmp_path / "c.pt")
    with pytest.raises(Exception):  # noqa: B017 - any pickling error
        save_atomic({"epoch": 2, "bad": lambda: 0}, path)
    assert load_checkpoint(path)["epoch"] == 1


def test_seed_and_device():
    seed_everything(5)
    a = torch.rand(2)
    seed_everything(5)
    assert torch.equal(a, torch.rand(2))
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    with pytest.raises(ValueError, match="non-negative int"):
        seed_everything(-1)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is visible"):
            resolve_device("cuda")


def test_checksum_guards_every_load(tmp_path):
    path = tmp_path / "c.pt"
    torch.save({"epoch": 1}, path)  # not written by save_atomic: nothing vouches for it
    with pytest.raises(CheckpointError, match="no checksum"):
        load_checkpoint(path)
    save_atomic({"w": torch.zeros(3, dtype=torch.bfloat16), "epoch": 1}, path)
    state = torch.load(path, weights_only=True)
    assert state["checksum"].startswith("sha256:") and load_checkpoint(path)["epoch"] == 1
    torch.save({**state, "w": torch.ones(3, dtype=torch.bfloat16)}, path)  # bf16 bytes edited
    with pytest.raises(CheckpointError, match="fails its checksum"):
        load_checkpoint(path)
