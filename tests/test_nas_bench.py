"""The NAS benchmarks (optnb.nas.bench: naive-vs-optimised step, one search epoch) on tiny CPU
settings, and the device checks (``tests/device``) dry-run on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from optnb import cli
from optnb.nas import bench

REPO = Path(__file__).resolve().parents[1]


def test_bench_reports_both_variants_and_a_ratio():
    report = bench.run(device="cpu", C=4, layers=3, batch_size=2, image_size=8, steps=1,
                       warmup=0, quiet=True)
    assert report["device"] == "cpu"
    for name in ("naive", "optimised"):
        assert report[f"{name}_step_s"] > 0
        assert report[f"{name}_epoch_s"] == report[f"{name}_step_s"] * 390
    assert report["speedup_median_pair"] > 0
    assert "speed-up" in bench.format_report(report)


def test_bench_nas_epoch_option_times_one_search_epoch(tmp_path, capsys):
    """``optnb bench --suite nas --epoch`` at a tiny size: 32 images = 16 train + 16 val, batch 8."""
    argv = ["bench", "--suite", "nas", "--epoch", "--epoch-images", "32", "--device", "cpu",
            "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    report = json.loads((tmp_path / "nas-epoch-latest.json").read_text())
    assert report["images"] == 32 and report["batch_size"] == 8 and report["steps"] == 2
    assert 0 < report["epoch_s"] <= report["wall_s"]
    assert report["step_s"] == pytest.approx(report["epoch_s"] / 2)
    assert report["search_gpu_days"] == pytest.approx(50 * report["wall_s"] / 86400)
    assert "50-epoch search" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needle", [
    (["--epoch"], "use it with --suite nas"),
    (["--suite", "nas", "--epoch", "--epoch-images", "0"], "--epoch-images must be >= 1"),
    (["--suite", "nas", "--order", "3"], "invalid choice: 3"),
])
def test_bench_nas_bad_input_exits_2(argv, needle, capsys, tmp_path):
    assert cli.main(["bench", *argv, "--device", "cpu", "--out", str(tmp_path)]) == 2
    assert needle in capsys.readouterr().err


@pytest.mark.slow
def test_device_checks_dry_run_on_cpu(tmp_path):
    """``OPTNB_CHECK_DEVICE=cpu pytest -m gpu tests/device``: every device check runs (none
    skipped) and passes at tiny sizes on the CPU (20 s to 2 minutes on 2 shared cores)."""
    xml = tmp_path / "device_checks.xml"
    env = {**os.environ, "OPTNB_CHECK_DEVICE": "cpu", "OPTNB_CHECK_TINY": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
         "--junitxml", str(xml), "-o", "junit_family=xunit1", "tests/device"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    suite = ET.parse(xml).getroot().find("testsuite")
    counts = {k: int(suite.get(k)) for k in ("tests", "failures", "errors", "skipped")}
    assert counts["tests"] >= 12 and counts["failures"] == counts["errors"] == counts["skipped"] == 0, counts
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["check_device"] == "cpu" and "max_alpha_diff" in props


def test_partial_channels_bench_reports_both_variants_and_less_memory():
    """K = 4 against full, side by side: every field of the report, and 1/4 of the channels through
    the mixed ops needs less peak memory (measured ~3x at this size; the time ratio is noise here)."""
    r = bench.partial_channels("cpu", space="darts", k=4, C=4, layers=3, batch_size=4, image_size=8,
                                   steps=1, warmup=1, quiet=True)
    assert r["k"] == 4 and r["edge_normalization"] == "edge" and r["precision"] == "fp32"
    assert r["full_step_s"] > 0 and r["partial_step_s"] > 0 and r["time_ratio_median_pair"] > 0
    assert r["memory_ratio"] > 1.5, r
    assert "partial channels K=4 vs full" in bench.format_partial(r)
