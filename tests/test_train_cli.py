"""``optnb train``: a smoke row end to end, and clear one-line errors that lose nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from optnb import cli
from optnb.train import read_jsonl


def main(argv: list[str]) -> int:
    return cli.main(["train", *argv])


def sidecar(run) -> tuple[dict, dict]:
    """The run's sidecar (as a notebook writes it) and its results as ``{name: value}``."""
    found = json.loads((run / "result.json").read_text())
    return found, {k: v["value"] for k, v in found["results"].items()}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("OPTNB_DOWNLOAD", "0")  # never touch the network in tests


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    return err


def test_smoke_row_end_to_end_and_resume(tmp_path, capsys):
    args = ["--model", "hbnet56", "--profile", "smoke", "--device", "cpu", "--seed", "1",
            "--results-dir", str(tmp_path), "--run-id", "row", "--beta", "0.3", "--quiet"]
    assert main(args) == 0
    run = tmp_path / "runs" / "row"
    found, summary = sidecar(run)
    assert found["parameters"]["MODEL"] == "hbnet56" and summary["trained_model"] == "hbnet20"
    assert found["dataset"] == "embedded" and found["dataset_real"] is False
    assert found["status"] == "complete" and found["notebook"] == "06_train_cifar"
    assert summary["epochs"] == summary["epochs_planned"] == 2
    assert 0.0 <= summary["test_error"] <= 100.0 and summary["test_samples"] == 359
    assert summary["model_options"] == {"beta": 0.3}
    assert len(read_jsonl(run / "metrics.jsonl", "step")) == 2 * 40
    before = (run / "checkpoint.pt").read_bytes()
    # a second run without --resume refuses and keeps the checkpoint; with --resume it is done
    assert main(args) == 2
    assert "already exists" in _err(capsys)
    assert (run / "checkpoint.pt").read_bytes() == before
    assert main([*args, "--resume"]) == 0
    assert (run / "checkpoint.pt").read_bytes() == before


def test_unknown_model_lists_the_valid_ones(capsys):
    assert main(["--model", "resnet57"]) == 2
    err = _err(capsys)
    assert "unknown model 'resnet57'" in err and "hbnet56" in err and "agdnet121" in err


@pytest.mark.parametrize("beta", ["nan", "inf"])
def test_beta_must_be_finite(beta, capsys):
    assert main(["--model", "hbnet56", "--beta", beta]) == 2
    assert "--beta must be a finite number" in _err(capsys)


def test_missing_dataset_folder(tmp_path, capsys):
    code = main(["--model", "resnet56", "--dataset", "cifar100", "--profile", "smoke",
                 "--data-root", str(tmp_path), "--results-dir", str(tmp_path), "--device", "cpu"])
    assert code == 2
    err = _err(capsys)
    assert str(tmp_path / "cifar-100-python") in err and "embedded" in err


def test_corrupt_checkpoint_is_reported_and_kept(tmp_path, capsys):
    run = tmp_path / "runs" / "bad"
    run.mkdir(parents=True)
    (run / "checkpoint.pt").write_bytes(b"\x00broken")
    code = main(["--model", "resnet56", "--profile", "smoke", "--device", "cpu", "--resume",
                 "--results-dir", str(tmp_path), "--run-id", "bad"])
    assert code == 2
    assert "corrupt" in _err(capsys)
    assert (run / "checkpoint.pt").read_bytes() == b"\x00broken"


@pytest.mark.parametrize("argv, needle", [
    (["--model", "resnet56", "--profile", "fast"], "invalid choice: 'fast'"),
    (["--model", "resnet56", "--dataset", "mnist"], "invalid choice: 'mnist'"),
    (["--model", "resnet56", "--model-option", "nonsense"], "is not KEY=VALUE"),
    (["--model", "resnet56", "--model-option", "beta=0.5"], "takes no option 'beta'"),
    (["--model", "resnet56", "--recipe", "adam"], "RECIPE='adam' is not valid"),
    (["--epochs", "3"], "--model"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, argv, needle, capsys):
    code = main([*argv, "--device", "cpu", "--results-dir", str(tmp_path)])
    assert code == 2
    assert needle in _err(capsys)


def test_imagenet_row_streams_an_imagefolder_tree(tmp_path):
    """A Table 2 model on a tiny ImageFolder tree through FolderLoader (smoke: 32 px)."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("n0", "n1"):
            folder = tmp_path / "imagenet" / split / c
            folder.mkdir(parents=True)
            for i in range(12):
                Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(
                    folder / f"{i}.JPEG")
    code = main(["--model", "resnet34", "--dataset", "imagenet", "--profile", "smoke",
                 "--data-root", str(tmp_path), "--results-dir", str(tmp_path), "--run-id", "in",
                 "--device", "cpu", "--workers", "0", "--quiet"])
    assert code == 0
    found, summary = sidecar(tmp_path / "runs" / "in")
    assert found["dataset_real"] is True and summary["resolution"] == 32
    assert summary["test_samples"] == 24 and summary["top5_error"] is not None
    assert summary["recipe"] == "imagenet" and summary["epochs"] == 1
