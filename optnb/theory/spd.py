"""Symmetric positive definite weights: the assumption of Lemma 1, its check and its examples.

Lemma 1 writes ``W = U^2`` with ``U = W^{1/2}`` symmetric and invertible, so that (9) is the
gradient of the cost (8). :func:`check_spd` enforces that assumption and names what is wrong
(:class:`WeightError`); :func:`random_spd` and :func:`spd_2d` build weights that satisfy it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "NotPositiveDefiniteError",
    "NotSymmetricError",
    "WeightError",
    "check_spd",
    "random_spd",
    "spd_2d",
]


class WeightError(ValueError):
    """W does not satisfy Lemma 1's assumption (square, symmetric, positive definite)."""


class NotSymmetricError(WeightError):
    """W is not symmetric, so U = sqrt(W) is not symmetric and (9) is not a gradient."""


class NotPositiveDefiniteError(WeightError):
    """W is not positive definite, so U = sqrt(W) is not real or not invertible."""


def check_spd(W: Any, rtol: float = 1e-10) -> np.ndarray:
    """Return ``W`` as a float64 array, or raise a :class:`WeightError` naming what is wrong."""
    arr = np.asarray(W.detach().cpu() if hasattr(W, "detach") else W, dtype=np.float64)
    if arr.ndim == 0:
        arr = arr.reshape(1, 1)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise WeightError(f"W must be a square matrix (Lemma 1), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise WeightError("W has non-finite entries")
    scale = max(float(np.abs(arr).max()), np.finfo(float).tiny)
    asym = float(np.abs(arr - arr.T).max())
    if asym > rtol * scale:
        raise NotSymmetricError(
            f"W is not symmetric (max |W - W^T| = {asym:.3g}); Lemma 1 needs a symmetric positive "
            "definite W, e.g. (A + A^T)/2 + c I or random_spd(n)")
    lam = np.linalg.eigvalsh(0.5 * (arr + arr.T))
    if lam[0] <= rtol * max(abs(lam[-1]), np.finfo(float).tiny):
        raise NotPositiveDefiniteError(
            f"W is not positive definite (smallest eigenvalue {lam[0]:.3g}); Lemma 1 needs "
            "U = sqrt(W) real and invertible, i.e. all eigenvalues > 0")
    return 0.5 * (arr + arr.T)


def random_spd(n: int, eig_range: tuple[float, float] = (0.1, 1.0),
               rng: np.random.Generator | int | None = 0) -> np.ndarray:
    """A random symmetric positive definite ``n x n`` matrix, eigenvalues uniform in ``eig_range``
    (both ends included when n >= 2) and a Haar-random eigenbasis."""
    lo, hi = eig_range
    if not (0 < lo <= hi):
        raise ValueError(f"eig_range must satisfy 0 < lo <= hi, got {eig_range}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(rng)
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    q = q * np.sign(np.diag(r))
    lam = rng.uniform(lo, hi, size=n)
    if n >= 2:
        lam[0], lam[1] = lo, hi
    W = (q * lam) @ q.T
    return 0.5 * (W + W.T)


def spd_2d(lam1: float, lam2: float, angle_deg: float = 0.0) -> np.ndarray:
    """``R diag(lam1, lam2) R^T`` with R the rotation by ``angle_deg`` (2-D examples, widgets)."""
    a = math.radians(angle_deg)
    R = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    W = (R * np.array([lam1, lam2], dtype=np.float64)) @ R.T
    return 0.5 * (W + W.T)
