"""GD-, HB- and AGD-inspired networks: the network half of Appendix B (reconstructed).

Small nets in the Appendix C relaxation: a learnable branch ``F_k`` replaces ``Phi(W z) - z`` and
momentum lives on the identity path. All three kinds have *identical*
parameters; only the skip arithmetic differs. Trained by :mod:`optnb.train.inspired`; the rates
they are compared with are :mod:`optnb.theory.rates`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from optnb.theory.algorithms import beta_schedule

__all__ = ["KINDS", "InspiredNet"]

KINDS = ("gd", "hb", "agd")


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
        self.agd_betas = [float(b) for b in beta_schedule(agd_betas, depth)]
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
