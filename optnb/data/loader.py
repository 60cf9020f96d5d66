"""A device-resident loader for CIFAR-sized data: no DataLoader, no host work in the hot loop.

The uint8 images are copied to the device once. Every epoch draws a permutation and, per batch,
the augmentation parameters from one generator seeded with ``(seed, epoch)``; cropping (zero
padding, random offset), horizontal flipping, normalisation and cutout are batched tensor ops on
the device. Because the order depends only on ``(seed, epoch)``, ``state_dict()`` (the epoch
counter) is all a checkpoint needs to resume with the exact same data order.

Augmentation settings follow Table 1: ``augment=True`` is the paper's "+" (pad 4, random 32x32
crop, horizontal flip), ``augment=False`` is normalisation only. ``cutout`` (DeVries & Taylor)
is used by the NAS evaluation (paper §9, Table 4), applied after normalisation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from optnb.data.errors import DataError


def random_crop(images: torch.Tensor, offsets: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad by ``padding`` and crop the original size at per-image ``offsets`` [B, 2] (dy, dx).

    ``offsets`` lie in ``0..2*padding``; an offset of ``padding`` returns the image unchanged.
    """
    b, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    rows = offsets[:, 0:1] + torch.arange(h, device=images.device)  # [B, H]
    cols = offsets[:, 1:2] + torch.arange(w, device=images.device)  # [B, W]
    bi = torch.arange(b, device=images.device)[:, None, None, None]
    ci = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


def random_flip(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror (left-right) the images where ``mask`` [B] is true."""
    return torch.where(mask[:, None, None, None], images.flip(3), images)


def cutout(images: torch.Tensor, centres: torch.Tensor, length: int) -> torch.Tensor:
    """Zero a ``length`` x ``length`` square (clipped at the border) around ``centres`` [B, 2]."""
    h, w = images.shape[-2:]
    ys = torch.arange(h, device=images.device)[None, :]
    xs = torch.arange(w, device=images.device)[None, :]
    lo = length // 2
    inside_y = (ys >= centres[:, 0:1] - lo) & (ys < centres[:, 0:1] - lo + length)  # [B, H]
    inside_x = (xs >= centres[:, 1:2] - lo) & (xs < centres[:, 1:2] - lo + length)  # [B, W]
    hole = inside_y[:, :, None] & inside_x[:, None, :]
    return images.masked_fill(hole[:, None], 0.0)


class EpochOrder:
    """Loaders whose data order is a function of ``(seed, epoch)``: that is their whole state,
    saved in checkpoints for an exact resume."""

    seed: int
    epoch: int

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.seed = int(state["epoch"]), int(state["seed"])


class GpuLoader(EpochOrder):
    """Iterate ``(float images [B, 3, H, W] normalised on device, int64 labels [B])`` batches.

    ``rank``/``world_size`` shard every *global* batch of ``batch_size * world_size`` images
    (augmentation drawn for the global batch, then sliced), so that a DDP run sees exactly the
    batches a single process with the global batch size would.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 device: torch.device | str = "cpu", augment: bool = True, cutout: int = 0,
                 shuffle: bool = True, drop_last: bool = True, seed: int = 0,
                 mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.25, 0.25, 0.25),
                 padding: int = 4, rank: int = 0, world_size: int = 1,
                 channels_last: bool = False) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise DataError(f"GpuLoader needs uint8 images [N, C, H, W]; got {images.dtype} "
                            f"{tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise DataError(f"labels shape {tuple(labels.shape)} does not match {len(images)} images")
        if batch_size < 1 or not 0 <= rank < world_size:
            raise DataError(f"need batch_size >= 1 and 0 <= rank < world_size; got {batch_size}, "
                            f"rank {rank}, world_size {world_size}")
        if len(mean) != images.shape[1] or len(std) != images.shape[1]:
            raise DataError(f"mean/std need {images.shape[1]} channels; got {len(mean)}/{len(std)}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, torch.int64)
        self.batch_size, self.augment, self.cutout = int(batch_size), bool(augment), int(cutout)
        self.shuffle, self.drop_last, self.padding = shuffle, drop_last, int(padding)
        self.seed, self.epoch = int(seed), 0
        self.rank, self.world_size, self.channels_last = rank, world_size, channels_last
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._scale = (1.0 / (255.0 * self.std))
        self._shift = -self.mean / self.std
        self.gen = torch.Generator(device=self.device)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        n, g = len(self.images), self.global_batch
        return n // g if self.drop_last else -(-n // g)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 global batch -> normalised float (crop/flip/cutout drawn from ``self.gen``)."""
        b, _, h, w = x.shape
        if self.augment:
            offsets = torch.randint(0, 2 * self.padding + 1, (b, 2), device=self.device,
                                    generator=self.gen)
            flips = torch.rand(b, device=self.device, generator=self.gen) < 0.5
            x = random_flip(random_crop(x, offsets, self.padding), flips)
        x = x.float().mul_(self._scale).add_(self._shift)
        if self.cutout > 0:
            centres = torch.stack([
                torch.randint(0, h, (b,), device=self.device, generator=self.gen),
                torch.randint(0, w, (b,), device=self.device, generator=self.gen)], dim=1)
            x = cutout(x, centres, self.cutout)
        return x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.gen.manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        n, g = len(self.images), self.global_batch
        if self.shuffle:
            order = torch.randperm(n, device=self.device, generator=self.gen)
        else:
            order = torch.arange(n, device=self.device)
        for i in range(len(self)):
            idx = order[i * g:(i + 1) * g]
            x = self._augment(self.images[idx])
            y = self.labels[idx]
            if self.world_size > 1:
                per = -(-len(idx) // self.world_size)
                x = x[self.rank * per:(self.rank + 1) * per]
                y = y[self.rank * per:(self.rank + 1) * per]
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y

