"""Notebook 10's study: rows trained side by side through the one loop, with provenance, resumed
on a rerun; its sizes per profile."""

from __future__ import annotations

import pytest

from optnb.experiments.profiles import notebook_spec
from optnb.train import study


def test_a_row_trains_records_its_provenance_and_resumes(tmp_path):
    rows = [study.StudyRow("DenseNet, AGDNet's init", "densenet40", {"norm_init": "agd"})]
    first = study.train_side_by_side(rows, "embedded", "smoke", 0, "cpu", tmp_path)
    (row,) = first
    assert row["trained"] == "densenet10" and row["options"] == {"norm_init": "agd"}
    assert 0.0 <= row["test_error"] <= 100.0 and row["epochs"] == 2
    assert (row["profile"], row["dataset"], row["seed"], row["device"]) == ("smoke", "embedded", 0,
                                                                            "cpu")
    assert (tmp_path / "study-0" / "checkpoint.pt").is_file()
    again = study.train_side_by_side(rows, "embedded", "smoke", 0, "cpu", tmp_path)
    assert again[0]["test_error"] == row["test_error"]  # finished: evaluated again, not retrained


def test_the_separation_study_is_densenet_agd_init_agdnet():
    models = [(r.model, dict(r.options)) for r in study.SEPARATION]
    assert models == [("densenet40", {}), ("densenet40", {"norm_init": "agd"}), ("agdnet40", {})]


def test_sizes_per_profile_and_the_notebook_spec():
    for profile in ("smoke", "quick", "paper"):
        sizes = study.nb10_sizes(profile)
        assert min(sizes["memory_blocks"]) >= 3 and sizes["memory_batch"] >= 1
    with pytest.raises(ValueError, match="valid profiles: smoke, quick, paper"):
        study.nb10_sizes("huge")
    assert set(notebook_spec("10_beyond_the_paper_design")) == {"BETA", "TRAIN"}
