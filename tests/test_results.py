"""record(): sidecars written atomically, the result mimetype, notebook read-back."""

from __future__ import annotations

import json

import nbformat
import numpy as np
import pytest
import torch

from optnb.experiments import results
from optnb.experiments.profiles import resolve


@pytest.fixture()
def cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTNB_RESULTS", str(tmp_path))
    return resolve({"PROFILE": "smoke"}, notebook="00_tour", quiet=True)


def test_record_appends_to_the_sidecar(cfg, capsys):
    results.record("test_error", np.float64(12.5), unit="%")
    results.record("curve", torch.tensor([1.0, 2.0]))
    results.record("nan_becomes_null", float("nan"))
    sidecar = results.read_sidecar(cfg.run_dir)
    assert sidecar["results"]["test_error"] == {"value": 12.5, "unit": "%"}
    assert sidecar["results"]["curve"]["value"] == [1.0, 2.0]
    assert sidecar["results"]["nan_becomes_null"]["value"] is None
    assert "test_error = 12.5 %" in capsys.readouterr().out
    assert not list(cfg.run_dir.glob(".*.tmp")), "temporary files must not be left behind"


def test_record_rejects_objects_it_cannot_serialise(cfg):
    with pytest.raises(TypeError, match="cannot record a value of type object"):
        results.record("x", object())
    with pytest.raises(ValueError, match="non-empty string"):
        results.record("", 1)


def test_mark_complete_and_failed(cfg):
    assert not results.is_complete(cfg.run_dir)
    results.mark_failed(cfg.run_dir, "boom")
    assert results.read_sidecar(cfg.run_dir)["error"] == "boom"
    results.mark_complete(cfg.run_dir, output_path=cfg.run_dir / "x.ipynb", duration_s=1.5)
    side = results.read_sidecar(cfg.run_dir)
    assert results.is_complete(cfg.run_dir) and side["duration_s"] == 1.5 and side["finished"]


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "a.json"
    results.atomic_write_json(path, {"ok": 1})
    with pytest.raises(TypeError):
        results.atomic_write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_read_notebook_results_scans_outputs(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("record(...)")
    payload = {"name": "params", "value": 850000, "unit": None}
    cell.outputs = [nbformat.v4.new_output("display_data", data={results.MIMETYPE: payload, "text/plain": "x"})]
    nb.cells = [cell]
    nb.metadata["papermill"] = {"parameters": {"SEED": 1}, "duration": 3.0}
    path = tmp_path / "run.ipynb"
    nbformat.write(nb, str(path))
    found = results.read_notebook_results(path)
    assert found["results"]["params"]["value"] == 850000
    assert found["parameters"] == {"SEED": 1} and found["duration_s"] == 3.0


def test_run_id_for_is_deterministic():
    a = results.run_id_for("06_train_cifar.ipynb", {"SEED": 0, "MODEL": "hbnet56", "LIVE": "off"})
    b = results.run_id_for("06_train_cifar", {"MODEL": "hbnet56", "SEED": 0})
    assert a == b and a.startswith("06_train_cifar-") and len(a.split("-")[-1]) == 8
