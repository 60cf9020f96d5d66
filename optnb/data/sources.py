"""Dataset readers: every source returns ``(images uint8 [N, 3, H, W], labels int64 [N])``.

* ``embedded``: scikit-learn's bundled handwritten digits (1797 real 8x8 images, no download),
  bilinearly resized to 32x32 and repeated over three channels, with a fixed stratified split.
* ``synthetic``: procedural oriented gratings, one orientation/frequency/colour per class, any
  size, seeded. Learnable by a CNN, useful for throughput benchmarks of any shape.
* ``cifar10`` / ``cifar100``: the python-pickle batches under ``cifar-10-batches-py/`` and
  ``cifar-100-python/``, read (md5-checked) and downloaded by ``torchvision.datasets.CIFAR10`` /
  ``CIFAR100``. ``optnb.data.fake`` writes small folders in the same format for tests.
* ``imagenet``: an ImageFolder tree ``<root>/{train,val}/<class>/<image>``; see ``folder.py``.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from optnb.data.errors import DataError, DatasetNotFoundError

if TYPE_CHECKING:
    from torchvision.datasets import CIFAR10

EMBEDDED_TEST_FRACTION = 0.2
EMBEDDED_SPLIT_SEED = 2024
SYNTHETIC_TRAIN_SIZE = 2048
SYNTHETIC_TEST_SIZE = 512


@dataclass(frozen=True)
class CifarLayout:
    """The files of one CIFAR folder as torchvision reads (and downloads) them.

    Written out here rather than read off ``torchvision.datasets.CIFAR10`` so that
    :func:`cifar_files_present` (and with it ``optnb.data.available``) needs no torchvision import,
    which costs about 1.5 s; tests/test_data.py checks the table against torchvision's class
    attributes so the two cannot drift apart.
    """

    folder: str  #: ``<root>/<folder>`` holds the files
    train: tuple[str, ...]  #: training batches, in torchvision's (concatenation) order
    test: tuple[str, ...]  #: test batches
    meta: str  #: the class-names file torchvision also requires
    label_key: str  #: labels entry of a batch dict
    names_key: str  #: class-names entry of the meta dict
    num_classes: int

    @property
    def files(self) -> tuple[str, ...]:
        """Every file torchvision needs: batches, then the meta file."""
        return (*self.train, *self.test, self.meta)


CIFAR_LAYOUT = {
    "cifar10": CifarLayout("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                           ("test_batch",), "batches.meta", "labels", "label_names", 10),
    "cifar100": CifarLayout("cifar-100-python", ("train",), ("test",), "meta", "fine_labels",
                            "fine_label_names", 100),
}
CIFAR_FOLDERS = {name: layout.folder for name, layout in CIFAR_LAYOUT.items()}


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of a uint8 batch ``[N, C, H, W]`` to ``size`` x ``size`` (antialiased when
    shrinking), back to uint8; returned unchanged when it already has that size."""
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


def _cifar_layout(name: str) -> CifarLayout:
    if name not in CIFAR_LAYOUT:
        raise DataError(f"{name!r} is not a CIFAR dataset; valid: {', '.join(CIFAR_LAYOUT)}")
    return CIFAR_LAYOUT[name]


def cifar_dataset_class(name: str) -> type[CIFAR10]:
    """``torchvision.datasets.CIFAR10`` or ``CIFAR100`` for ``name`` (imported on first use)."""
    layout = _cifar_layout(name)
    # torchvision is imported here, not at the top: it takes ~1.5 s and most runs never read CIFAR.
    from torchvision.datasets import CIFAR10, CIFAR100

    return CIFAR10 if layout.num_classes == 10 else CIFAR100


def cifar_files_present(name: str, root: str | Path) -> bool:
    """Whether every file torchvision needs is in ``<root>/<folder>`` (presence only, no md5)."""
    layout = _cifar_layout(name)
    folder = Path(root) / layout.folder
    return all((folder / f).is_file() for f in layout.files)


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]


