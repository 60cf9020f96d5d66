"""Held-out evaluation of a classifier: loss, top-1 and top-5, summed over the ranks of a DDP job."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from optnb.train import distributed


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: torch.device, amp: bool = False,
             max_samples: int | None = None) -> dict[str, float]:
    """Mean cross-entropy, top-1 and top-5 accuracy (%) over ``loader`` (summed over ranks).

    Networks that return ``(logits, aux)`` are scored on their logits.
    """
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, top5, n
    for x, y in loader:
        if max_samples is not None and sums[3] >= max_samples:
            break
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(x)
        out = (out[0] if isinstance(out, tuple) else out).float()
        top = out.topk(min(5, out.shape[1]), dim=1).indices
        hit = top.eq(y[:, None])
        sums += torch.stack([F.cross_entropy(out, y, reduction="sum").double(),
                             hit[:, 0].sum().double(), hit.any(1).sum().double(),
                             torch.tensor(float(len(y)), dtype=torch.float64, device=device)])
    model.train(was_training)
    sums = distributed.all_reduce_sum(sums)
    n = max(float(sums[3]), 1.0)
    return {"loss": float(sums[0]) / n, "acc": 100 * float(sums[1]) / n,
            "top5_acc": 100 * float(sums[2]) / n, "n": int(sums[3])}


def held_out_metrics(result: Mapping[str, float], split: str) -> dict[str, Any]:
    """``evaluate``'s numbers under the record's names: ``<split>_loss``, ``_acc``, ``_error``,
    ``_top5_error`` (percent) and ``_samples``."""
    return {f"{split}_loss": result["loss"], f"{split}_acc": result["acc"],
            f"{split}_error": 100 - result["acc"], f"{split}_top5_error": 100 - result["top5_acc"],
            f"{split}_samples": result["n"]}
