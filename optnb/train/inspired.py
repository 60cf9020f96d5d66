"""Training the GD-, HB- and AGD-inspired nets of Appendix B under one recipe.

Every kind starts from the same initial weights per seed, so accuracy differences come from the
skip arithmetic of :class:`optnb.models.inspired.InspiredNet` alone. ``NET_SIZES`` holds the sizes
per profile; the rates side of the conjecture is :mod:`optnb.theory.rates`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from optnb.data import GpuLoader
from optnb.models.inspired import KINDS, InspiredNet
from optnb.train.engine import FitOptions, fit
from optnb.train.recipes import Recipe

__all__ = ["NET_SIZES", "NetSizes", "recipe", "summarize", "train_inspired_nets"]


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


def recipe(sizes: NetSizes) -> Recipe:
    """The one recipe of the three kinds: Nesterov SGD 0.9, wd 1e-4, cosine lr to 0 per epoch."""
    return Recipe(name="inspired", epochs=sizes.epochs, batch_size=sizes.batch_size, lr=sizes.lr,
                  lr_schedule="cosine", source="optnb's own (the paper's Appendix B recipe is unknown)")


def train_inspired_nets(train: tuple[torch.Tensor, torch.Tensor],
                        test: tuple[torch.Tensor, torch.Tensor], sizes: NetSizes,
                        mean: Sequence[float], std: Sequence[float], beta: float = 0.5,
                        seed: int = 0, device: str | torch.device = "cpu",
                        kinds: Sequence[str] = KINDS, num_classes: int | None = None,
                        progress: Any = None) -> list[dict[str, Any]]:
    """Train one net per kind and seed under the same recipe and the same initial weights,
    through the one training loop (``optnb.train.fit``).

    ``train`` / ``test`` are ``(uint8 images [N, C, H, W], int64 labels)`` as returned by
    ``optnb.data.load``. Every kind starts from the *same* initial weights for a given seed
    (the architectures have identical parameters), so differences come from the skip arithmetic
    alone. Returns one row per (kind, seed): test accuracy, final loss, parameters, seconds.
    """
    device = torch.device(device)
    (xtr, ytr), (xte, yte) = train, test
    if sizes.max_train is not None:
        xtr, ytr = xtr[:sizes.max_train], ytr[:sizes.max_train]
    num_classes = num_classes or int(max(int(ytr.max()), int(yte.max())) + 1)
    test_loader = GpuLoader(xte, yte, 512, device, augment=False, shuffle=False, drop_last=False,
                            mean=mean, std=std)
    threads = torch.get_num_threads()
    if device.type == "cpu" and sizes.cpu_threads:
        torch.set_num_threads(sizes.cpu_threads)
    rows = []
    try:
        for s in range(sizes.seeds):
            for kind in kinds:
                if progress is not None:
                    progress(kind, seed + s)
                # the same initial weights and the same batches for every kind of a seed
                torch.manual_seed(seed + s)
                net = InspiredNet(kind, xtr.shape[1], num_classes, sizes.width, sizes.depth,
                                  sizes.branch, sizes.image_size, beta)
                # conv: flips only (padding 0 = no crop); the net pools to its own image size
                train_loader = GpuLoader(xtr, ytr, sizes.batch_size, device,
                                         augment=sizes.branch == "conv", padding=0, seed=seed + s,
                                         mean=mean, std=std)
                result = fit(net, train_loader, recipe(sizes), test=test_loader, device=device,
                             options=FitOptions(eval_every=0, log_every=0, checkpoint=False))
                rows.append({
                    "kind": kind, "seed": seed + s, "test_acc": result.final["test_acc"] / 100,
                    "final_loss": result.final["train_loss"], "params": result.params,
                    "seconds": result.wall_s, **{f"size_{k}": v for k, v in asdict(sizes).items()},
                })
    finally:
        torch.set_num_threads(threads)
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
