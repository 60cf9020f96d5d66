"""Colour augmentation of the streamed ImageNet loader (Tables 2 and 5): optnb.data.color."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from optnb import data
from optnb.data import DataError
from optnb.data import color as colors
from optnb.data.folder import _FolderDataset, list_images
from optnb.experiments.paper_config import check, configuration_for, describe_evaluation, describe_row
from optnb.nas.errors import UnknownNameError
from optnb.nas.evaluate import EvalConfig
from optnb.nas.genotypes import DARTS_V2
from optnb.nas.params import IMAGENET_RECIPE
from optnb.train.experiment import plan_row


def _fb_resnet_lighting(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """fb.resnet.torch's ``Lighting`` transcribed loop by loop (image [3, H, W] in [0, 1])."""
    eigval, eigvec = np.array(colors.PCA_EIGVAL), np.array(colors.PCA_EIGVEC)
    rgb = np.zeros(3)
    for i in range(3):
        for j in range(3):
            rgb[i] += eigvec[i, j] * alpha[j] * eigval[j]
    out = image.copy()
    for i in range(3):
        out[i] += rgb[i]
    return out


def test_lighting_is_fb_resnet_torch_lighting_in_float64():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 5, 6, generator=gen, dtype=torch.float64)
    alpha = torch.randn(4, 3, generator=gen, dtype=torch.float64) * 0.1
    ours = colors.add_lighting(images.clone(), alpha, scale=1.0)
    for k in range(4):
        expected = _fb_resnet_lighting(images[k].numpy(), alpha[k].numpy())
        np.testing.assert_allclose(ours[k].numpy(), expected, rtol=0, atol=1e-15)
    # one coefficient at a time: the first principal component, scaled by its eigenvalue
    unit = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    np.testing.assert_allclose(colors.lighting_offsets(unit)[0].numpy(),
                               0.2175 * np.array(colors.PCA_EIGVEC)[:, 0], atol=1e-15)
    # on the loader's 0..255 scale the offset is 255 times larger
    zeros = torch.zeros(1, 3, 2, 2, dtype=torch.float64)
    np.testing.assert_allclose(colors.add_lighting(zeros, unit)[0, :, 0, 0].numpy(),
                               255 * 0.2175 * np.array(colors.PCA_EIGVEC)[:, 0], atol=1e-12)


def test_recipes_and_unknown_names():
    fb, darts = colors.get("fb_resnet"), colors.get("darts")
    assert (fb.brightness, fb.contrast, fb.saturation, fb.hue, fb.lighting) == (0.4, 0.4, 0.4, 0.0, 0.1)
    assert (darts.brightness, darts.contrast, darts.saturation, darts.hue, darts.lighting) == (0.4, 0.4, 0.4, 0.2, 0.0)
    assert colors.get("none").jitter() is None and not colors.get("none").lighting
    jitter = darts.jitter()
    assert (jitter.brightness, jitter.hue) == (pytest.approx((0.6, 1.4)), pytest.approx((-0.2, 0.2)))
    with pytest.raises(DataError, match="unknown colour augmentation 'pca'; valid: none, fb_resnet, darts"):
        colors.get("pca")
    with pytest.raises(UnknownNameError, match="colour augmentation 'pca'; valid choices: none, fb_resnet, darts"):
        replace(EvalConfig(), color="pca").checked()


