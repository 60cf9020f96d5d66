"""Datasets and device-resident loaders.

``load(name, root=None, train=True)`` returns ``(uint8 images [N, 3, H, W], int64 labels [N])``
for every dataset small enough to hold in memory; ``GpuLoader`` turns them into augmented,
normalised batches on the device. Real ImageNet streams through ``FolderLoader`` instead.

Datasets: ``embedded`` (scikit-learn digits, real, bundled, the default without downloads),
``synthetic`` (procedural), ``cifar10``/``cifar100`` (python-pickle batches under ``data/``, read,
md5-checked and downloaded by torchvision's ``CIFAR10``/``CIFAR100``), ``imagenet`` (ImageFolder tree under
``data/imagenet``; ``load`` decodes it at a small resolution, meant for tiny trees).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from optnb.data.errors import DataError, DatasetNotFoundError
from optnb.data.folder import FolderLoader, folder_tensors
from optnb.data.loader import GpuLoader, cutout, random_crop, random_flip
from optnb.data.sources import (
    CIFAR_FOLDERS,
    cifar,
    cifar_files_present,
    embedded,
    resize_uint8,
    synthetic,
)
from optnb.paths import data_dir
from optnb.specs import DATASETS, REAL_DATASETS

__all__ = [
    "NAMES", "NUM_CLASSES", "MEAN", "STD", "IMAGE_SIZE", "DataError", "DatasetNotFoundError",
    "load", "available", "location", "default_root", "make_loader", "GpuLoader", "FolderLoader",
    "random_crop", "random_flip", "cutout", "is_real", "CIFAR_FOLDERS", "resize_uint8",
]

NAMES = DATASETS  # one list of names for the whole package: optnb.specs
NUM_CLASSES = {"embedded": 10, "synthetic": 10, "cifar10": 10, "cifar100": 100, "imagenet": 1000}
IMAGE_SIZE = {"embedded": 32, "synthetic": 32, "cifar10": 32, "cifar100": 32, "imagenet": 224}
# Per-channel statistics of the training split in [0, 1]. embedded/synthetic were measured with
# ``load(name)`` (tests/test_data.py re-measures them); CIFAR and ImageNet are the usual values.
MEAN = {
    "embedded": (0.3055, 0.3055, 0.3055),
    "synthetic": (0.4998, 0.4999, 0.4998),
    "cifar10": (0.4914, 0.4822, 0.4465),
    "cifar100": (0.5071, 0.4865, 0.4409),
    "imagenet": (0.485, 0.456, 0.406),
}
STD = {
    "embedded": (0.3241, 0.3241, 0.3241),
    "synthetic": (0.1693, 0.1740, 0.1668),
    "cifar10": (0.2470, 0.2435, 0.2616),
    "cifar100": (0.2673, 0.2564, 0.2762),
    "imagenet": (0.229, 0.224, 0.225),
}


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name.lower() not in NAMES:
        raise DataError(f"unknown dataset {name!r}; valid choices: {', '.join(NAMES)}")
    return name.lower()


def is_real(name: str) -> bool:
    """True for the paper's datasets (CIFAR, ImageNet), False for embedded/synthetic stand-ins."""
    return _check_name(name) in REAL_DATASETS


def default_root(name: str) -> Path:
    """Where ``name`` lives by default: ``data_dir()`` (``data_dir()/imagenet`` for ImageNet)."""
    return data_dir() / "imagenet" if _check_name(name) == "imagenet" else data_dir()


def location(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder that holds ``name``'s files: ``<root>/cifar-10-batches-py``,
    ``<root>/cifar-100-python``, the ImageFolder tree ``<root>`` of ImageNet (bundled: the package)."""
    name = _check_name(name)
    path = Path(root) if root is not None else default_root(name)
    return path / CIFAR_FOLDERS[name] if name in CIFAR_FOLDERS else path


def available(name: str, root: str | os.PathLike | None = None) -> bool:
    """Whether ``name``'s files are on disk, so it loads without a download (never touches the network).

    CIFAR: presence of every file only. Checking the md5 as well (what ``load`` does through
    torchvision) would read ~180 MB on every call (~0.3 s warm, seconds from a cold disk), and
    this is asked on every parameter resolution, plan and ``optnb info``; a present but corrupt
    folder is reported by ``load`` as a one-line :class:`DataError` instead.
    """
    name = _check_name(name)
    if name in ("embedded", "synthetic"):
        return True
    path = Path(root) if root is not None else default_root(name)
    if name == "imagenet":
        return (path / "train").is_dir() and (path / "val").is_dir()
    return cifar_files_present(name, path)


def load(name: str, root: str | os.PathLike | None = None, train: bool = True, *,
         download: bool | None = None, image_size: int | None = None,
         num_samples: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(uint8 images [N, 3, H, W], int64 labels [N])`` of one split of ``name``.

    ``download`` (CIFAR only): ``None`` -> on unless ``OPTNB_DOWNLOAD=0``; a failed or disabled
    download of missing files raises :class:`DatasetNotFoundError` naming the folder and the
    embedded fallback. ``image_size`` resizes (embedded/synthetic/imagenet default 32; CIFAR is
    resized only when given). ``num_samples`` and ``seed`` only apply to ``synthetic``.
    """
    name = _check_name(name)
    if name == "embedded":
        return embedded(train, image_size=image_size or 32)
    if name == "synthetic":
        return synthetic(train, num_samples=num_samples, image_size=image_size or 32, seed=seed)
    path = Path(root) if root is not None else default_root(name)
    if name == "imagenet":
        return folder_tensors(path, train, image_size=image_size or 32)
    if download is None:
        download = os.environ.get("OPTNB_DOWNLOAD", "1") != "0"
    images, labels = cifar(name, path, train, download=download)
    if image_size is not None and image_size != images.shape[-1]:
        images = resize_uint8(images, image_size)
    return images, labels


def make_loader(name: str, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                device: torch.device | str = "cpu", train: bool = True, **options) -> GpuLoader:
    """A :class:`GpuLoader` with ``name``'s mean/std; evaluation loaders keep order and tail."""
    name = _check_name(name)
    if not train:
        options = {"augment": False, "cutout": 0, "shuffle": False, "drop_last": False, **options}
    return GpuLoader(images, labels, batch_size, device, mean=MEAN[name], std=STD[name], **options)

