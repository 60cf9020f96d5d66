"""Appendix B (reconstructed): "a faster optimizer may imply a better network".

Two halves, both used by notebook 04:

1. **Rates.** GD (1), HB (2) and AGD (3) on quadratics of condition number ``kappa = L / mu``
   (``L = 1``, unit step as in the networks) and on the Lemma 1 cost (8). Theory (Section 3):
   GD needs ``O(kappa log 1/eps)`` iterations, HB and AGD ``O(sqrt(kappa) log 1/eps)``.
   Per-step contraction factors: GD ``1 - mu``; AGD with ``beta = (1 - sqrt mu)/(1 + sqrt mu)``
   ``1 - sqrt mu``; HB with the *unit step of (2)* and ``beta = (1 - sqrt mu)^2``, also
   ``1 - sqrt mu`` (every eigenvalue in ``[mu, 1]`` then gives complex roots of modulus
   ``sqrt(beta)``). The textbook HB tuning (step ``4/(1+sqrt mu)^2``) needs a non-unit step,
   which a layer of (10) does not have; :func:`hb_unit_step_beta` is our choice.
2. **Networks.** Small GD-, HB- and AGD-inspired nets (the Appendix C relaxation: a learnable
   branch ``F_k`` replaces ``Phi(W z) - z``; momentum lives on the identity path) trained under one
   recipe. All three have *identical* parameters; only the skip arithmetic differs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from optnb.theory import algorithms as alg

__all__ = [
    "KINDS",
    "NET_SIZES",
    "InspiredNet",
    "NetSizes",
    "RATE_KAPPAS",
    "convergence_curves",
    "fit_power",
    "hb_unit_step_beta",
    "iterations_to_eps",
    "layer_error_curves",
    "local_curvature",
    "measured_rate",
    "momentum_rate",
    "quadratic_spectrum",
    "rate_table",
    "summarize",
    "theory_rates",
    "train_inspired_nets",
]

METHODS = ("GD", "HB", "AGD")


# --------------------------------------------------------------------------------------------
# 1. rates
# --------------------------------------------------------------------------------------------


def hb_unit_step_beta(mu: float) -> float:
    """Fastest HB momentum for the unit step of (2) on ``mu <= eig <= 1``: ``(1 - sqrt mu)^2``."""
    if not 0.0 < mu <= 1.0:
        raise ValueError(f"need 0 < mu <= 1, got {mu}")
    return float((1.0 - math.sqrt(mu)) ** 2)


def theory_rates(mu: float) -> dict[str, float]:
    """Per-iteration contraction of ``||x_k - x*||`` predicted for ``L = 1``, unit step."""
    return {"GD": 1.0 - mu, "HB": 1.0 - math.sqrt(mu), "AGD": 1.0 - math.sqrt(mu)}


def momentum_rate(method: str, beta: float, eigenvalues: Sequence[float]) -> float:
    """Exact asymptotic contraction of GD / HB / constant-beta AGD (unit step) on a quadratic.

    Per eigenvalue lam the error obeys a 2-term recurrence with characteristic polynomial
    ``r^2 - (1 + beta - lam) r + beta`` (HB, (2)) or ``r^2 - (1 + beta)(1 - lam) r + beta (1 - lam)``
    (AGD, (3)); GD is ``r = 1 - lam``. The rate is the largest root modulus over the spectrum.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    if method == "GD":
        return float(np.max(np.abs(1.0 - lam)))
    if method == "HB":
        b, c = -(1.0 + beta - lam), np.full_like(lam, beta)
    elif method == "AGD":
        b, c = -(1.0 + beta) * (1.0 - lam), beta * (1.0 - lam)
    else:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    disc = (b * b - 4.0 * c).astype(complex)
    roots = np.stack([(-b + np.sqrt(disc)) / 2.0, (-b - np.sqrt(disc)) / 2.0])
    return float(np.abs(roots).max())


