"""``optnb bench`` on tiny sizes: the report's structure and the CLI's errors (no timing gates)."""

from __future__ import annotations

import json

import pytest
import torch

from optnb import cli
from optnb.train import bench

TINY = bench.Sizes(batch=4, warmup=1, steps=3, loader_steps=2, loader_rounds=2, epoch_images=0,
                   loader_model="resnet8")


def test_pair_report_is_consistent():
    row = bench.bench_pair("resnet8", "hbnet8", torch.device("cpu"), TINY)
    assert row["a"] == "resnet8" and row["b"] == "hbnet8"
    assert row["a_params"] == row["b_params"] and row["a_macs"] == row["b_macs"]
    assert row["ratio_min"] <= row["ratio"] <= row["ratio_max"]
    assert row["a_images_per_s"] == pytest.approx(TINY.batch / row["a_step_s"])
    assert "a_peak_mib" not in row and "cpu_target" not in row  # CUDA-only / named pairs only


def test_engine_vs_dataloader_report():
    r = bench.engine_vs_dataloader("resnet8", torch.device("cpu"), TINY)
    assert r["engine_images_per_s"] > 0 and r["dataloader_images_per_s"] > 0
    assert len(r["engine_rates"]) == len(r["dataloader_rates"]) == TINY.loader_rounds
    assert r["ratio_min"] <= r["engine_over_dataloader"] <= r["ratio_max"]


def test_run_writes_json_and_markdown(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "sizes_for", lambda device, quick: TINY)
    report = bench.run("cpu", quick=True, pairs=[("densenet10", "agdnet10")], quiet=True)
    js, md = bench.write(report, tmp_path)
    assert json.loads(js.read_text())["pairs"][0]["b"] == "agdnet10"
    text = md.read_text()
    assert "| agdnet10/densenet10 |" in text and "engine / DataLoader" in text
    assert (tmp_path / "latest.md").read_text() == text


def test_markdown_marks_cpu_targets():
    row = {"a": "resnet56", "b": "hbnet56", "ratio": 1.2, "ratio_min": 1.1, "ratio_max": 1.3,
           "a_step_s": 0.5, "b_step_s": 0.6, "a_images_per_s": 64.0, "b_images_per_s": 53.0,
           "cpu_target": 1.10}
    report = {"date": "d", "device": "cpu", "threads": 2, "torch": "t", "precision": "fp32",
              "sizes": TINY.__dict__, "pairs": [row]}
    assert "<= 1.10 (missed)" in bench.to_markdown(report)


@pytest.mark.parametrize("argv, needle", [
    (["--pair", "resnet56"], "is not BASELINE:VARIANT"),
    (["--pair", "resnet56:hbnet57"], "unknown model 'hbnet57'"),
    (["--suite", "speed"], "invalid choice: 'speed'"),
    (["--frobnicate"], ""),
])
def test_bad_input_exits_2(argv, needle, capsys, tmp_path):
    assert cli.main(["bench", *argv, "--out", str(tmp_path)]) == 2
    assert needle in capsys.readouterr().err


def test_engine_epoch_and_cuda_columns():
    ep = bench._engine_epoch("resnet8", torch.device("cpu"), images=64, batch=16, seed=0)
    assert ep["epoch_s"] > 0 and ep["epoch_images_per_s"] == pytest.approx(64 / ep["epoch_s"])
    row = {"a": "resnet56", "b": "hbnet56", "ratio": 1.05, "ratio_min": 1.0, "ratio_max": 1.1,
           "a_step_s": 0.01, "b_step_s": 0.0105, "a_images_per_s": 6400.0,
           "b_images_per_s": 6095.0, "a_peak_mib": 300.0, "b_peak_mib": 310.0,
           "a_epoch_s": 3.0, "b_epoch_s": 3.2, "a_mfu": 0.05, "b_mfu": 0.048}
    report = {"date": "d", "device": "NVIDIA H200", "threads": 8, "torch": "t",
              "precision": "bf16", "sizes": TINY.__dict__, "pairs": [row]}
    text = bench.to_markdown(report)
    assert "| 300 / 310 | 3.00 / 3.20 | 5.0 % / 4.8 % |" in text
