"""The search loop (optnb.nas.search): logs, checkpoints, exact resume, configuration checks."""

from __future__ import annotations

import json

import pytest
import torch

from optnb.nas import genotypes as G
from optnb.nas.errors import NasError, UnknownNameError
from optnb.nas.search import SearchConfig, search, split_indices
from optnb.train import CHECKPOINT_NAME as CHECKPOINT
from optnb.train import LOG_NAME as LOG
from optnb.train import CheckpointMismatchError, read_jsonl

TINY = {"C": 4, "layers": 3, "batch_size": 4, "max_images": 16, "epochs": 2}


@pytest.fixture(scope="module")
def data():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (40,), generator=gen)
    return images, labels


def read_log(run_dir):
    return read_jsonl(run_dir / LOG, "epoch")


def run(cfg, data, run_dir=None, **kw):
    return search(cfg, *data, device="cpu", dataset="synthetic", run_dir=run_dir, **kw)


def test_search_logs_every_epoch_and_writes_the_genotype(data, tmp_path):
    cfg = SearchConfig(space="agd", **TINY)
    result = run(cfg, data, tmp_path)
    assert result.complete and len(result.history) == 2
    log = read_log(tmp_path)
    assert [r["epoch"] for r in log] == [1, 2]
    last = log[-1]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_s", "wall_s",
                "alpha_normal", "alpha_reduce", "path_normal", "path_reduce", "genotype",
                "param_free", "net_skip_normal", "alpha_entropy_normal"):
        assert key in last, key
    assert len(last["alpha_normal"]) == 14 and len(last["alpha_normal"][0]) == 9
    assert sum(last["path_normal"][:2]) == pytest.approx(1.0)
    assert G.from_json(last["genotype"]) == result.genotype
    assert G.from_json(json.loads((tmp_path / "genotype.json").read_text())) == result.genotype
    assert log[0]["lr"] == pytest.approx(0.025) and log[1]["lr"] == pytest.approx(0.0125)
    assert (tmp_path / CHECKPOINT).is_file()


def test_resume_is_exact(data, tmp_path):
    cfg = SearchConfig(space="darts", **TINY)
    straight = run(cfg, data)
    first = run(SearchConfig(space="darts", epochs_limit=1, **TINY), data, tmp_path)
    assert not first.complete and len(first.history) == 1
    resumed = run(cfg, data, tmp_path)
    assert resumed.resumed_from == 1
    assert torch.equal(resumed.model.alphas_normal, straight.model.alphas_normal)
    for (name, a), b in zip(straight.model.state_dict().items(),
                            resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(straight.history, resumed.history):
        assert a["train_loss"] == b["train_loss"] and a["alpha_reduce"] == b["alpha_reduce"]
    assert [r["epoch"] for r in read_log(tmp_path)] == [1, 2]  # one line per epoch, no repeats


def test_hb_search_with_hb_init_second_order(data):
    cfg = SearchConfig(space="hb", init="hb", order=2, **{**TINY, "epochs": 1})
    result = run(cfg, data)
    assert G.arity(result.genotype) == 3
    w = torch.tensor(result.history[-1]["alpha_normal"])
    assert w[1, 3] > 0.9 and w[2, 8] > 0.9  # o2 -> identity, o -> negative identity (b = 5)
    assert result.model.alphas_normal.grad is not None


def test_split_and_darts_compat_quirks():
    cfg = SearchConfig(batch_size=2, max_images=10, seed=3)
    train, val = split_indices(100, cfg)
    assert len(train) == len(val) == 5 and not set(train.tolist()) & set(val.tolist())
    compat = SearchConfig(batch_size=2, max_images=10, darts_compat=True)
    train, val = split_indices(100, compat)
    assert train.tolist() == [0, 1, 2, 3, 4] and val.tolist() == [5, 6, 7, 8, 9]
    assert compat.lr_at(0) == pytest.approx(SearchConfig(lr_min=0.001).lr_at(1))
    assert compat.lr_at(49) == pytest.approx(0.001)  # the last epoch runs at eta_min
    assert SearchConfig().lr_at(0) == 0.025
    with pytest.raises(NasError, match="smaller than one batch"):
        split_indices(10, SearchConfig(batch_size=64))


@pytest.mark.parametrize("change, error", [
    ({"space": "nasnet"}, "unknown search space"),
    ({"init": "hb"}, "needs space='hb'"),
    ({"order": 3}, "unknown order"),
    ({"precision": "fp8"}, "unknown precision"),
    ({"derive_rule": "pooled"}, "derive rule for space 'darts'"),
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"max_skip": -1}, "max_skip must be None"),
    ({"skip_hb_pair": True}, "hb_pair"),
    ({"early_stop": "pdarts"}, "unknown early stop rule"),
    ({"stop_skips": 0}, "stop_skips must be an integer >= 1"),
    ({"stable_epochs": -1}, "stable_epochs must be an integer >= 0"),
])
def test_bad_settings_raise_clear_errors(change, error):
    with pytest.raises((NasError, UnknownNameError), match=error):
        SearchConfig(**change).checked()


def test_log_mirrors_checkpoint_after_a_crash_and_settings_are_checked(data, tmp_path):
    run(SearchConfig(space="darts", epochs_limit=1, **TINY), data, tmp_path)
    with pytest.raises(CheckpointMismatchError, match="another run.*seed"):
        run(SearchConfig(space="darts", seed=1, **TINY), data, tmp_path)
    with (tmp_path / LOG).open("a") as fh:  # a line written after the last checkpoint
        fh.write(json.dumps({"kind": "epoch", "epoch": 2, "stale": True}) + "\n")
    result = run(SearchConfig(space="darts", **TINY), data, tmp_path)
    log = read_log(tmp_path)
    assert [r["epoch"] for r in log] == [1, 2] and "stale" not in log[-1]
    assert result.complete and result.resumed_from == 1
    fresh = run(SearchConfig(space="darts", seed=1, epochs_limit=1, **TINY), data, tmp_path,
                resume=False)
    assert fresh.resumed_from == 0 and [r["epoch"] for r in read_log(tmp_path)] == [1]


def test_darts_plus_stops_the_search_and_the_cap_is_recorded_beside_the_uncapped_cell(data, tmp_path):
    """hb with the HB init starts with 8 skips in the normal cell: DARTS+ stops after epoch 1 (of 3),
    the run counts as complete, a resume trains nothing more, and with a cap of 2 each epoch
    records the capped cell next to the uncapped diagnostic."""
    cfg = SearchConfig(space="hb", init="hb", early_stop="darts+", max_skip=2, **{**TINY, "epochs": 3})
    result = run(cfg, data, tmp_path)
    last = result.history[-1]
    assert last["epoch"] == 1 and "skip" in last["stopped_early"] and result.complete
    assert last["param_free_capped"]["normal"] < last["param_free"]["normal"]
    skips = sum(op in ("skip_connect", "neg_skip_connect") for op, _ in result.genotype.normal)
    assert skips <= 2  # the final genotype is the capped one
    again = run(cfg, data, tmp_path)
    assert [r["epoch"] for r in again.history] == [1] and again.complete
