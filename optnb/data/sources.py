"""Dataset readers: every source returns ``(images uint8 [N, 3, H, W], labels int64 [N])``.

* ``embedded``: scikit-learn's bundled handwritten digits (1797 real 8x8 images, no download),
  bilinearly resized to 32x32 and repeated over three channels, with a fixed stratified split.
* ``synthetic``: procedural oriented gratings, one orientation/frequency/colour per class, any
  size, seeded. Learnable by a CNN, useful for throughput benchmarks of any shape.
* ``cifar10`` / ``cifar100``: the python-pickle batches that torchvision downloads
  (``cifar-10-batches-py/``, ``cifar-100-python/``), read directly so that any folder in that
  format works; torchvision is only used to download when the files are missing.
* ``imagenet``: an ImageFolder tree ``<root>/{train,val}/<class>/<image>``; see ``folder.py``.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from optnb.data.errors import DataError, DatasetNotFoundError

EMBEDDED_TEST_FRACTION = 0.2
EMBEDDED_SPLIT_SEED = 2024
SYNTHETIC_TRAIN_SIZE = 2048
SYNTHETIC_TEST_SIZE = 512

CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
_CIFAR_FILES = {
    "cifar10": ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"),
    "cifar100": (["train"], ["test"], b"fine_labels"),
}


def _resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of a uint8 batch (antialiased when shrinking), back to uint8."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    x = images.float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                      antialias=size < images.shape[-1])
    return x.round_().clamp_(0, 255).to(torch.uint8)


# ---------------------------------------------------------------------------------------------
# embedded


def embedded(train: bool = True, image_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits, 8x8 grey in 0..16, as ``uint8 [N, 3, S, S]`` (S = ``image_size``).

    The split is stratified and fixed: per class, a permutation seeded with
    ``EMBEDDED_SPLIT_SEED`` puts the first 20 % into the test set (1438 train / 359 test images).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - scikit-learn is a dependency
        raise DataError("dataset 'embedded' needs scikit-learn (pip install scikit-learn)") from exc
    digits = load_digits()
    grey = np.asarray(digits.images, dtype=np.float64) * (255.0 / 16.0)
    labels = np.asarray(digits.target, dtype=np.int64)
    rng = np.random.default_rng(EMBEDDED_SPLIT_SEED)
    test_mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        test_mask[idx[: int(round(EMBEDDED_TEST_FRACTION * len(idx)))]] = True
    keep = ~test_mask if train else test_mask
    x = torch.from_numpy(grey[keep]).float().unsqueeze(1)
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = x.round_().clamp_(0, 255).to(torch.uint8).repeat(1, 3, 1, 1).contiguous()
    return x, torch.from_numpy(labels[keep]).clone()


# ---------------------------------------------------------------------------------------------
# synthetic


def synthetic(train: bool = True, num_samples: int | None = None, image_size: int = 32,
              num_classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Procedural images: class ``c`` is a grating with its own orientation, frequency and colour.

    Each sample draws a random phase, contrast and pixel noise, so the classes are learnable but
    not trivially separable by one pixel. Train and test use different streams of the same seed.
    """
    if num_samples is None:
        num_samples = SYNTHETIC_TRAIN_SIZE if train else SYNTHETIC_TEST_SIZE
    if num_samples < 1 or image_size < 2 or num_classes < 2:
        raise DataError(
            f"synthetic needs num_samples >= 1, image_size >= 2, num_classes >= 2; got "
            f"{num_samples}, {image_size}, {num_classes}"
        )
    classes = torch.Generator().manual_seed(10_007)  # class identities never depend on seed
    colours = 0.35 + 0.65 * torch.rand(num_classes, 3, generator=classes, dtype=torch.float64)
    angles = math.pi * torch.arange(num_classes, dtype=torch.float64) / num_classes
    freqs = 1.5 + torch.arange(num_classes, dtype=torch.float64) % 3

    gen = torch.Generator().manual_seed(2 * seed + (0 if train else 1))
    labels = torch.arange(num_samples) % num_classes
    labels = labels[torch.randperm(num_samples, generator=gen)]
    phase = 2 * math.pi * torch.rand(num_samples, generator=gen, dtype=torch.float64)
    contrast = 0.25 + 0.15 * torch.rand(num_samples, generator=gen, dtype=torch.float64)
    grid = torch.linspace(0.0, 1.0, image_size, dtype=torch.float64)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    a, f = angles[labels], freqs[labels]
    proj = xx * torch.cos(a)[:, None, None] + yy * torch.sin(a)[:, None, None]
    wave = torch.cos(2 * math.pi * f[:, None, None] * proj + phase[:, None, None])
    img = 0.5 + (contrast[:, None, None] * wave)[:, None] * colours[labels][:, :, None, None]
    img = img + 0.08 * torch.randn(img.shape, generator=gen, dtype=torch.float64)
    img = (img.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return img.contiguous(), labels.to(torch.int64)


# ---------------------------------------------------------------------------------------------
# CIFAR


def cifar_files_present(name: str, root: Path) -> bool:
    folder = Path(root) / CIFAR_FOLDERS[name]
    train, test, _ = _CIFAR_FILES[name]
    return all((folder / f).is_file() for f in train + test)


def _read_cifar_batch(path: Path, key: bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            entry = pickle.load(fh, encoding="bytes")
        data = np.asarray(entry[b"data"], dtype=np.uint8)
        labels = np.asarray(entry[key], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as exc:
        raise DataError(f"corrupt CIFAR batch {path}: {type(exc).__name__}: {exc}; delete the "
                        "folder and download it again") from exc
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"corrupt CIFAR batch {path}: data shape {data.shape}, "
                        f"{len(labels)} labels (expected [N, 3072] and N labels)")
    return data, labels


def cifar(name: str, root: Path, train: bool = True,
          download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10/100 from ``<root>/cifar-10-batches-py`` or ``<root>/cifar-100-python``."""
    root = Path(root)
    if not cifar_files_present(name, root) and download:
        _download_cifar(name, root)
    if not cifar_files_present(name, root):
        raise DatasetNotFoundError(
            f"dataset {name!r} not found: expected the python-pickle batches in "
            f"{root / CIFAR_FOLDERS[name]} (and downloading "
            f"{'failed' if download else 'is off'}); put the files there, or use "
            f"DATASET='embedded' (the bundled default, no download)"
        )
    train_files, test_files, key = _CIFAR_FILES[name]
    parts = [_read_cifar_batch(root / CIFAR_FOLDERS[name] / f, key)
             for f in (train_files if train else test_files)]
    data = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([p[1] for p in parts])
    classes = 10 if name == "cifar10" else 100
    if labels.min() < 0 or labels.max() >= classes:
        raise DataError(f"corrupt {name} labels in {root / CIFAR_FOLDERS[name]}: "
                        f"range {labels.min()}..{labels.max()}, expected 0..{classes - 1}")
    return torch.from_numpy(np.ascontiguousarray(data)), torch.from_numpy(labels)


def _download_cifar(name: str, root: Path) -> None:
    """Try torchvision's download once; any network failure is left to the caller's message."""
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        root.mkdir(parents=True, exist_ok=True)
        cls(str(root), train=True, download=True)
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        print(f"[optnb.data] downloading {name} into {root} failed: {type(exc).__name__}: {exc}")
