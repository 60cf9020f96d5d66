"""resolve(): parameter validation, profiles, environment overrides, run registration."""

from __future__ import annotations

import json

import pytest
import torch

from optnb.experiments import profiles
from optnb.experiments.profiles import resolve
from optnb.specs import ParameterError, boolean, choice, integer, number, text


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTNB_RESULTS", str(tmp_path / "results"))
    for var in ("OPTNB_PROFILE", "OPTNB_DEVICE", "OPTNB_LIVE", "OPTNB_HEADLESS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setitem(
        profiles.NOTEBOOK_SPECS, "99_test", "tests.test_profiles:SPEC"
    )


SPEC = {
    "MODEL": choice("resnet56", "hbnet56"),
    "BETA": number(-1.0, 1.0),
    "EPOCHS": integer(1, 10),
    "AUGMENT": boolean(),
    "NAME": text(),
}
GOOD = {"MODEL": "hbnet56", "BETA": 0.5, "EPOCHS": 2, "AUGMENT": True, "NAME": "x", "PROFILE": "smoke"}


def test_resolve_builds_config_and_sidecar(tmp_path, capsys):
    cfg = resolve(dict(GOOD, SEED=3), notebook="99_test")
    assert cfg.profile == "smoke" and cfg.smoke
    assert cfg.seed == 3 and cfg.device == torch.device("cpu")
    assert cfg.dataset == "embedded" and not cfg.dataset_real
    assert cfg.model == "hbnet56" and cfg.beta == 0.5 and cfg.epochs == 2 and cfg.augment is True
    assert cfg.run_dir.parent == tmp_path / "results" / "runs"
    sidecar = json.loads((cfg.run_dir / "result.json").read_text())
    assert sidecar["status"] == "running" and sidecar["parameters"]["MODEL"] == "hbnet56"
    assert sidecar["dataset_real"] is False and sidecar["versions"]["torch"] == torch.__version__
    line = capsys.readouterr().out.strip()
    assert line.startswith("cfg: notebook=99_test profile=smoke") and "model=hbnet56" in line


def test_run_id_is_stable_and_ignores_display_parameters():
    a = resolve(dict(GOOD, LIVE="off"), notebook="99_test", quiet=True).run_id
    b = resolve(dict(GOOD, LIVE="display"), notebook="99_test", quiet=True).run_id
    c = resolve(dict(GOOD, BETA=0.25), notebook="99_test", quiet=True).run_id
    assert a == b != c and a.startswith("99_test-")


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("PROFILE", "fast", "one of: smoke, quick, paper, auto"),
        ("MODEL", "vgg", "one of: resnet56, hbnet56"),
        ("BETA", float("nan"), "not finite"),
        ("BETA", 3.0, "out of range"),
        ("EPOCHS", 2.5, "not an integer"),
        ("EPOCHS", True, "got bool"),
        ("AUGMENT", "true", "a string is not a bool"),
        ("LIVE", "tty", "widget, display, off"),
        ("SEED", -1, "out of range"),
        ("DATASET", "mnist", "embedded"),
    ],
)
def test_bad_values_raise_one_clear_line(name, value, fragment):
    with pytest.raises(ParameterError) as err:
        resolve(dict(GOOD, **{name: value}), notebook="99_test", quiet=True)
    message = str(err.value)
    assert "\n" not in message and name in message and fragment in message


def test_missing_notebook_parameter_is_named():
    values = dict(GOOD)
    del values["BETA"]
    with pytest.raises(ParameterError, match="BETA is missing"):
        resolve(values, notebook="99_test", quiet=True)


def test_unknown_device_is_a_parameter_error():
    with pytest.raises(ParameterError, match="DEVICE: unknown device 'tpu'"):
        resolve(dict(GOOD, DEVICE="tpu"), notebook="99_test", quiet=True)


def test_validate_rejects_unknown_names():
    with pytest.raises(ParameterError, match="unknown parameter EPOCH; valid parameters:"):
        profiles.validate({"EPOCH": 1}, SPEC)


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("OPTNB_PROFILE", "smoke")
    monkeypatch.setenv("OPTNB_HEADLESS", "1")
    cfg = resolve(dict(GOOD, PROFILE="paper", LIVE="auto"), notebook="99_test", quiet=True)
    assert cfg.profile == "smoke" and cfg.live == "off"
    assert "PROFILE from $OPTNB_PROFILE" in cfg.notes
    monkeypatch.setenv("OPTNB_PROFILE", "turbo")
    with pytest.raises(ParameterError, match="PROFILE='turbo'"):
        resolve(GOOD, notebook="99_test", quiet=True)


def test_auto_profile_follows_the_hardware():
    expected = "quick" if torch.cuda.is_available() else "smoke"
    assert profiles.resolve_profile("auto") == expected


def test_explicit_real_dataset_that_is_absent_fails_early(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTNB_DATA", str(tmp_path / "nodata"))
    with pytest.raises(ParameterError, match="DATASET='cifar10' was asked for but is not under"):
        resolve(dict(GOOD, DATASET="cifar10"), notebook="99_test", quiet=True)


def test_resolve_seeds_everything():
    resolve(dict(GOOD, SEED=7), notebook="99_test", quiet=True)
    a = torch.rand(3)
    resolve(dict(GOOD, SEED=7), notebook="99_test", quiet=True)
    assert torch.equal(a, torch.rand(3))