@pytest.fixture
def tree(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("n01", "n02"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(4):
                img = rng.integers(30, 220, size=(24, 20, 3), dtype=np.uint8)
                Image.fromarray(img).save(tmp_path / split / c / f"{i}.png")
    return tmp_path


def _kw(root, **extra):
    return dict(root=root, train=True, batch_size=4, device="cpu", mean=data.MEAN["imagenet"],
                std=data.STD["imagenet"], resolution=12, seed=3, **extra)


def test_fb_resnet_loader_is_jitter_then_lighting_then_normalise(tree):
    with pytest.raises(DataError, match="valid: none, fb_resnet, darts"):
        data.FolderLoader(**_kw(tree, color="alexnet"))
    loader = data.FolderLoader(**_kw(tree, color="fb_resnet"))
    batches = [(x.clone(), y.clone()) for x, y in loader]
    # rebuild every image from the dataset item: the jittered uint8 crop and its coefficients
    files, labels, _ = list_images(tree, True)
    items = _FolderDataset(files, labels, True, 12, "fb_resnet")
    items.epoch_seed = 3 * 1_000_003
    gen = torch.Generator().manual_seed(items.epoch_seed)
    order = torch.randperm(len(files), generator=gen).tolist()
    mean = torch.tensor(data.MEAN["imagenet"], dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(data.STD["imagenet"], dtype=torch.float64).view(3, 1, 1)
    for b, (x, y) in enumerate(batches):
        for k, i in enumerate(order[4 * b:4 * b + 4]):
            image, label, alpha = items[i]
            assert image.dtype == torch.uint8 and alpha.shape == (3,) and label == y[k]
            lit = _fb_resnet_lighting(image.double().numpy() / 255, alpha.double().numpy())
            expected = (torch.from_numpy(lit) - mean) / std
            torch.testing.assert_close(x[k].double(), expected, rtol=0, atol=1e-4)
    # the colours change the pixels (the crops are the same: same seed, same RNG stream start)
    plain = [x for x, _ in data.FolderLoader(**_kw(tree))]
    assert all(not torch.allclose(a, p) for (a, _), p in zip(batches, plain))


@pytest.mark.parametrize("color", ["fb_resnet", "darts"])
def test_colour_is_exact_on_resume_across_workers_and_ranks(tree, color):
    kw = _kw(tree, color=color)
    loader = data.FolderLoader(**kw)
    epoch0 = [x.clone() for x, _ in loader]
    state = loader.state_dict()
    epoch1 = [x.clone() for x, _ in loader]
    resumed = data.FolderLoader(**kw)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, b) for a, (b, _) in zip(epoch1, resumed))
    assert all(torch.equal(a, b) for a, (b, _) in zip(epoch0, data.FolderLoader(**{**kw, "num_workers": 2})))
    shards = [data.FolderLoader(**{**kw, "batch_size": 2}, rank=r, world_size=2) for r in (0, 1)]
    for x, (x0, _), (x1, _) in zip(epoch0, *shards):
        assert torch.equal(torch.cat([x0, x1]), x)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    list(data.FolderLoader(**kw))
    assert torch.equal(torch.rand(3), expected)  # the global RNG is left alone
    # evaluation never jitters
    ev = {**kw, "train": False}
    assert all(torch.equal(a, b) for (a, _), (b, _) in
               zip(data.FolderLoader(**ev), data.FolderLoader(**{**ev, "color": "none"})))


def test_runs_choose_the_recipe_of_their_table():
    table2 = plan_row("resnet34", "imagenet", profile="paper")
    assert table2.color == "fb_resnet" and table2.identity()["color"] == "fb_resnet"
    cifar = plan_row("resnet56", "cifar10", profile="paper")
    assert cifar.color == "none" and "color" not in cifar.identity()  # old checkpoints still resume
    smoke_stand_in = plan_row("resnet34", "embedded", profile="smoke")
    assert smoke_stand_in.color == "none"
    assert IMAGENET_RECIPE.color == "darts" and EvalConfig().color == "none"
    assert "color" not in EvalConfig().identity(DARTS_V2)  # old checkpoints still resume
    assert IMAGENET_RECIPE.identity(DARTS_V2)["color"] == "darts"


def test_the_configuration_check_reads_the_colours_off_the_loader():
    _, table2 = configuration_for("table2", "resnet34", "train")
    assert table2["color_jitter"] == pytest.approx({"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.0})
    assert table2["lighting"] == 0.1 and check("train_imagenet", table2).ok
    _, transfer = configuration_for("table5", "darts_2nd", "transfer")
    assert transfer["color_jitter"]["hue"] == pytest.approx(0.2) and transfer["lighting"] == 0.0
    assert check("transfer", transfer).ok
    # without colour augmentation both ImageNet phases fail, naming both settings
    plain = plan_row("resnet34", "imagenet", profile="paper")
    plain = replace(plain, recipe=plain.recipe.replace(color="none"))
    failed = {r.name for r in check("train_imagenet", describe_row(plain)).failures}
    assert failed == {"color_jitter", "lighting"}
    off = describe_evaluation(replace(IMAGENET_RECIPE, color="none"), "imagenet", 224)
    assert {r.name for r in check("transfer", off).failures} == {"color_jitter"}
    # DARTS's jitter on a Table 2 row is caught too: hue and lighting differ
    darts_on_table2 = replace(plain, recipe=plain.recipe.replace(color="darts"))
    assert {r.name for r in check("train_imagenet", describe_row(darts_on_table2)).failures} == {
        "color_jitter", "lighting"}
