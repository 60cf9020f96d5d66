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

Tests use it, and so can a "rehearsal" that runs the CIFAR pipeline on a small generated folder.
``optnb.data`` itself never imports this module: ordinary runs only accept the official files.
The registration changes process-wide class attributes; do not load real CIFAR in another thread
inside the ``with`` block.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

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
    if n_train < 1 or n_test < 1:
        raise DataError(f"write_cifar needs n_train >= 1 and n_test >= 1, got {n_train}, {n_test}")
    folder = Path(root) / layout.folder
    if any((folder / f).exists() for f in layout.files):
        raise DataError(f"{folder} already holds CIFAR files; refusing to overwrite them")
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
    return FakeCifar(name, folder, cifar_checksums(root, name), batches)


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
