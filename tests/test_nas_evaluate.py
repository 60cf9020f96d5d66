"""Training a genotype from scratch (optnb.nas.evaluate): recipe pieces, test error, resume."""

from __future__ import annotations

import pytest
import torch

from optnb.nas import genotypes as G
from optnb.nas.errors import NasError, UnknownNameError
from optnb.nas.evaluate import EvalConfig, full_size_parameters, tensor_loaders, train_genotype
from optnb.train import CHECKPOINT_NAME as CHECKPOINT
from optnb.train import LOG_NAME as LOG
from optnb.train import CheckpointMismatchError, read_jsonl

TINY = {"C": 4, "layers": 3, "batch_size": 4, "epochs": 2, "max_images": 8, "cutout": 8}


@pytest.fixture(scope="module")
def data():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (16,), generator=gen)
    return (images, labels), (images[:8], labels[:8])


def run(cfg, data, run_dir=None, genotype="DARTS_V2"):
    train, test = tensor_loaders(cfg, *data, "synthetic")
    return train_genotype(G.parse(genotype), cfg, train, test, "cpu", run_dir)


def test_train_from_scratch_reports_final_test_error_and_resumes_exactly(data, tmp_path):
    cfg = EvalConfig(**TINY)
    straight = run(cfg, data)
    assert [r["drop_path_prob"] for r in straight.history] == [0.0, 0.1]  # 0.2 * e / epochs
    assert 0.0 <= straight.test_error <= 100.0 and straight.top5_error <= straight.test_error
    assert "test_error" in straight.history[-1] and "test_error" not in straight.history[0]
    assert straight.params == sum(p.numel() for n, p in straight.model.named_parameters()
                                  if "auxiliary" not in n)
    run(EvalConfig(epochs_limit=1, **TINY), data, tmp_path)
    resumed = run(cfg, data, tmp_path)
    assert resumed.test_error == straight.test_error
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert len(read_jsonl(tmp_path / LOG, "epoch")) == 2
    with pytest.raises(CheckpointMismatchError, match=r"another run \(genotype: checkpoint"):
        run(cfg, data, tmp_path, genotype="DARTS_V1")
    with pytest.raises(CheckpointMismatchError, match=r"another run \(seed: checkpoint 0 vs requested 1\)"):
        run(EvalConfig(seed=1, **TINY), data, tmp_path)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)  # now claims to be a search's
    torch.save({**state, "identity": {**state["identity"], "kind": "search"}}, tmp_path / CHECKPOINT)
    with pytest.raises(CheckpointMismatchError, match="kind: checkpoint 'search' vs requested 'evaluate'"):
        run(cfg, data, tmp_path)


def test_imagenet_recipe_pieces_and_full_size_counts():
    cfg = EvalConfig(schedule="exp97", lr=0.1)
    assert cfg.lr_at(2) == pytest.approx(0.1 * 0.97 ** 2)
    assert EvalConfig().lr_at(300) == pytest.approx(0.0125)
    assert full_size_parameters(G.get("DARTS_V2")) == 3_349_342
    assert 4.7e6 < full_size_parameters(G.get("DARTS_V2"), "imagenet") < 4.75e6
    with pytest.raises(UnknownNameError, match="unknown network"):
        EvalConfig(network="mobile").checked()
    with pytest.raises(NasError, match="batch_size must be >= 1"):
        EvalConfig(batch_size=0).checked()