def _download(name: str, root: Path) -> str:
    """Try torchvision's download once; ``''`` on success, else the one-line reason."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        cifar_dataset_class(name)(str(root), train=True, download=True)
    except Exception as exc:  # noqa: BLE001 - network, disk and archive errors come in many types
        return _one_line(exc)
    return ""


def _integrity_error(name: str, folder: Path, cls: type[CIFAR10], exc: BaseException) -> DataError:
    """The DataError for torchvision's "not found or corrupted": name the first file whose md5
    differs (only computed on this error path)."""
    from torchvision.datasets.utils import calculate_md5

    expected = [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]
    for filename, md5 in expected:
        path = folder / filename
        actual = calculate_md5(path) if path.is_file() else "missing"
        if actual != md5:
            kind = "meta file" if filename == cls.meta["filename"] else "batch"
            return DataError(
                f"corrupt CIFAR {kind} {path}: md5 {actual} is not the official {md5}, so these are not "
                f"the official {name} files (a broken download or a modified copy); delete {folder} and "
                f"download it again, or use DATASET='embedded'"
            )
    return DataError(f"cannot read the {name} files in {folder}: {_one_line(exc)}; delete the folder and "
                     f"download it again, or use DATASET='embedded'")


def cifar(name: str, root: str | Path, train: bool = True,
          download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10/100 from ``<root>/cifar-10-batches-py`` or ``<root>/cifar-100-python``.

    Read by ``torchvision.datasets.CIFAR10``/``CIFAR100``, which verify every file's md5 against
    the official checksums. Returns ``(uint8 [N, 3, 32, 32] contiguous, int64 [N])``.
    ``download``: when files are missing, try torchvision's download once. Raises
    :class:`DatasetNotFoundError` (files missing: names the folder and the embedded fallback) or
    :class:`DataError` (files corrupt or not the official ones), each with a one-line message.
    """
    layout = _cifar_layout(name)
    root = Path(root)
    folder = root / layout.folder
    failure = ""
    if download and not cifar_files_present(name, root):
        failure = _download(name, root)
    if not cifar_files_present(name, root):
        how = f"failed: {failure}" if failure else ("did not bring them" if download else "is off")
        raise DatasetNotFoundError(
            f"dataset {name!r} not found: expected the python-pickle batches and the "
            f"{layout.meta!r} file in {folder} (downloading {how}); put the files there, or use "
            f"DATASET='embedded' (the bundled default, no download)"
        )
    cls = cifar_dataset_class(name)
    try:
        dataset = cls(str(root), train=train, download=False)
    except RuntimeError as exc:  # "Dataset (metadata file) not found or corrupted": an md5 mismatch
        raise _integrity_error(name, folder, cls, exc) from exc
    except OSError as exc:
        raise DataError(f"cannot read the {name} files in {folder}: {_one_line(exc)}") from exc
    except (pickle.UnpicklingError, EOFError, KeyError, IndexError, ValueError, TypeError, AttributeError,
            UnicodeDecodeError) as exc:
        raise DataError(
            f"corrupt CIFAR batches in {folder}: {_one_line(exc)}; they are not in the official "
            f"python-pickle format, delete the folder and download it again, or use DATASET='embedded'"
        ) from exc
    images = np.asarray(dataset.data)
    try:
        labels = torch.as_tensor(np.asarray(dataset.targets, dtype=np.int64))
    except (TypeError, ValueError) as exc:
        raise DataError(f"corrupt {name} labels in {folder}: {_one_line(exc)}") from exc
    if images.dtype != np.uint8 or images.shape[1:] != (32, 32, 3) or len(labels) != len(images) \
            or len(images) == 0:
        raise DataError(f"corrupt {name} batches in {folder}: images {images.dtype} {tuple(images.shape)} "
                        f"(NHWC), {len(labels)} labels; expected uint8 [N, 32, 32, 3], N >= 1 labels")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= layout.num_classes:
        raise DataError(f"corrupt {name} labels in {folder}: range {lo}..{hi}, "
                        f"expected 0..{layout.num_classes - 1}")
    # torchvision keeps NHWC (for PIL); optnb's tensors are channel-first.
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels
