"""ImageNet-style ImageFolder trees: ``<root>/{train,val}/<class>/<image file>``.

Two ways in:

* :func:`folder_tensors` decodes a *small* tree into one ``uint8 [N, 3, S, S]`` tensor (resize the
  shorter side to ``S``, centre crop), so that it can use the GPU-resident loader. For tests,
  smoke runs and low-resolution subsets.
* :class:`FolderLoader` streams a *large* tree (real ImageNet) through a ``DataLoader`` whose
  workers decode and crop (the DenseNet/ResNet ImageNet augmentation: RandomResizedCrop + flip for
  training, Resize + CenterCrop for evaluation), jitter colours when asked
  (:mod:`optnb.data.color`) and return uint8; lighting noise and normalisation happen batched on
  the device. The order is a function of ``(seed, epoch)`` only, so ``state_dict`` is exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from optnb.data import color as colors
from optnb.data.errors import DataError, DatasetNotFoundError
from optnb.data.loader import EpochOrder

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SPLITS = {True: "train", False: "val"}


def split_dir(root: Path, train: bool) -> Path:
    path = Path(root) / SPLITS[train]
    if not path.is_dir():
        raise DatasetNotFoundError(
            f"dataset 'imagenet' not found: expected an ImageFolder tree {path}/<class>/<image>; "
            f"link ImageNet there, or use DATASET='embedded' (the bundled default, no download)"
        )
    return path


def find_classes(path: Path) -> list[str]:
    classes = sorted(p.name for p in Path(path).iterdir() if p.is_dir())
    if not classes:
        raise DatasetNotFoundError(f"no class folders in {path}; expected {path}/<class>/<image>")
    return classes


def list_images(root: Path, train: bool) -> tuple[list[Path], list[int], list[str]]:
    """Files and labels of one split, classes sorted by name (torchvision's ImageFolder order)."""
    path = split_dir(root, train)
    classes = find_classes(path)
    files: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        for f in sorted((path / name).iterdir()):
            if f.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(f)
                labels.append(index)
    if not files:
        raise DatasetNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {path}")
    return files, labels, classes


def decode_rgb(path: Path) -> torch.Tensor:
    """One image file as ``uint8 [3, H, W]`` RGB (grey, palette and RGBA are converted)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            array = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from exc
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def resize_center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to ``size`` (antialiased) and take the central square."""
    from torchvision.transforms.v2 import functional as TF

    return TF.center_crop(TF.resize(image, size, antialias=True), [size, size])


def folder_tensors(root: Path, train: bool = True,
                   image_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode a small ImageFolder split into ``(uint8 [N, 3, S, S], int64 [N])``."""
    files, labels, _ = list_images(root, train)
    images = torch.stack([resize_center_crop(decode_rgb(f), image_size) for f in files])
    return images.contiguous(), torch.tensor(labels, dtype=torch.int64)


class _FolderDataset(torch.utils.data.Dataset):
    """Items are ``(uint8 image, label)``, plus the lighting coefficients when ``color`` has
    lighting noise (training only)."""

    def __init__(self, files: list[Path], labels: list[int], train: bool, resolution: int,
                 color: str = "none"):
        from torchvision.transforms import v2

        self.files, self.labels = files, labels
        self.train, self.epoch_seed = train, 0
        self.color = colors.get(color) if train else colors.get("none")
        if train:
            jitter = self.color.jitter()
            self.transform = v2.Compose([v2.RandomResizedCrop(resolution, antialias=True),
                                         v2.RandomHorizontalFlip(), *([jitter] if jitter else [])])
        else:
            resize = int(round(resolution * 256 / 224))
            self.transform = v2.Compose([v2.Resize(resize, antialias=True),
                                         v2.CenterCrop(resolution)])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple:
        image = decode_rgb(self.files[i])
        if not self.train:
            return self.transform(image), self.labels[i]
        # the random crop/flip/colour of image i depends on (seed, epoch, i) only: not on workers,
        # not on the training process's global RNG (which it leaves untouched)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.epoch_seed * 100_003 + i)
            image = self.transform(image)
            if self.color.lighting:
                return image, self.labels[i], self.color.draw_lighting()
            return image, self.labels[i]


class FolderLoader(EpochOrder):
    """Stream an ImageFolder split; yields ``(float images on device, normalised; labels)``.

    Rank ``r`` of ``world_size`` takes slice ``r`` of every global batch of
    ``batch_size * world_size`` images, so all ranks together see what one rank would.
    ``color`` names the training split's colour recipe (:data:`optnb.data.color.COLOR_AUGMENTATIONS`).
    """

    def __init__(self, root: Path, train: bool, batch_size: int, device: torch.device | str,
                 mean: tuple[float, ...], std: tuple[float, ...], resolution: int = 224,
                 shuffle: bool | None = None, drop_last: bool | None = None, seed: int = 0,
                 num_workers: int = 0, rank: int = 0, world_size: int = 1,
                 channels_last: bool = False, color: str = "none") -> None:
        colors.get(color)  # an unknown name fails here, before any file is listed
        files, labels, self.classes = list_images(root, train)
        self.dataset = _FolderDataset(files, labels, train, resolution, color)
        self.batch_size, self.device = int(batch_size), torch.device(device)
        self.shuffle = train if shuffle is None else shuffle
        self.drop_last = train if drop_last is None else drop_last
        self.seed, self.epoch, self.num_workers = int(seed), 0, int(num_workers)
        self.rank, self.world_size, self.channels_last = rank, world_size, channels_last
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1) * 255

    def _global_batches(self, gen: torch.Generator) -> list[list[int]]:
        n = len(self.dataset)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        step = self.batch_size * self.world_size
        stop = (n // step) * step if self.drop_last else n
        return [order[i:i + step].tolist() for i in range(0, stop, step)]

    def _rank_batches(self, gen: torch.Generator) -> list[list[int]]:
        out = []
        for batch in self._global_batches(gen):
            per = -(-len(batch) // self.world_size)
            mine = batch[self.rank * per:(self.rank + 1) * per]
            if mine:
                out.append(mine)
        return out

    def __len__(self) -> int:
        n, step = len(self.dataset), self.batch_size * self.world_size
        full, tail = divmod(n, step)
        if self.drop_last or not tail:
            return full
        per = -(-tail // self.world_size)
        return full + (1 if self.rank * per < tail else 0)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        seed = self.seed * 1_000_003 + self.epoch
        gen = torch.Generator().manual_seed(seed)
        self.epoch += 1
        self.dataset.epoch_seed = seed
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=self._rank_batches(gen), num_workers=self.num_workers,
            generator=gen, pin_memory=self.device.type == "cuda", persistent_workers=False)
        for x, y, *lighting in loader:
            x = x.to(self.device, non_blocking=True).float()
            if lighting:  # fb.resnet.torch's order: jitter (in the worker), lighting, normalise
                colors.add_lighting(x, lighting[0])
            x = x.sub_(self.mean).div_(self.std)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y.to(self.device, non_blocking=True)

