"""Generated CIFAR folders in the official on-disk format, and a way to make torchvision accept them.

torchvision checks every CIFAR file against the md5 of the official release, which a generated
folder cannot match. This module is the one place that writes such folders:

* :func:`write_cifar` writes ``<root>/cifar-10-batches-py`` or ``<root>/cifar-100-python`` with
  random images, python-pickle batches and the meta file exactly as
  ``torchvision.datasets.CIFAR10``/``CIFAR100`` read them, and returns a :class:`FakeCifar` with the
  raw arrays and the md5 table of the files;
* :func:`trusted_cifar_checksums` registers such an md5 table on the torchvision class (its public
  ``train_list``/``test_list``/``meta`` class attributes) for the duration of a ``with`` block, so
  the unchanged production reader (``optnb.data.load``) loads the folder;
* :func:`write_cifar_batch` and :func:`cifar_checksums` let a caller replace one batch (bad labels,
  say) and trust the folder as it is now.

For the dress rehearsal of the paper plan (every dataset in its real on-disk format):

* :func:`write_imagenet_tree` writes an ImageFolder tree ``<root>/{train,val}/<wnid>/*.JPEG`` with
  class folders named like WordNet ids and small JPEGs of varied sizes and aspect ratios;
* :func:`ensure_cifar` is :func:`write_cifar` made idempotent and atomic (a marker file in the
  folder holds the parameters and the md5 table);
* :func:`write_rehearsal_data` makes CIFAR-10, CIFAR-100 and the ImageNet tree under one data root
  and :func:`trusted_rehearsal_checksums` trusts its CIFAR files.

Each generated folder is written into a temporary folder beside it, closed by a marker file
(:data:`MARKER`) with the parameters, and renamed into place, so it is either complete or absent;
a second call with the same parameters is a no-op. A folder without the marker (a real download)
is never overwritten.

``optnb.data`` itself never imports this module: ordinary runs only accept the official files.
The registration changes process-wide class attributes; do not load real CIFAR in another thread
inside the ``with`` block.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optnb.data.errors import DataError
from optnb.data.sources import CIFAR_LAYOUT, CifarLayout, cifar_dataset_class

#: the protocol of the official (python 2 era) pickles; python 3 reads it with any encoding
PICKLE_PROTOCOL = 2
#: values per image row: 1024 red, 1024 green, 1024 blue, each a row-major 32x32 plane
ROW = 3 * 32 * 32


@dataclass(frozen=True)
class FakeCifar:
    """What :func:`write_cifar` wrote.

    ``md5``: file name -> md5 of every file (the table :func:`trusted_cifar_checksums` takes).
    ``batches``: batch file name -> (rows ``uint8 [n, 3072]``, labels ``int64 [n]``) as written.
    """

    name: str
    folder: Path
    md5: dict[str, str]
    batches: dict[str, tuple[np.ndarray, np.ndarray]]

    def split(self, train: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Rows and labels of one split, concatenated in torchvision's batch order."""
        layout = CIFAR_LAYOUT[self.name]
        files = layout.train if train else layout.test
        return (np.concatenate([self.batches[f][0] for f in files]),
                np.concatenate([self.batches[f][1] for f in files]))

    def images(self, train: bool = True) -> np.ndarray:
        """The split's images as ``uint8 [N, 3, 32, 32]`` (what ``optnb.data.load`` returns)."""
        return self.split(train)[0].reshape(-1, 3, 32, 32)


def _layout(name: str) -> CifarLayout:
    if name not in CIFAR_LAYOUT:
        raise DataError(f"{name!r} is not a CIFAR dataset; valid: {', '.join(CIFAR_LAYOUT)}")
    return CIFAR_LAYOUT[name]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _dump(path: Path, entry: dict) -> None:
    with open(path, "wb") as fh:
        pickle.dump(entry, fh, protocol=PICKLE_PROTOCOL)