def quadratic_spectrum(kappa: float, n: int = 32) -> np.ndarray:
    """Eigenvalues of a diagonal test quadratic: geometric from ``1/kappa`` to ``1``."""
    if kappa < 1.0:
        raise ValueError(f"kappa must be >= 1, got {kappa}")
    return np.geomspace(1.0 / kappa, 1.0, n)


def _methods(grad: Any, x0: Any, num_steps: int, mu: float, hb_beta: float | None,
             agd_beta: float | str | None) -> dict[str, np.ndarray]:
    hb_beta = hb_unit_step_beta(mu) if hb_beta is None else hb_beta
    if agd_beta is None or agd_beta == "strongly_convex":
        betas: Any = alg.strongly_convex_beta(mu)
    elif agd_beta == "nesterov":
        betas = None
    else:
        betas = float(agd_beta)
    return {
        "GD": alg.gradient_descent(grad, x0, num_steps),
        "HB": alg.heavy_ball(grad, x0, num_steps, hb_beta),
        "AGD": alg.nesterov(grad, x0, num_steps, betas).x,
    }


def convergence_curves(eigenvalues: np.ndarray, num_steps: int, hb_beta: float | None = None,
                       agd_beta: float | str | None = None,
                       x0: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Relative distance ``||x_k|| / ||x_0||`` (x* = 0) of GD, HB, AGD on ``f = x^T diag(eig) x/2``.

    ``hb_beta`` defaults to :func:`hb_unit_step_beta`, ``agd_beta`` to the strongly convex value;
    ``agd_beta="nesterov"`` uses the theta schedule of (3).
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    x0 = np.ones_like(lam) if x0 is None else np.asarray(x0, dtype=np.float64)
    xs = _methods(lambda x: lam * x, x0, num_steps, float(lam.min()), hb_beta, agd_beta)
    norm0 = np.linalg.norm(x0)
    return {k: np.linalg.norm(v, axis=-1) / norm0 for k, v in xs.items()}


def iterations_to_eps(errors: np.ndarray, eps: float) -> int | None:
    """First k with ``errors[j] <= eps`` for every ``j >= k`` (None if never)."""
    errors = np.asarray(errors)
    above = np.flatnonzero(errors > eps)
    if above.size == 0:
        return 0
    k = int(above[-1]) + 1
    return k if k < errors.size else None


def measured_rate(errors: np.ndarray, floor: float = 1e-13) -> float:
    """Per-step contraction factor: slope of a least-squares fit of ``log errors`` over the
    second half of the iterations above ``floor`` (transients and round-off excluded)."""
    e = np.asarray(errors, dtype=np.float64)
    idx = np.flatnonzero(e > floor)
    idx = idx[idx.size // 2:]
    if idx.size < 3:
        raise ValueError("too few iterations above the floor to fit a rate; run more steps")
    slope = np.polyfit(idx.astype(float), np.log(e[idx]), 1)[0]
    return float(np.exp(slope))


def fit_power(x: Sequence[float], y: Sequence[float]) -> float:
    """Exponent p of ``y ~ c x^p`` by least squares in log-log."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def rate_table(kappas: Sequence[float], eps: float = 1e-6, n: int = 32) -> list[dict[str, Any]]:
    """For each kappa: iterations to ``eps`` and measured vs predicted rates of GD, HB, AGD."""
    rows = []
    for kappa in kappas:
        lam = quadratic_spectrum(kappa, n)
        mu = float(lam.min())
        steps = int(math.ceil(3.0 * kappa * math.log(1.0 / eps))) + 50
        curves = convergence_curves(lam, steps)
        theory = theory_rates(mu)
        for m in METHODS:
            rows.append({
                "kappa": float(kappa), "method": m,
                "iterations": iterations_to_eps(curves[m], eps),
                "predicted_iterations": math.log(1.0 / eps) / -math.log(theory[m]),
                "rate": measured_rate(curves[m]), "predicted_rate": theory[m],
            })
    return rows


def layer_error_curves(W: Any, activation: str, z0: Any, num_layers: int,
                       beta: float | None = None,
                       agd_beta: float | str | None = None) -> dict[str, np.ndarray]:
    """``||z_k - z*||`` per layer of the networks (7), (10) and (11) for one SPD W (keys ``GD``,
    ``HB``, ``AGD``; ``z_star`` holds the fixed point itself).

    These are GD, HB and AGD on the Lemma 1 cost (8), seen in feature space. ``z*`` is the fixed
    point ``z = Phi(W z)`` (the minimiser of F), found by running HB to round-off. Needs a
    strongly convex f (``lam_max(W) sup Phi' < 1``); ``beta`` defaults to
    :func:`hb_unit_step_beta` of the cost's mu, ``agd_beta`` to the strongly convex value.
    """
    from optnb.theory.activations import cost_constants
    from optnb.theory.equivalence import (
        Lemma1Cost,
        propagate_agd,
        propagate_hb,
        propagate_plain,
    )

    consts = cost_constants(activation, W)
    if not consts.strongly_convex:
        raise ValueError(f"f is not strongly convex for this W and {activation!r} "
                         f"(mu = {consts.mu:.3g}); scale W so that lam_max * sup Phi' < 1")
    mu = consts.mu
    cost = Lemma1Cost(W, activation)
    hb_beta = hb_unit_step_beta(mu) if beta is None else beta
    agd = alg.strongly_convex_beta(mu) if agd_beta in (None, "strongly_convex") else (
        None if agd_beta == "nesterov" else float(agd_beta))
    z0 = np.asarray(z0, dtype=np.float64)
    long = int(60 / math.sqrt(mu)) + 200
    z_star = propagate_hb(cost.layer, z0, long, hb_unit_step_beta(mu))[-1]
    curves = {
        "GD": propagate_plain(cost.layer, z0, num_layers),
        "HB": propagate_hb(cost.layer, z0, num_layers, hb_beta),
        "AGD": propagate_agd(cost.layer, z0, num_layers, agd),
    }
    out = {k: np.linalg.norm(v - z_star, axis=-1) for k, v in curves.items()}
    out["z_star"] = z_star
    return out


def local_curvature(W: Any, activation: str, z: Any) -> tuple[float, float]:
    """Extreme eigenvalues of the Hessian ``I - U diag(Phi'(W z)) U`` of (8) at ``x = U z``.

    At the fixed point this is the *local* (mu, L); the global constants of
    :func:`optnb.theory.activations.cost_constants` are worst cases over all x.
    """
    from optnb.theory.activations import get_activation
    from optnb.theory.equivalence import Lemma1Cost

    cost = Lemma1Cost(W, activation)
    d = get_activation(activation).dphi(cost.W @ np.asarray(z, dtype=np.float64))
    lam = np.linalg.eigvalsh(np.eye(cost.n) - cost.U @ np.diag(d) @ cost.U)
    return float(lam[0]), float(lam[-1])


# --------------------------------------------------------------------------------------------
# 2. networks
# --------------------------------------------------------------------------------------------

KINDS = ("gd", "hb", "agd")


@dataclass(frozen=True)
class NetSizes:
    """Size of the Appendix B network experiment for one profile."""

    branch: str  # "mlp" (flattened, pooled input) or "conv"
    image_size: int  # input is average-pooled to this side length
    width: int
    depth: int
    epochs: int
    batch_size: int
    lr: float
    seeds: int
    max_train: int | None = None
    cpu_threads: int | None = None  # torch threads while training on a CPU (None: leave as is)


#: per-profile sizes (``cfg.profile``). None of them is a setting of the paper, whose Appendix B
#: experiment we do not have; "paper" is simply our largest configuration.
NET_SIZES: dict[str, NetSizes] = {
    # smoke: one thread, because tiny ops on 2 threads of a shared 2-core machine spin-wait
    # (measured: 6 s with 1 thread, 60 s with 2, under a load average of 8)
    "smoke": NetSizes("mlp", 8, 64, 6, 4, 128, 0.1, 1, None, cpu_threads=1),
    "quick": NetSizes("conv", 32, 32, 12, 15, 128, 0.1, 3, None),
    "paper": NetSizes("conv", 32, 64, 18, 60, 128, 0.1, 5, None),
}


#: condition numbers of the iterations-vs-kappa table, per profile.
RATE_KAPPAS: dict[str, tuple[float, ...]] = {
    "smoke": (10.0, 30.0, 100.0, 300.0, 1000.0),
    "quick": (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0),
    "paper": (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0),
}


def _branch(kind: str, width: int) -> nn.Module:
    if kind == "mlp":
        return nn.Sequential(nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, width),
                             nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, width))
    if kind == "conv":
        return nn.Sequential(
            nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1, bias=False))
    raise ValueError(f"unknown branch {kind!r}; valid: mlp, conv")


class InspiredNet(nn.Module):
    """A stack of ``depth`` blocks whose skip arithmetic follows one optimizer.

    * ``gd``  (ResNet, eq. (1) relaxed):  ``z_{k+1} = z_k + F_k(z_k)``
    * ``hb``  (HBNet, eq. (10) relaxed):  ``z_{k+1} = z_k + F_k(z_k) + beta (z_k - z_{k-1})``
    * ``agd`` (eq. (11) relaxed):         ``y_k = z_k + beta_k (z_k - z_{k-1})``,
      ``z_{k+1} = y_k + F_k(y_k)``, with the theta schedule of (3) (or a constant ``beta``)

    ``z_{-1} = z_0``. The three kinds have identical parameters; ``hb`` with ``beta = 0`` and
    ``agd`` with all ``beta_k = 0`` compute exactly the ``gd`` net.
    """

    def __init__(self, kind: str, in_channels: int, num_classes: int, width: int, depth: int,
                 branch: str = "mlp", image_size: int = 8, beta: float = 0.5,
                 agd_betas: float | Sequence[float] | None = None) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown net kind {kind!r}; valid: {', '.join(KINDS)}")
        self.kind, self.branch_kind, self.image_size = kind, branch, image_size
        self.beta = float(beta)
        self.agd_betas = [float(b) for b in alg._beta_schedule(agd_betas, depth)]
        if branch == "mlp":
            self.stem: nn.Module = nn.Linear(in_channels * image_size**2, width)
            self.head_norm: nn.Module = nn.BatchNorm1d(width)
        else:
            self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
            self.head_norm = nn.BatchNorm2d(width)
        self.blocks = nn.ModuleList(_branch(branch, width) for _ in range(depth))
        self.fc = nn.Linear(width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)  # Section 8: Xavier for fully connected layers
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.image_size:
            x = F.adaptive_avg_pool2d(x, self.image_size)
        z = self.stem(x.flatten(1) if self.branch_kind == "mlp" else x)
        prev = z
        for k, block in enumerate(self.blocks):
            if self.kind == "gd":
                prev, z = z, z + block(z)
            elif self.kind == "hb":
                prev, z = z, z + block(z) + self.beta * (z - prev)
            else:
                y = z + self.agd_betas[k] * (z - prev)
                prev, z = z, y + block(y)
        z = F.relu(self.head_norm(z))
        return z if z.dim() == 2 else z.mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _normalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    x = images.float() / 255.0
    m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


def _accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> float:
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += int((net(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return correct / max(1, len(x))


def _fit(net: nn.Module, x: torch.Tensor, y: torch.Tensor, sizes: NetSizes, seed: int,
         device: torch.device) -> float:
    """SGD (Nesterov 0.9, wd 1e-4, cosine lr), flips for conv inputs; returns the last loss."""
    opt = torch.optim.SGD(net.parameters(), lr=sizes.lr, momentum=0.9, nesterov=True,
                          weight_decay=1e-4)
    steps_per_epoch = max(1, len(x) // sizes.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, sizes.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    loss = torch.tensor(float("nan"))
    for _ in range(sizes.epochs):
        net.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(steps_per_epoch):
            idx = order[i * sizes.batch_size:(i + 1) * sizes.batch_size]
            idx = idx.to(device)
            xb, yb = x[idx], y[idx]
            if sizes.branch == "conv":
                flip = (torch.rand(len(idx), generator=gen) < 0.5).to(device)
                xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(3), xb)
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if not torch.isfinite(loss):
            break
    return float(loss.detach())


def train_inspired_nets(train: tuple[torch.Tensor, torch.Tensor],
                        test: tuple[torch.Tensor, torch.Tensor], sizes: NetSizes,
                        mean: Sequence[float], std: Sequence[float], beta: float = 0.5,
                        seed: int = 0, device: str | torch.device = "cpu",
                        kinds: Sequence[str] = KINDS, num_classes: int | None = None,
                        progress: Any = None) -> list[dict[str, Any]]:
    """Train one net per kind and seed under the same recipe and the same initial weights.

    ``train`` / ``test`` are ``(uint8 images [N, C, H, W], int64 labels)`` as returned by
    ``optnb.data.load``. Every kind starts from the *same* initial weights for a given seed
    (the architectures have identical parameters), so differences come from the skip arithmetic
    alone. Returns one row per (kind, seed): test accuracy, final loss, parameters, seconds.
    """
    device = torch.device(device)
    (xtr, ytr), (xte, yte) = train, test
    if sizes.max_train is not None:
        xtr, ytr = xtr[:sizes.max_train], ytr[:sizes.max_train]
    xtr, xte = _normalise(xtr, mean, std), _normalise(xte, mean, std)
    if xtr.shape[-1] != sizes.image_size:
        xtr = F.adaptive_avg_pool2d(xtr, sizes.image_size)
        xte = F.adaptive_avg_pool2d(xte, sizes.image_size)
    xtr, ytr, xte, yte = xtr.to(device), ytr.to(device), xte.to(device), yte.to(device)
    num_classes = num_classes or int(max(int(ytr.max()), int(yte.max())) + 1)
    threads = torch.get_num_threads()
    if device.type == "cpu" and sizes.cpu_threads:
        torch.set_num_threads(sizes.cpu_threads)
    try:
        return _train_all(xtr, ytr, xte, yte, sizes, num_classes, beta, seed, device, kinds,
                          progress)
    finally:
        torch.set_num_threads(threads)


def _train_all(xtr: torch.Tensor, ytr: torch.Tensor, xte: torch.Tensor, yte: torch.Tensor,
               sizes: NetSizes, num_classes: int, beta: float, seed: int, device: torch.device,
               kinds: Sequence[str], progress: Any) -> list[dict[str, Any]]:
    rows = []
    for s in range(sizes.seeds):
        for kind in kinds:
            if progress is not None:
                progress(kind, seed + s)
            torch.manual_seed(seed + s)
            net = InspiredNet(kind, xtr.shape[1], num_classes, sizes.width, sizes.depth,
                              sizes.branch, sizes.image_size, beta).to(device)
            t0 = time.perf_counter()
            loss = _fit(net, xtr, ytr, sizes, seed + s, device)
            rows.append({
                "kind": kind, "seed": seed + s, "test_acc": _accuracy(net, xte, yte),
                "final_loss": loss, "params": sum(p.numel() for p in net.parameters()),
                "seconds": time.perf_counter() - t0, **{f"size_{k}": v for k, v in
                                                         asdict(sizes).items()},
            })
    return rows


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and std of test accuracy per kind (std is 0 with one seed)."""
    out = {}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        acc = np.array([r["test_acc"] for r in rows if r["kind"] == kind])
        out[kind] = {"mean_acc": float(acc.mean()), "std_acc": float(acc.std()),
                     "seeds": int(acc.size), "params": int(next(
                         r["params"] for r in rows if r["kind"] == kind))}
    return out
