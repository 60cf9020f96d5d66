"""The naive-vs-optimised search-step benchmark (optnb.nas.bench) on a tiny CPU setting."""

from __future__ import annotations

import json

import pytest

from optnb.nas import bench


def test_bench_reports_both_variants_and_a_ratio():
    report = bench.run(device="cpu", C=4, layers=3, batch_size=2, image_size=8, steps=1,
                       warmup=0, quiet=True)
    assert report["device"] == "cpu"
    for name in ("naive", "optimised"):
        assert report[f"{name}_step_s"] > 0
        assert report[f"{name}_epoch_s"] == report[f"{name}_step_s"] * 390
    assert report["speedup_median_pair"] > 0
    assert "speed-up" in bench.format_report(report)


@pytest.mark.slow
def test_gpu_check_dry_run_on_cpu(tmp_path):
    """The device check script, at tiny sizes on the CPU (about a minute)."""
    from optnb.nas import gpu_check

    assert gpu_check.main(["--device", "cpu", "--tiny", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "nas_gpu_check.json").read_text())
    assert [c["ok"] for c in report["checks"]] == [True] * 6