def write_cifar_batch(path: str | Path, name: str, rows: np.ndarray, labels: Sequence[int] | np.ndarray,
                      batch_label: str = "generated batch") -> None:
    """Write one batch file of ``name`` (``cifar10``/``cifar100``) in the official format.

    ``rows``: ``uint8 [n, 3072]`` (channel planes, see :data:`ROW`); ``labels``: ``n`` ints, written
    as a list as in the official files. The values are not checked: a test may write bad labels.
    """
    layout = _layout(name)
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] != ROW:
        raise DataError(f"CIFAR rows must be [n, {ROW}], got {tuple(rows.shape)}")
    labels = [int(v) for v in np.asarray(labels).reshape(-1)]
    entry: dict = {"batch_label": batch_label, layout.label_key: labels, "data": rows,
                   "filenames": [f"generated_{i:05d}.png" for i in range(len(rows))]}
    if name == "cifar100":
        entry["coarse_labels"] = [v // 5 for v in labels]
    _dump(Path(path), entry)


def cifar_checksums(root: str | Path, name: str) -> dict[str, str]:
    """md5 of every file of ``<root>/<folder>`` as it is now (raises DataError when one is missing)."""
    layout = _layout(name)
    folder = Path(root) / layout.folder
    missing = [f for f in layout.files if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{folder} lacks {', '.join(missing)}")
    return {f: _md5(folder / f) for f in layout.files}


def write_cifar(root: str | Path, name: str, n_train: int, n_test: int, seed: int = 0) -> FakeCifar:
    """Write a small ``name`` folder under ``root`` in the format torchvision reads.

    ``n_train`` / ``n_test``: images per split in total (CIFAR-10's five training batches share
    ``n_train`` as evenly as possible). Pixels and labels are uniform random draws of
    ``numpy.random.default_rng(seed)``. Refuses to write into a folder that already holds CIFAR
    files, so a real download is never overwritten.
    """
    layout = _layout(name)
    folder = Path(root) / layout.folder
    if any((folder / f).exists() for f in layout.files):
        raise DataError(f"{folder} already holds CIFAR files; refusing to overwrite them")
    return _write_cifar_files(folder, name, n_train, n_test, seed)


def _write_cifar_files(folder: Path, name: str, n_train: int, n_test: int, seed: int) -> FakeCifar:
    """:func:`write_cifar`'s work, into ``folder`` itself (the caller checked it may)."""
    layout = _layout(name)
    if n_train < 1 or n_test < 1:
        raise DataError(f"write_cifar needs n_train >= 1 and n_test >= 1, got {n_train}, {n_test}")
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for files, total, split in ((layout.train, n_train, "training"), (layout.test, n_test, "testing")):
        sizes = [len(part) for part in np.array_split(np.arange(total), len(files))]
        for i, (filename, n) in enumerate(zip(files, sizes, strict=True)):
            rows = rng.integers(0, 256, size=(n, ROW), dtype=np.uint8)
            labels = rng.integers(0, layout.num_classes, size=n, dtype=np.int64)
            write_cifar_batch(folder / filename, name, rows, labels, f"{split} batch {i + 1} of {len(files)}")
            batches[filename] = (rows, labels)
    meta: dict = {layout.names_key: [f"class_{c:02d}" for c in range(layout.num_classes)]}
    if name == "cifar10":
        meta.update(num_cases_per_batch=max(len(b[0]) for b in batches.values()), num_vis=ROW)
    else:
        meta["coarse_label_names"] = [f"superclass_{c:02d}" for c in range(20)]
    _dump(folder / layout.meta, meta)
    return FakeCifar(name, folder, {f: _md5(folder / f) for f in layout.files}, batches)


@contextmanager
def trusted_cifar_checksums(name: str, md5: Mapping[str, str]) -> Iterator[None]:
    """Within the block, torchvision's ``name`` class accepts files with the md5 in ``md5``
    (file name -> md5, e.g. :attr:`FakeCifar.md5`) instead of the official ones.

    Replaces the class attributes ``train_list``, ``test_list`` and ``meta`` (new objects, the
    originals are never mutated) and restores them on exit, also on errors.
    """
    layout = _layout(name)
    missing = [f for f in layout.files if f not in md5]
    if missing:
        raise DataError(f"the md5 table for {name} lacks {', '.join(missing)}")
    cls = cifar_dataset_class(name)
    saved = {key: vars(cls)[key] for key in ("train_list", "test_list", "meta")}
    cls.train_list = [[f, md5[f]] for f in layout.train]
    cls.test_list = [[f, md5[f]] for f in layout.test]
    cls.meta = {**saved["meta"], "md5": md5[layout.meta]}
    try:
        yield
    finally:
        for key, value in saved.items():
            setattr(cls, key, value)


# ---------------------------------------------------------------------------------------------
# folders written once: temporary folder, marker file, rename

#: the marker file closing every generated folder: its generator, parameters (and CIFAR md5 table)
MARKER = "optnb-fake.json"
#: images per class in a rehearsal tree, and images per CIFAR split: enough for a few steps of the
#: paper's batches (CIFAR 128; the search's two halves of 64; ImageNet is shrunk per step anyway)
REHEARSAL_CIFAR = {"n_train": 1024, "n_test": 256}
REHEARSAL_IMAGENET = {"classes": 1000, "train_per_class": 2, "val_per_class": 1, "size": (64, 80)}


def _marker(folder: Path) -> dict[str, Any] | None:
    """The marker record of a generated folder, ``None`` when there is none (or it is unreadable)."""
    try:
        record = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "params" in record else None


def _write_once(target: Path, generator: str, params: dict[str, Any],
                write: Callable[[Path], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """``(marker record, written)`` of ``target``, generated by ``write(folder) -> extra record``
    unless a complete folder of the same ``generator`` and ``params`` is already there."""
    params = json.loads(json.dumps(params))  # tuples -> lists, as the marker stores them
    wanted = {"generator": generator, "params": params}

    def same(record: dict[str, Any] | None) -> bool:
        return record is not None and all(record.get(k) == v for k, v in wanted.items())

    existing = _marker(target)
    if existing is not None:
        if not same(existing):
            raise DataError(f"{target} holds data generated with other parameters ({existing.get('params')}, "
                            f"wanted {params}); delete it or choose another folder")
        return existing, False
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DataError(f"{target} exists and was not generated by optnb.data.fake; refusing to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        record = {**wanted, **write(tmp)}
        (tmp / MARKER).write_text(json.dumps(record, indent=1) + "\n")
        try:
            os.rename(tmp, target)  # replaces an empty folder; fails on a full one
        except OSError:
            winner = _marker(target)  # another process finished first: fine if it made the same
            if not same(winner):
                raise DataError(f"cannot move the generated folder into {target}: it is not empty") from None
            return winner, False
        return record, True
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def ensure_cifar(root: str | Path, name: str, n_train: int, n_test: int, seed: int = 0) -> dict[str, str]:
    """:func:`write_cifar` once: the md5 table of ``<root>/<folder>``, written (atomically, with
    :data:`MARKER`) unless a generated folder with the same parameters is already there."""
    layout = _layout(name)

    def write(folder: Path) -> dict[str, Any]:
        return {"md5": _write_cifar_files(folder, name, n_train, n_test, seed).md5}

    params = {"name": name, "n_train": n_train, "n_test": n_test, "seed": seed}
    record, _ = _write_once(Path(root) / layout.folder, "optnb.data.fake.ensure_cifar", params, write)
    return dict(record["md5"])


# ---------------------------------------------------------------------------------------------
# ImageNet-style ImageFolder tree

#: WordNet noun offsets of ImageNet-1k lie between n01440764 and n15075141
_WNID_RANGE = (1_000_000, 15_100_000)
#: class identities (names, colours, gratings) never depend on the image seed
_CLASS_SEED = 20_091


@dataclass(frozen=True)
class FakeImageNet:
    """What :func:`write_imagenet_tree` made: ``folder`` holds ``train/`` and ``val/``;
    ``classes`` are the class folders in torchvision's (sorted) order, so class ``i`` is label
    ``i``; ``colours[i]`` is class ``i``'s mean colour in [0, 1] (RGB); ``written`` is False when
    the tree was already there."""

    folder: Path
    classes: tuple[str, ...]
    colours: np.ndarray
    train_per_class: int
    val_per_class: int
    written: bool


def wordnet_ids(classes: int) -> list[str]:
    """``classes`` distinct ids shaped like WordNet noun ids (``n01440764``), sorted as
    torchvision's ImageFolder sorts its class folders (fixed width, so also numerically)."""
    if classes < 1:
        raise DataError(f"wordnet_ids needs classes >= 1, got {classes}")
    rng = np.random.default_rng(_CLASS_SEED)
    low, high = _WNID_RANGE
    offsets = low + rng.choice(high - low, size=classes, replace=False)
    return [f"n{v:08d}" for v in sorted(offsets.tolist())]


def _class_looks(classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: mean colour in [0.15, 0.85] (RGB), grating angle, cycles per image."""
    rng = np.random.default_rng(_CLASS_SEED + 1)
    colours = rng.uniform(0.15, 0.85, size=(classes, 3))
    angles = math.pi * ((np.arange(classes) * 0.618_034) % 1.0)  # golden-ratio spread
    cycles = 2.0 + np.arange(classes) % 4
    return colours, angles, cycles


def _jpeg_tree(folder: Path, wnids: list[str], per_split: dict[str, int], size: tuple[int, int],
               seed: int) -> None:
    """Write the JPEGs: class colour + a grating of the class's angle and frequency (random phase)
    + noise, each image of its own size (scale 0.75-1.5 of ``size``, aspect 3:4-4:3)."""
    from PIL import Image

    colours, angles, cycles = _class_looks(len(wnids))
    rng = np.random.default_rng(seed)
    side = int(math.ceil(1.5 * math.sqrt(4 / 3) * max(size))) + 1
    noise = rng.normal(0.0, 6.0, size=(2 * side, 2 * side, 3)).astype(np.float32)  # sliced per image
    val_index = 0
    for split, count in per_split.items():
        for c, wnid in enumerate(wnids):
            d = folder / split / wnid
            d.mkdir(parents=True)
            colour = (255 * colours[c]).astype(np.float32)
            for i in range(count):
                scale = math.exp(rng.uniform(math.log(0.75), math.log(1.5)))
                aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
                h = max(8, round(size[0] * scale / math.sqrt(aspect)))
                w = max(8, round(size[1] * scale * math.sqrt(aspect)))
                y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
                x = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
                proj = x * math.cos(angles[c]) + y * math.sin(angles[c])
                wave = np.cos(2 * math.pi * cycles[c] * proj + rng.uniform(0, 2 * math.pi))
                oy, ox = rng.integers(0, side, size=2)
                img = colour + 30.0 * wave[..., None] + noise[oy:oy + h, ox:ox + w]
                if split == "train":
                    name = f"{wnid}_{i + 1}.JPEG"
                else:  # the official validation images are numbered over the whole split
                    val_index += 1
                    name = f"ILSVRC2012_val_{val_index:08d}.JPEG"
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d / name, format="JPEG",
                                                                             quality=90)


def write_imagenet_tree(root: str | Path, classes: int = 1000, train_per_class: int = 2,
                        val_per_class: int = 1, size: tuple[int, int] = (64, 80), seed: int = 0) -> FakeImageNet:
    """An ImageFolder tree ``<root>/train/<wnid>/<wnid>_<k>.JPEG`` and
    ``<root>/val/<wnid>/ILSVRC2012_val_<n>.JPEG``, the layout ``optnb.data`` reads for ImageNet
    (``root`` is what ``data.load("imagenet", root)`` and ``FolderLoader`` take, by default
    ``data.default_root("imagenet")``).

    ``classes`` folders named by :func:`wordnet_ids`; images of about ``size`` = (H, W) pixels,
    varied in scale and aspect ratio (so RandomResizedCrop meets both), whose colour and grating
    depend on the class. Idempotent and atomic (see the module docstring); 1000 classes x 3 images
    at the default size take about 2 s.
    """
    if classes < 1 or train_per_class < 1 or val_per_class < 1:
        raise DataError(f"write_imagenet_tree needs classes, train_per_class and val_per_class >= 1; got "
                        f"{classes}, {train_per_class}, {val_per_class}")
    if len(size) != 2 or min(size) < 8:
        raise DataError(f"write_imagenet_tree needs size = (H, W) with H, W >= 8, got {size}")
    wnids = wordnet_ids(classes)
    size = (int(size[0]), int(size[1]))
    params = {"classes": classes, "train_per_class": train_per_class, "val_per_class": val_per_class,
              "size": size, "seed": seed}

    def write(folder: Path) -> dict[str, Any]:
        _jpeg_tree(folder, wnids, {"train": train_per_class, "val": val_per_class}, size, seed)
        return {}

    _, written = _write_once(Path(root), "optnb.data.fake.write_imagenet_tree", params, write)
    return FakeImageNet(Path(root), tuple(wnids), _class_looks(classes)[0], train_per_class, val_per_class,
                        written)


# ---------------------------------------------------------------------------------------------
# the rehearsal's data root


def write_rehearsal_data(root: str | Path, seed: int = 0, cifar: Mapping[str, int] | None = None,
                         imagenet: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """CIFAR-10, CIFAR-100 and an ImageNet tree under the data root ``root``, each in its real
    on-disk format: ``<root>/cifar-10-batches-py``, ``<root>/cifar-100-python``,
    ``<root>/imagenet/{train,val}`` (what ``OPTNB_DATA=<root>`` or ``--data-root <root>`` finds).

    Returns dataset name -> the ``root`` argument ``data.load``/``FolderLoader`` take for it
    (``root`` for CIFAR, ``root/imagenet`` for ImageNet). Sizes: :data:`REHEARSAL_CIFAR` and
    :data:`REHEARSAL_IMAGENET`, overridden key by key by ``cifar`` / ``imagenet``. Idempotent.
    The CIFAR files fail torchvision's md5 check of the official release unless loaded inside
    :func:`trusted_rehearsal_checksums`.
    """
    root = Path(root)
    cifar_sizes = {**REHEARSAL_CIFAR, **(cifar or {})}
    unknown = set(cifar_sizes) - set(REHEARSAL_CIFAR) | set(imagenet or {}) - set(REHEARSAL_IMAGENET)
    if unknown:
        raise DataError(f"unknown rehearsal data sizes {sorted(unknown)}; valid: "
                        f"{', '.join([*REHEARSAL_CIFAR, *REHEARSAL_IMAGENET])}")
    for name in CIFAR_LAYOUT:
        ensure_cifar(root, name, seed=seed, **cifar_sizes)
    write_imagenet_tree(root / "imagenet", seed=seed, **{**REHEARSAL_IMAGENET, **(imagenet or {})})
    return {"cifar10": root, "cifar100": root, "imagenet": root / "imagenet"}


@contextmanager
def trusted_rehearsal_checksums(root: str | Path) -> Iterator[None]:
    """:func:`trusted_cifar_checksums` for every folder :func:`ensure_cifar` generated under the
    data root ``root`` (the md5 tables come from their marker files; torchvision still checks
    the files against them). A process that loads the rehearsal's CIFAR (a notebook kernel, a
    torchrun worker) must enter this itself: the trust is a class attribute of that process."""
    with ExitStack() as stack:
        for name, layout in CIFAR_LAYOUT.items():
            record = _marker(Path(root) / layout.folder)
            if record is not None and record.get("generator") == "optnb.data.fake.ensure_cifar":
                stack.enter_context(trusted_cifar_checksums(name, record["md5"]))
        yield
