"""optnb.data: dataset readers (embedded, synthetic, CIFAR pickles, ImageFolder) and errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from optnb import data
from optnb.data import DataError, DatasetNotFoundError

# ---------------------------------------------------------------------------------------------
# embedded / synthetic


def test_embedded_shapes_split_and_determinism():
    xtr, ytr = data.load("embedded", train=True)
    xte, yte = data.load("embedded", train=False)
    assert xtr.dtype == torch.uint8 and xtr.shape[1:] == (3, 32, 32)
    assert ytr.dtype == torch.int64 and len(xtr) + len(xte) == 1797
    assert len(xte) == 359 and set(yte.tolist()) == set(range(10))
    # stratified: every class has 19-21 % of its images in the test split
    counts_te = torch.bincount(yte, minlength=10).double()
    counts_all = counts_te + torch.bincount(ytr, minlength=10).double()
    assert torch.all((counts_te / counts_all - 0.2).abs() < 0.01)
    # grey replicated to 3 channels, full 0..255 range used
    assert torch.equal(xtr[:, 0], xtr[:, 1]) and torch.equal(xtr[:, 0], xtr[:, 2])
    assert int(xtr.max()) == 255 and int(xtr.min()) == 0
    x2, y2 = data.load("embedded", train=True)
    assert torch.equal(x2, xtr) and torch.equal(y2, ytr)
    # train and test are disjoint (no image appears in both)
    tr = {bytes(row) for row in xtr[:, 0].reshape(len(xtr), -1).numpy()}
    te = [bytes(row) for row in xte[:, 0].reshape(len(xte), -1).numpy()]
    assert sum(r in tr for r in te) <= 2  # the digits set itself has a couple of exact duplicates


def test_embedded_small_resolution():
    x, _ = data.load("embedded", train=False, image_size=16)
    assert x.shape[1:] == (3, 16, 16)


@pytest.mark.parametrize("name", ["embedded", "synthetic"])
def test_stored_statistics_match_the_training_split(name):
    x, _ = data.load(name, train=True)
    f = x.double() / 255
    assert f.mean((0, 2, 3)).tolist() == pytest.approx(data.MEAN[name], abs=1e-3)
    assert f.std((0, 2, 3)).tolist() == pytest.approx(data.STD[name], abs=1e-3)


def test_synthetic_seeded_any_size_and_balanced():
    a, ya = data.load("synthetic", num_samples=50, image_size=20, seed=3)
    b, yb = data.load("synthetic", num_samples=50, image_size=20, seed=3)
    c, _ = data.load("synthetic", num_samples=50, image_size=20, seed=4)
    t, _ = data.load("synthetic", train=False, num_samples=50, image_size=20, seed=3)
    assert a.shape == (50, 3, 20, 20) and a.dtype == torch.uint8
    assert torch.equal(a, b) and torch.equal(ya, yb)
    assert not torch.equal(a, c) and not torch.equal(a, t)
    assert torch.bincount(ya, minlength=10).tolist() == [5] * 10


def test_synthetic_classes_are_separable_by_class_means():
    """Nearest class-mean in a crude feature (mean colour + gradient energy) beats chance."""
    x, y = data.load("synthetic", num_samples=400, seed=0)
    xt, yt = data.load("synthetic", train=False, num_samples=200, seed=0)

    def feats(im):
        f = im.double() / 255
        spec = torch.fft.rfft2(f.mean(1) - f.mean((1, 2, 3))[:, None, None]).abs()
        return torch.cat([f.mean((2, 3)), spec[:, :6, :6].reshape(len(f), -1)], 1)

    fx, ft = feats(x), feats(xt)
    means = torch.stack([fx[y == c].mean(0) for c in range(10)])
    pred = torch.cdist(ft, means).argmin(1)
    assert (pred == yt).double().mean() > 0.5  # chance is 0.1


def test_unknown_dataset_names_the_choices():
    with pytest.raises(DataError, match=r"unknown dataset 'mnist'.*embedded, synthetic, cifar10"):
        data.load("mnist")
    with pytest.raises(ValueError):
        data.available("svhn")


def test_is_real():
    assert data.is_real("cifar10") and data.is_real("imagenet")
    assert not data.is_real("embedded") and not data.is_real("synthetic")


# ---------------------------------------------------------------------------------------------
# CIFAR python-pickle format


def _write_cifar(root, name, n_train, n_test, seed=0):
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        folder, key, classes = root / "cifar-10-batches-py", b"labels", 10
        train_files = [f"data_batch_{i}" for i in range(1, 6)]
        test_files = ["test_batch"]
    else:
        folder, key, classes = root / "cifar-100-python", b"fine_labels", 100
        train_files, test_files = ["train"], ["test"]
    folder.mkdir(parents=True)
    written = {}
    for files, n in ((train_files, n_train), (test_files, n_test)):
        for f in files:
            d = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
            lab = rng.integers(0, classes, size=n).tolist()
            with open(folder / f, "wb") as fh:
                pickle.dump({b"data": d, key: lab, b"batch_label": b"x"}, fh)
            written[f] = (d, lab)
    return written


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_pickles_are_read_in_channel_major_layout(tmp_path, name):
    written = _write_cifar(tmp_path, name, n_train=4, n_test=3)
    assert data.available(name, tmp_path)
    x, y = data.load(name, tmp_path, train=True, download=False)
    first = "data_batch_1" if name == "cifar10" else "train"
    d, lab = written[first]
    assert x.dtype == torch.uint8 and x.shape == ((20 if name == "cifar10" else 4), 3, 32, 32)
    # CIFAR rows are 1024 red, 1024 green, 1024 blue values, each row-major 32x32
    assert int(x[0, 1, 2, 5]) == int(d[0, 1024 + 2 * 32 + 5])
    assert int(x[1, 2, 31, 0]) == int(d[1, 2048 + 31 * 32])
    assert y[: len(lab)].tolist() == lab
    xt, yt = data.load(name, tmp_path, train=False, download=False)
    assert xt.shape[0] == 3 and yt.dtype == torch.int64


def test_cifar_missing_folder_names_folder_and_fallback(tmp_path):
    assert not data.available("cifar10", tmp_path)
    with pytest.raises(DatasetNotFoundError) as err:
        data.load("cifar10", tmp_path, download=False)
    msg = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "embedded" in msg
    assert "\n" not in msg
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, ValueError)


def test_cifar_corrupt_batch_is_a_clear_error(tmp_path):
    _write_cifar(tmp_path, "cifar10", n_train=2, n_test=2)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="corrupt CIFAR batch .*data_batch_3"):
        data.load("cifar10", tmp_path, download=False)


def test_cifar_bad_labels_are_rejected(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for f in ("train", "test"):
        with open(folder / f, "wb") as fh:
            pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 100]}, fh)
    with pytest.raises(DataError, match=r"labels.*0\.\.99"):
        data.load("cifar100", tmp_path, download=False)


# ---------------------------------------------------------------------------------------------
# ImageFolder


def _write_folder(root, classes=("n01", "n02", "n03"), per_class=3, size=(20, 28)):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c_index, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(per_class):
                img = 40 * c_index + rng.integers(0, 30, size=(*size, 3), dtype=np.uint8)
                if i % 2:
                    Image.fromarray(img).save(d / f"img{i}.png")
                else:
                    Image.fromarray(img).save(d / f"img{i}.JPEG", quality=95)
            (d / "notes.txt").write_text("not an image")


def test_corrupt_image_is_a_clear_error(tmp_path):
    _write_folder(tmp_path, per_class=1)
    (tmp_path / "train" / "n01" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match="cannot decode image .*broken.jpg"):
        data.load("imagenet", tmp_path)


def test_imagefolder_tensors(tmp_path):
    _write_folder(tmp_path)
    assert data.available("imagenet", tmp_path)
    x, y = data.load("imagenet", tmp_path, train=True, image_size=16)
    assert x.shape == (9, 3, 16, 16) and x.dtype == torch.uint8
    assert y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # class brightness survives decoding and resizing (JPEG within a few levels)
    means = [float(x[y == c].double().mean()) for c in range(3)]
    assert means == pytest.approx([14.5, 54.5, 94.5], abs=4)


def test_imagefolder_missing_split(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="ImageFolder tree .*train.*embedded"):
        data.load("imagenet", tmp_path)
    assert not data.available("imagenet", tmp_path)


def test_folder_loader_order_resume_and_shards(tmp_path):
    _write_folder(tmp_path, per_class=4)
    kw = dict(root=tmp_path, train=True, batch_size=4, device="cpu", mean=data.MEAN["imagenet"],
              std=data.STD["imagenet"], resolution=8, seed=5)
    loader = data.FolderLoader(**kw)
    assert len(loader) == 3
    epoch0 = [(x.clone(), y.clone()) for x, y in loader]
    assert epoch0[0][0].shape == (4, 3, 8, 8) and epoch0[0][0].dtype == torch.float32
    state = loader.state_dict()
    epoch1 = [(x.clone(), y.clone()) for x, y in loader]
    resumed = data.FolderLoader(**kw)
    resumed.load_state_dict(state)
    for (a, ya), (b, yb) in zip(epoch1, resumed):
        assert torch.equal(a, b) and torch.equal(ya, yb)
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(epoch0, epoch1))
    # two ranks with batch 2 see the global batches of one rank with batch 4, split in halves,
    # random crops included (they depend on (seed, epoch, image) only)
    shards = [data.FolderLoader(**{**kw, "batch_size": 2}, rank=r, world_size=2) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 3
    for (x, y), (x0, y0), (x1, y1) in zip(epoch0, *shards):
        assert torch.equal(torch.cat([y0, y1]), y) and torch.equal(torch.cat([x0, x1]), x)
    # worker processes decode the same crops as the main process
    workers = list(data.FolderLoader(**{**kw, "num_workers": 2}))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(epoch0, workers))
    # iterating leaves the global RNG alone (dropout etc. of the training loop stay exact)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    list(data.FolderLoader(**kw))
    assert torch.equal(torch.rand(3), expected)
    ev = {**kw, "train": False}
    whole = list(data.FolderLoader(**ev))
    halves = [list(data.FolderLoader(**{**ev, "batch_size": 2}, rank=r, world_size=2))
              for r in (0, 1)]
    assert [b[1].tolist() for b in whole] == [[0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2]]
    for (x, _), (x0, _), (x1, _) in zip(whole, *halves):
        assert torch.equal(torch.cat([x0, x1]), x)
