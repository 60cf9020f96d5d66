"""optnb.data.GpuLoader: batched on-device augmentation, seeding, exact resume, sharding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from optnb import data
from optnb.data import DataError, GpuLoader


def _images(n=10, size=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, size, size), generator=gen, dtype=torch.uint8)
    return x, torch.arange(n) % 3


def test_random_crop_matches_pad_and_slice():
    x, _ = _images(5)
    offsets = torch.tensor([[0, 0], [4, 4], [8, 8], [1, 7], [6, 2]])
    out = data.random_crop(x, offsets, padding=4)
    padded = F.pad(x, (4, 4, 4, 4))
    for i, (dy, dx) in enumerate(offsets.tolist()):
        assert torch.equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 8])
    assert torch.equal(out[1], x[1])  # offset == padding is the identity


def test_flip_and_cutout():
    x, _ = _images(3)
    out = data.random_flip(x, torch.tensor([True, False, True]))
    assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[1], x[1])
    ones = torch.ones(3, 2, 8, 8)
    cut = data.cutout(ones, torch.tensor([[4, 4], [0, 0], [7, 2]]), length=4)
    assert cut[0].eq(0).sum() == 2 * 16          # full 4x4 square in both channels
    assert cut[0, 0, 2:6, 2:6].eq(0).all() and cut[0, 0, 6:, :].eq(1).all()
    assert cut[1].eq(0).sum() == 2 * 4           # clipped to 2x2 at the corner
    assert cut[2, 0, 5:8, 0:4].eq(0).all() and cut[2].eq(0).sum() == 2 * 12


def test_no_augmentation_is_normalisation_in_order():
    x, y = _images(10)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.2)
    loader = GpuLoader(x, y, 4, augment=False, shuffle=False, drop_last=False, mean=mean, std=std)
    assert len(loader) == 3
    batches = list(loader)
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    xs = torch.cat([b[0] for b in batches]).double()
    ref = (x.double() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(xs, ref, atol=1e-5, rtol=0)
    assert torch.equal(torch.cat([b[1] for b in batches]), y)


def test_augmented_batches_are_crops_or_flips_of_the_right_image():
    x, y = _images(12, seed=1)
    loader = GpuLoader(x, torch.arange(12), 6, augment=True, seed=3, mean=(0, 0, 0), std=(1, 1, 1))
    padded = F.pad(x, (4, 4, 4, 4)).double() / 255
    for xb, idx in loader:
        for img, i in zip(xb.double(), idx.tolist()):
            candidates = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(9) for dx in range(9)]
            candidates += [c.flip(-1) for c in candidates]
            assert min(float((img - c).abs().max()) for c in candidates) < 1e-6


def test_seeded_order_differs_by_epoch_and_seed():
    x, y = _images(16)
    a = GpuLoader(x, torch.arange(16), 4, seed=0)
    b = GpuLoader(x, torch.arange(16), 4, seed=0)
    c = GpuLoader(x, torch.arange(16), 4, seed=1)
    ea0, ea1 = [torch.cat([t for _, t in a]) for _ in range(2)]
    eb0 = torch.cat([t for _, t in b])
    ec0 = torch.cat([t for _, t in c])
    assert torch.equal(ea0, eb0) and not torch.equal(ea0, ea1) and not torch.equal(ea0, ec0)
    assert sorted(ea0.tolist()) == list(range(16))  # a permutation, drop_last drops nothing here


def test_state_dict_resumes_the_exact_data_order():
    x, y = _images(20)
    kw = dict(batch_size=6, augment=True, cutout=3, seed=7)
    first = GpuLoader(x, y, **kw)
    list(first)
    state = first.state_dict()
    expected = [(xb.clone(), yb.clone()) for xb, yb in first]
    resumed = GpuLoader(x, y, **kw)
    resumed.load_state_dict(state)
    got = list(resumed)
    assert len(got) == len(expected) == 3  # drop_last: 20 // 6
    for (a, ya), (b, yb) in zip(expected, got):
        assert torch.equal(a, b) and torch.equal(ya, yb)


def test_shards_concatenate_to_the_global_batch():
    x, y = _images(16)
    kw = dict(augment=True, cutout=2, seed=2, mean=(0.5,) * 3, std=(0.2,) * 3)
    whole = list(GpuLoader(x, y, 8, **kw))
    halves = [list(GpuLoader(x, y, 4, rank=r, world_size=2, **kw)) for r in (0, 1)]
    assert len(halves[0]) == len(whole) == 2
    for (xw, yw), (x0, y0), (x1, y1) in zip(whole, *halves):
        assert torch.equal(torch.cat([x0, x1]), xw) and torch.equal(torch.cat([y0, y1]), yw)


def test_channels_last_and_make_loader():
    x, y = data.load("synthetic", num_samples=8)
    train = data.make_loader("synthetic", x, y, 4, channels_last=True)
    xb, yb = next(iter(train))
    assert xb.is_contiguous(memory_format=torch.channels_last) and xb.dtype == torch.float32
    test = data.make_loader("synthetic", x, y, 3, train=False)
    assert len(test) == 3 and torch.equal(torch.cat([t for _, t in test]), y)


def test_bad_inputs_are_rejected():
    x, y = _images(4)
    with pytest.raises(DataError, match="uint8"):
        GpuLoader(x.float(), y, 2)
    with pytest.raises(DataError, match="labels shape"):
        GpuLoader(x, y[:3], 2)
    with pytest.raises(DataError, match="rank"):
        GpuLoader(x, y, 2, rank=2, world_size=2)
