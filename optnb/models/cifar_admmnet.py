"""ADMMNet: the CIFAR network whose blocks realise linearized ADMM's propagation (13).

Linearized ADMM (6) on ``min f(x) + f(y) s.t. y - x = 0``, mapped to features by Lemma 1
(``x <-> z'``, ``y <-> z``), is eq. (13). With its sum carried as one running state
``s_k = sum_{t=1}^k (z'_t - z_t)`` (``= U^{-1} lambda_k``, (6)'s multiplier; ``s_0 = 0``) a layer is

    z'_{k+1} = (Phi(W_k z'_k) + z_k - s_k) / 2
    z_{k+1}  = (Phi(W_k z_k) + z'_{k+1} + s_k) / 2
    s_{k+1}  = s_k + z'_{k+1} - z_{k+1}

and :func:`admm_step` is exactly that, for any layer ``Phi(W_k .)``. The choices (13) leaves open:

* **Relaxing Phi(W_k z).** Section 5: "the basic operation, Phi(W z), is kept for all algorithms,
  but some additional side paths are introduced". ResNet relaxes the basic operation of (7) to its
  whole basic block ``B_k(z) = relu(S z + F_k(z))`` (:class:`~optnb.models.cifar_resnet.BasicBlock`,
  ``F_k`` = Conv-BN-ReLU-Conv-BN); ADMMNet uses that same ``B_k`` as ``Phi(W_k .)`` and keeps the
  side paths of (13) (the halving, ``z_k``, ``z'_{k+1}``, ``s_k``) linear and outside it. So (13)
  holds as written with ``Phi(W_k .) := B_k`` (tested against
  :func:`optnb.theory.algorithms.admm_linearized`), the multiplier ``s`` may be negative, and the
  only states a block leaves unchanged are ResNet's fixed points (``s = 0``, ``z' = z``,
  ``B_k(z) = z``). HBNet's placement (side paths inside the block's closing ReLU) would clip the
  multiplier and no longer be (13) for an exact ``Phi(W z)``.
* **Shared weights, shared BatchNorm.** ``W_k`` acts on both streams, so one block serves both:
  it runs once on ``[z'_k; z_k]`` concatenated along the batch. Each BatchNorm is one pass over
  the ``2B`` samples: in train mode both streams are normalised with the pooled batch statistics
  and the running statistics are updated once per forward (``num_batches_tracked`` += 1); in eval
  mode each sample is normalised on its own, so the block is ResNet's block applied to each stream.
  ADMMNet therefore has exactly ResNet's parameters and ``state_dict`` keys (weights load across,
  :func:`optnb.models.special_cases.paired`). Two BNs per stream would add ``4 C`` parameters per
  block (1344 for depth 20) and break that sharing. Multiply-adds are twice ResNet's, less one stem
  and one FC (they run once).
* **Stage boundaries.** At a stride-2 block the option-A shortcut ``S`` (linear, parameter-free)
  carries ``z_k`` and ``s_k`` into the new space (``z'_k`` enters (13) only through
  ``B_k(z'_k)``, which is already there); ``S`` is linear, so this is (13) in the new space, with
  nothing restarted. A restart (as HBNet's ``hb_boundary="restart"``) would have to pick one
  stream and drop the multiplier, so it is not offered.
* **Start.** ``z'_0 = z_0`` = the stem output and ``s_0 = 0`` (``y_0 = x_0``, ``lambda_0 = 0``:
  the start under which (13) equals (6), ``docs/theory_choices.md``).
* **Readout.** The head reads ``z`` by default: it is (6)'s ``y``, the iterate computed last (from
  ``z'_{k+1}``); at a fixed point ``z' = z`` and the choice vanishes. ``readout="zp"`` and
  ``"mean"`` (``(z' + z) / 2``) are options.

Special case: when every branch is zero (``F_k = 0``, e.g. every ``bn2`` weight and bias zero,
torchvision's ``zero_init_residual`` start) ADMMNet stays on ``z' = z``, ``s = 0`` and computes
ResNet's output bit for bit (the stem ends in a ReLU, so ``B_k(z) = S z`` on every state). We
know of no other exact reduction to a known network: from the start, ``z'_1 = z_0 + (B(z_0) - z_0)
/ 2`` and ``z_1 = z_0 + 3 (B(z_0) - z_0) / 4`` are damped ResNet steps, and from the second block
on the multiplier ``s`` couples the two streams.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from optnb.models.cifar_resnet import CifarResNet
from optnb.models.errors import check_choice

__all__ = ["READOUTS", "CifarADMMNet", "admm_step"]

READOUTS = ("z", "zp", "mean")

Map = Callable[[Tensor], Tensor]


def admm_step(
    layer: Map, zp: Tensor, z: Tensor, s: Tensor, transport: Map | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """One layer of (13): ``(z'_k, z_k, s_k) -> (z'_{k+1}, z_{k+1}, s_{k+1})``.

    ``layer`` is ``Phi(W_k .)``, called once on ``[z'_k; z_k]`` (concatenated along dim 0, so
    shared weights and one BatchNorm pass serve both streams). ``transport`` is the linear map into
    the layer's output space (the option-A shortcut of a stride-2 block), applied to ``z_k`` and
    ``s_k``; ``None`` means the identity. ``s_k = sum_{t<=k} (z'_t - z_t)`` is (6)'s multiplier.
    """
    phi_zp, phi_z = layer(torch.cat((zp, z))).chunk(2)
    if transport is not None:
        z, s = transport(z), transport(s)
    zp = 0.5 * (phi_zp + z - s)
    z = 0.5 * (phi_z + zp + s)
    return zp, z, s + (zp - z)


class CifarADMMNet(CifarResNet):
    """ADMMNet (13) on the CIFAR ResNet skeleton: each basic block is ``Phi(W_k .)`` of both
    streams ``z'`` and ``z`` (see the module docstring for every choice).

    Same modules, parameters and ``state_dict`` keys as :class:`CifarResNet` of the same depth;
    about twice its multiply-adds. ``readout`` picks what the head sees: ``"z"`` (default),
    ``"zp"`` or ``"mean"``.
    """

    def __init__(
        self,
        depth: int = 56,
        num_classes: int = 10,
        width: int = 16,
        in_channels: int = 3,
        readout: str = "z",
    ) -> None:
        check_choice("readout", readout, READOUTS)
        super().__init__(depth, num_classes, width, in_channels)
        self.readout = readout

    def extra_repr(self) -> str:
        return f"readout={self.readout!r}"

    def propagate(self, z0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Run (13) through every block from ``z'_0 = z_0``, ``s_0 = 0``; returns ``z'_K, z_K, s_K``."""
        zp, z, s = z0, z0, torch.zeros_like(z0)
        for block in self.blocks():
            zp, z, s = admm_step(block, zp, z, s, block.shortcut)
        return zp, z, s

    def forward(self, x: Tensor) -> Tensor:
        zp, z, _ = self.propagate(self.stem(x))
        if self.readout == "zp":
            z = zp
        elif self.readout == "mean":
            z = 0.5 * (zp + z)
        return self.head(z)
