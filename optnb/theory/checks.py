"""Readable numerical checks for notebooks: a claim, its residual, and a clear failure message."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CheckFailed", "check_close"]


class CheckFailed(AssertionError):
    """A numerical claim did not hold within its stated tolerance."""


def _np(a: Any) -> np.ndarray:
    return np.asarray(a.detach().cpu() if hasattr(a, "detach") else a, dtype=np.float64)


def check_close(actual: Any, expected: Any, atol: float = 1e-10, rtol: float = 0.0,
                name: str = "check") -> float:
    """Assert ``|actual - expected| <= atol + rtol * |expected|`` element-wise; return the largest
    absolute residual so the caller can record it.

    Raises :class:`CheckFailed` with a one-line message naming the claim, the residual and the
    tolerance. Shapes must match exactly (no broadcasting surprises).
    """
    a, b = _np(actual), _np(expected)
    if a.shape != b.shape:
        raise CheckFailed(f"{name}: shapes differ, {a.shape} vs {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise CheckFailed(f"{name}: non-finite values")
    diff = np.abs(a - b)
    residual = float(diff.max()) if diff.size else 0.0
    bound = atol + rtol * np.abs(b)
    if np.any(diff > bound):
        raise CheckFailed(f"{name}: max |actual - expected| = {residual:.3e} exceeds tolerance "
                          f"(atol={atol:g}, rtol={rtol:g})")
    return residual
