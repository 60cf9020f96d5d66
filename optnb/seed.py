"""Seeding and device selection shared by notebooks, the engine and the CLI."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device).

    ``deterministic`` also asks torch for deterministic kernels (and sets the cuBLAS workspace
    variable it needs); it is slower and meant for exactness tests, not speed runs.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.benchmark = False
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; ``cpu``; ``cuda``; ``cuda:N``."""
    if not isinstance(name, str):
        raise ValueError(f"device must be a string, one of {DEVICE_CHOICES}; got {name!r}")
    key = name.strip().lower()
    if key == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if key == "cpu":
        return torch.device("cpu")
    if key == "cuda" or (key.startswith("cuda:") and key[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but no CUDA GPU is visible; use 'cpu' or 'auto'")
        index = int(key[5:]) if ":" in key else 0
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device {name!r} does not exist: {torch.cuda.device_count()} GPU(s) visible"
            )
        return torch.device("cuda", index)
    raise ValueError(f"unknown device {name!r}; valid choices: {', '.join(DEVICE_CHOICES)}")
